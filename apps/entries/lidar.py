"""LiDAR 3-D detection: ``maskworks eval lidar/detection``, ``maskworks predict lidar/detection``, demo tab."""
EVALS = {"lidar/detection": "maskworks.domains.lidar.kitti_eval:main"}
PREDICTS = {"lidar/detection": "maskworks.domains.lidar.detector:predict_main"}
TABS = {"3D detection (LiDAR)": "maskworks.apps.lidar_app:build_tab"}
