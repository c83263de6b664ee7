"""Audio-visual (HiCMAE emotion): ``maskworks predict audiovisual/emotion``, ``maskworks eval audiovisual/emotion``,
the demo tab and the HTTP API endpoint ``/predict_audiovisual_emotion``."""
from __future__ import annotations

EVALS: dict[str, str] = {"audiovisual/emotion": "maskworks.apps.commands.audiovisual:emotion"}
PREDICTS: dict[str, str] = {"audiovisual/emotion": "maskworks.apps.commands.audiovisual:predict"}
TABS: dict[str, str] = {"Audio-visual emotion (HiCMAE)": "maskworks.apps.tabs.audiovisual:build_tab"}
APIS: dict[str, str] = {"audiovisual_emotion": "maskworks.apps.tabs.audiovisual:api_emotion"}
