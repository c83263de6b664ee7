"""The skeleton tab's handler and ``maskworks predict skeleton/actions`` give the same JSON; bad input is named."""
import json

import numpy as np
import pytest

from maskworks.data import data_path

HELD_OUT = data_path("skeleton", "cmu", "seq", "06_09.npy")


def _comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("input", "outputs")}


@pytest.mark.slow  # loads the job twice (tab and CLI) and imports gradio: ~20 s on a loaded 2-core CPU
def test_tab_handler_and_cli_give_the_same_json(tmp_path):
    pytest.importorskip("gradio")
    from maskworks.apps.cli import main
    from maskworks.apps.tabs import skeleton as tab

    fig3d, probs, info, files, gallery, report = tab.run(str(HELD_OUT), 0)
    assert report["file"] == "06_09.npy" and report["label"] in info
    assert fig3d is not None and len(fig3d.frames) == 32
    assert any(f.endswith(".joints.npy") for f in files)
    code = main(["predict", "skeleton/actions", str(HELD_OUT), "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    cli = json.loads((tmp_path / "06_09.json").read_text())
    assert _comparable(cli) == _comparable(json.loads(json.dumps(report)))
    joints = np.load(tmp_path / "06_09.joints.npy")
    assert joints.shape[2:] == (25, 3)


def test_tab_names_a_bad_file(tmp_path):
    gr = pytest.importorskip("gradio")
    from maskworks.apps.tabs import skeleton as tab

    bad = tmp_path / "twenty.npy"
    np.save(bad, np.zeros((40, 20, 3), np.float32))
    with pytest.raises(gr.Error, match="twenty.npy: 20 joints per frame"):
        tab.run(str(bad), 0)
    with pytest.raises(gr.Error, match="Upload a skeleton file"):
        tab.run(None, 0)


def test_api_function_answers_like_the_tab(tmp_path):
    pytest.importorskip("gradio")
    from maskworks.apps.tabs import skeleton as tab
    from maskworks.core.io import InputError

    *_, report = tab.run(str(HELD_OUT), 2)
    assert tab.api(str(HELD_OUT), {"seed": 2}) == json.loads(json.dumps(report))
    with pytest.raises(InputError, match="unknown options"):
        tab.api(str(HELD_OUT), {"sede": 2})
