"""The NeRF-MAE tab in a real browser: a shipped grid -> pictures and numbers; a zip with a bad pose -> message."""
import json
import zipfile

import pytest

pytestmark = pytest.mark.browser

TAB = "NeRF-MAE (radiance grids)"


def test_nerf_tab_reconstructs_an_example_and_explains_a_bad_zip(page, tmp_path, screenshot):
    from maskworks.apps.tabs import nerf as tab
    from maskworks.domains.nerf.grid import read_grid

    ex = tab.examples()
    name = next(k for k in ex if k.startswith("spot ("))  # the tab's default example
    want = tab.reconstructor().predict_grid(read_grid(ex[name]), ex[name].name).to_json()
    page.get_by_role("tab", name=TAB).click()
    page.locator("#nerf-example-go").click()
    info = page.locator("#nerf-info")
    info.get_by_text("spot.npz").wait_for(timeout=400_000)  # the first call loads MONAI and the model
    page.locator("#nerf-views img").wait_for()
    page.locator("#nerf-slices img").wait_for()
    text = info.inner_text()
    assert f"{want['model']['loss']:.4f}" in text and f"{want['nearest_visible_patch']['loss']:.4f}" in text
    assert f"{want['views'][0]['psnr_recon']:.2f} dB" in text
    screenshot(page, "demo_nerf", docs="nerf/nerf_app.png")

    frames = [{"file_path": "a.png", "transform_matrix": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]
    bad = tmp_path / "scan_poses.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("transforms.json", json.dumps({"camera_angle_x": 0.8, "frames": frames}))
        z.writestr("a.png", b"")
    page.locator("#nerf-upload input[type=file]").set_input_files(str(bad))
    msg = page.get_by_text("scan_poses.zip:transforms.json").first
    msg.wait_for()
    assert "not orthonormal" in msg.inner_text()
    assert page.locator("#nerf-views img").count() == 0  # the old pictures were cleared
    screenshot(page, "demo_nerf_bad_upload")
