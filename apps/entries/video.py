"""Video (VideoMAE V2): ``maskworks predict video/videomae``, ``maskworks eval video/probe`` and
``video/reconstruction``, ``maskworks bench videomae-step``, the demo tab."""
from __future__ import annotations

BENCHES: dict[str, str] = {"videomae-step": "maskworks.apps.commands.video:bench_videomae_step"}
EVALS: dict[str, str] = {"video/probe": "maskworks.apps.commands.video:probe",
                         "video/reconstruction": "maskworks.apps.commands.video:reconstruction"}
PREDICTS: dict[str, str] = {"video/videomae": "maskworks.apps.commands.video:predict"}
TABS: dict[str, str] = {"Video MAE (VideoMAE V2)": "maskworks.apps.tabs.video:build_tab"}
