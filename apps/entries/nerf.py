"""NeRF-MAE: radiance-grid fitting and conversion, masked reconstruction, evaluations, the scene tab."""
EVALS = {
    "nerf/fit": "maskworks.apps.commands.nerf:fit",
    "nerf/reconstruction": "maskworks.apps.commands.nerf:evaluate_reconstruction",
    "nerf/labelling": "maskworks.apps.commands.nerf:evaluate_labelling",
}
PREDICTS = {
    "nerf/reconstruct": "maskworks.apps.commands.nerf:reconstruct",
    "nerf/grid": "maskworks.apps.commands.nerf:grid",
}
TABS = {"NeRF-MAE (radiance grids)": "maskworks.apps.tabs.nerf:build_tab"}
