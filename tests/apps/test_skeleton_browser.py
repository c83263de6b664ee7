"""The skeleton tab in a real browser: a held-out CMU sequence -> action, 3-D animation; a bad upload -> message."""
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
