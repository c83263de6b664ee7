"""Tasks of the core recipes (image MAE)."""
