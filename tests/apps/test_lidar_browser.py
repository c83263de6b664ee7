"""The LiDAR detection tab in a real browser: shipped KITTI scan -> 3-D plot + table, corrupt upload -> message."""
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

TAB = "3D detection (LiDAR)"


def _expected_count() -> int:
    """What the Python predictor finds in the default example (held-out KITTI 000002) at the default threshold."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.detector import DEFAULT_SCORE_THRESHOLD, LidarDetector
    from maskworks.domains.lidar.io import read_kitti_bin

    pts = read_kitti_bin(data_path("3d", "kitti", "training", "velodyne", "000002.bin"), drop_nan=True)
    return len(LidarDetector.load().predict(pts, DEFAULT_SCORE_THRESHOLD))


def test_lidar_tab_detects_in_an_example_and_explains_a_bad_upload(page, tmp_path, screenshot):
    want = _expected_count()
    page.get_by_role("tab", name=TAB).click()
    page.locator("#lidar-example-go").click()
    info = page.locator("#lidar-info")
    info.get_by_text("000002.bin").wait_for()
    page.locator("#lidar-plot .js-plotly-plot").wait_for()
    page.locator("#lidar-bev img").wait_for()
    text = info.inner_text()
    assert f"{want} detections" in text
    rows = page.locator("#lidar-table tbody tr")
    if want:
        rows.nth(want - 1).wait_for()
        assert rows.count() == want
        assert rows.first.inner_text().split()[0] in ("Car", "Pedestrian", "Cyclist")
    path = screenshot(page, "demo_lidar")
    docs = Path(__file__).resolve().parents[2] / "docs" / "3d"
    if docs.is_dir():
        shutil.copy(path, docs / "detection_app.png")

    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a scan")
    page.locator("#lidar-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot read broken.bin").first.wait_for()
    assert "multiple of 16" in page.get_by_text("Cannot read broken.bin").first.inner_text()
    screenshot(page, "demo_lidar_bad_upload")
    page.locator("#lidar-example-go").click()  # still serving
    info.get_by_text("000002.bin").wait_for()
