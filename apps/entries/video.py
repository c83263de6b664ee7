"""Video (VideoMAE V2): ``maskworks predict video/videomae``, ``maskworks eval video/probe`` and
``video/reconstruction``, ``maskworks bench videomae-step``, the demo tab."""
from __future__ import annotations

BENCHES: dict[str, str] = {"videomae-step": "maskworks.domains.video.bench:main"}
