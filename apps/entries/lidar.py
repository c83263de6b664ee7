"""LiDAR: 3-D detection (predict, eval, tab) and R-MAE evaluation."""
EVALS = {"lidar/detection": "maskworks.apps.commands.lidar:eval_detection",
         "lidar/detection-cv": "maskworks.apps.commands.lidar:eval_detection_cv",
         "lidar/rmae": "maskworks.apps.commands.lidar:eval_rmae"}
PREDICTS = {"lidar/detection": "maskworks.apps.commands.lidar:predict_detection"}
TABS = {"3D detection (LiDAR)": "maskworks.apps.tabs.lidar:build_tab"}
APIS = {"lidar_detection": "maskworks.apps.api:lidar_detection"}
