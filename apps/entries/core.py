"""The core's entries: image MAE evaluation/prediction, the MAE step benchmark, the first tabs."""
EVALS = {"image-mae": "maskworks.apps.commands.core:eval_image_mae"}
PREDICTS = {"image-mae": "maskworks.apps.commands.core:predict_image_mae"}
BENCHES = {"mae-step": "maskworks.apps.commands.core:bench_mae_step", "serve": "maskworks.apps.commands.core:bench_serve"}
TABS = {
    "Masking strategies": "maskworks.apps.tabs.masking:build_tab",
    "Image MAE (chest X-ray)": "maskworks.apps.tabs.image_mae:build_tab",
}
APIS = {"image_mae": "maskworks.apps.api:image_mae"}
