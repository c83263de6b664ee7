"""The core's entries: image MAE evaluation/prediction, the MAE step benchmark, the first tabs."""
EVALS = {"image-mae": "maskworks.apps.image_mae_cli:evaluate"}
PREDICTS = {"image-mae": "maskworks.apps.image_mae_cli:predict"}
BENCHES = {"mae-step": "maskworks.core.bench:main"}
TABS = {
    "Masking strategies": "maskworks.apps.masking_app:build_tab",
    "Image MAE (chest X-ray)": "maskworks.apps.mae_app:build_tab",
}
