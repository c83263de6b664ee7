"""The CenterPoint-style 3-D detector on the R-MAE BEV backbone, one concern per module; imports run one way:
``evaluate`` -> ``predict`` -> ``inference`` -> ``decode`` -> ``model`` (``task`` trains it on ``scenes``).

- ``model``: :class:`BEVDetector`, its grid and head layout;
- ``targets``: Gaussian heatmap targets, focal and L1 losses;
- ``decode``: peaks -> boxes, flip test-time augmentation, :class:`Detections`;
- ``scenes``: training scans (simulated scenes with real objects pasted in, labelled KITTI frames), augmentation;
- ``task``: :class:`DetectorTask` (``maskworks train lidar/detector``);
- ``inference``: weights, :class:`LidarDetector`, :class:`RangeDetector` (near/far hand-over), :func:`load_detector`;
- ``predict``: the job the tab, the CLI and Python share: a scan file -> detections -> KITTI label + JSON;
- ``evaluate``: AP on KITTI frames and on held-out simulated scenes.
"""
from maskworks.domains.lidar.detection.decode import Detections
from maskworks.domains.lidar.detection.inference import (
    LidarDetector,
    RangeDetector,
    load_detector,
)
from maskworks.domains.lidar.detection.model import CLASSES, BEVDetector

__all__ = ["BEVDetector", "CLASSES", "Detections", "LidarDetector", "RangeDetector", "load_detector"]
