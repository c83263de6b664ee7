"""NeRF-MAE: radiance-grid fitting, masked reconstruction of grids, the pre-training evaluation, the scene tab."""
EVALS = {
    "nerf/fit": "maskworks.apps.commands.nerf:fit",
}
PREDICTS: dict[str, str] = {}
TABS: dict[str, str] = {}
