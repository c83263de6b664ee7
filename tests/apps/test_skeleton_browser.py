"""The skeleton tab in a real browser: a held-out CMU sequence -> action, 3-D animation; a bad upload -> message."""
import json
import numpy as np
import pytest

pytestmark = pytest.mark.browser

TAB = "Skeleton actions (SkeletonMAE)"


def _expected():
    """What the job says about the default example (the first held-out sequence in the dropdown)."""
    from maskworks.apps.tabs.skeleton import examples, recognizer

    name, path = next(iter(examples().items()))
    return path.name, recognizer().predict_file(path, seed=0)


def test_skeleton_tab_recognises_an_example_and_explains_a_bad_upload(page, tmp_path, screenshot):
    fname, want = _expected()
    page.get_by_role("tab", name=TAB).click()
    page.locator("#skeleton-example-go").click()
    info = page.locator("#skeleton-info")
    info.get_by_text(fname).wait_for()
    page.locator("#skeleton-plot .js-plotly-plot").wait_for()
    page.locator("#skeleton-probs .js-plotly-plot").wait_for()
    text = info.inner_text()
    assert f"→ {want.label} ({want.confidence:.0%})" in text
    assert f"{want.reconstruction.error_cm:.1f} cm" in text
    assert page.locator("#skeleton-plot .js-plotly-plot .scatter3d, #skeleton-plot .js-plotly-plot canvas").count() >= 1
    screenshot(page, "demo_skeleton", docs="skeleton/actions_app.png")

    bad = tmp_path / "twenty.npy"
    np.save(bad, np.zeros((40, 20, 3), np.float32))
    page.locator("#skeleton-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("twenty.npy: 20 joints per frame").first.wait_for()
    screenshot(page, "demo_skeleton_bad_upload")
    page.locator("#skeleton-example-go").click()  # still serving
    info.get_by_text(fname).wait_for()


def test_skeleton_api_endpoint_answers_like_the_cli(demo_url, tmp_path):
    from gradio_client import Client, handle_file

    from maskworks.apps.cli import main
    from maskworks.data import data_path

    path = data_path("skeleton", "cmu", "seq", "07_12.npy")
    client = Client(demo_url, verbose=False)
    assert "/predict_skeleton_actions" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    api = client.predict(handle_file(str(path)), {}, api_name="/predict_skeleton_actions")
    assert main(["predict", "skeleton/actions", str(path), "--out", str(tmp_path), "--no-progress"]) == 0
    cli = json.loads((tmp_path / "07_12.json").read_text())
    assert {k: v for k, v in cli.items() if k not in ("input", "outputs")} == api
    bad = tmp_path / "twenty.npy"
    np.save(bad, np.zeros((40, 20, 3), np.float32))
    assert client.predict(handle_file(str(bad)), {}, api_name="/predict_skeleton_actions")["error"].startswith("twenty.npy:")
