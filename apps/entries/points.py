"""``maskworks bench fps``, ``maskworks eval points/probe`` and ``maskworks eval lidar/rmae``."""
from __future__ import annotations

BENCHES: dict[str, str] = {"fps": "maskworks.domains.points.bench:main"}
EVALS: dict[str, str] = {
    "points/probe": "maskworks.domains.points.probe:main",
    "lidar/rmae": "maskworks.domains.lidar.rmae_eval:main",
}
