"""The LiDAR detection tab in a real browser: shipped KITTI scan -> 3-D plot + table, corrupt upload -> message."""

import pytest

pytestmark = pytest.mark.browser

TAB = "3D detection (LiDAR)"


def _expected_rmae_line() -> str:
    """The R-MAE view's sentence for the default example, as the Python side computes it."""
    from maskworks.apps.tabs import lidar as lidar_app
    from maskworks.data import data_path

    from maskworks.domains.lidar.detection.predict import read_lidar_input

    pts = read_lidar_input(data_path("3d", "kitti_more", "training", "velodyne", "000010.bin")).points
    return lidar_app.rmae_view(pts)[1].replace("**", "")


def _expected_count() -> int:
    """What the Python predictor finds in the default example (KITTI 000010, eight cars) at the default threshold."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.detection.inference import DEFAULT_SCORE_THRESHOLD, load_detector
    from maskworks.core.io.points import read_scan

    pts = read_scan(data_path("3d", "kitti_more", "training", "velodyne", "000010.bin")).points
    return len(load_detector().predict(pts, DEFAULT_SCORE_THRESHOLD))  # the tab runs the shipped detector


def test_lidar_tab_detects_in_an_example_and_explains_a_bad_upload(page, tmp_path, screenshot):
    want = _expected_count()
    page.get_by_role("tab", name=TAB).click()
    page.locator("#lidar-example-go").click()
    info = page.locator("#lidar-info")
    info.get_by_text("000010.bin").wait_for()
    page.locator("#lidar-plot .js-plotly-plot").wait_for()
    page.locator("#lidar-bev img").wait_for()
    text = info.inner_text()
    assert f"{want} detections" in text
    from maskworks.apps.tabs.lidar import shipped_init

    assert page.get_by_text(f"shipped weights: {shipped_init()}").count() >= 1  # the tab says which model it runs
    assert "Trained on" in text  # ... what it was trained on (and, from its record, its cross-validated AP)
    grid = page.locator("#lidar-table [role=grid]")
    if want:  # Gradio's virtual table: header row + one row per detection (aria-rowcount)
        page.locator(f'#lidar-table [role=row][aria-rowindex="{want + 1}"]').wait_for()
        assert int(grid.get_attribute("aria-rowcount")) == want + 1
        first = page.locator('#lidar-table [role=row][aria-rowindex="2"]').inner_text()
        assert first.split()[0] in ("Car", "Pedestrian", "Cyclist")
    page.locator("#lidar-rmae img").wait_for()  # the R-MAE view: kept sectors | reconstruction | scan
    assert page.locator("#lidar-rmae-info").inner_text().strip() == _expected_rmae_line()
    screenshot(page, "demo_lidar", docs="3d/detection_app.png")

    bad = tmp_path / "broken.bin"
    bad.write_bytes(b"not a scan")
    page.locator("#lidar-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot read broken.bin").first.wait_for()
    assert "multiple of 16" in page.get_by_text("Cannot read broken.bin").first.inner_text()
    screenshot(page, "demo_lidar_bad_upload")
    page.locator("#lidar-example-go").click()  # still serving
    info.get_by_text("000010.bin").wait_for()
