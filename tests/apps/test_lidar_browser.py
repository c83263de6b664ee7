"""The LiDAR detection tab in a real browser: shipped KITTI scan -> 3-D plot + table, corrupt upload -> message."""

import pytest

pytestmark = pytest.mark.browser

TAB = "3D detection (LiDAR)"


def _expected_rmae_line() -> str:
    """The R-MAE view's sentence for the default example, as the Python side computes it."""
    from maskworks.apps import lidar_app
    from maskworks.data import data_path

    pts, _ = lidar_app.read_cloud(data_path("3d", "kitti", "training", "velodyne", "000002.bin"))
    return lidar_app.rmae_view(pts)[1].replace("**", "")


def _expected_count() -> int:
    """What the Python predictor finds in the default example (held-out KITTI 000002) at the default threshold."""
    from maskworks.data import data_path
    from maskworks.domains.lidar.detector import DEFAULT_SCORE_THRESHOLD, load_detector
    from maskworks.domains.lidar.io import read_kitti_bin

    pts = read_kitti_bin(data_path("3d", "kitti", "training", "velodyne", "000002.bin"), drop_nan=True)
    return len(load_detector().predict(pts, DEFAULT_SCORE_THRESHOLD))  # the tab runs the shipped pair


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
    from maskworks.apps.lidar_app import shipped_init

    assert page.get_by_text(f"shipped weights: {shipped_init()}").count() >= 1  # the tab says which model it runs
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
    info.get_by_text("000002.bin").wait_for()


def test_reader_handles_ply_pcd_npy_and_warns_about_units_and_axes(tmp_path):
    """The tab's reader (no browser): formats, the point cap, unit and axis warnings, named errors."""
    import numpy as np

    from maskworks.apps import lidar_app
    from maskworks.domains.points.cloud import PointCloud
    from maskworks.domains.points.io import write_points

    rng = np.random.default_rng(0)
    street = np.c_[rng.uniform(-30, 30, (5000, 2)), rng.uniform(-1.7, 1.0, 5000)].astype(np.float32)
    for ext in ("ply", "pcd"):
        write_points(tmp_path / f"street.{ext}", PointCloud(street))
        pts, _ = lidar_app.read_cloud(tmp_path / f"street.{ext}")
        assert pts.shape == (5000, 3) and np.allclose(pts, street, atol=1e-5)
    assert lidar_app.sanity_notes(street) == []
    assert "metres" in lidar_app.sanity_notes(street / 100)[0]  # a 0.6-unit-wide "street"
    assert "millimetres" in lidar_app.sanity_notes(street * 1000)[0]
    y_up = street[:, [0, 2, 1]]
    assert any("y-up" in n for n in lidar_app.sanity_notes(y_up))
    np.save(tmp_path / "bad.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^bad.npy: .*\[N, >=3\]"):
        lidar_app.read_cloud(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="unsupported extension"):
        lidar_app.read_cloud(tmp_path / "scan.las")
    big = np.c_[rng.uniform(-30, 30, (lidar_app.MAX_POINTS + 10, 2)), np.zeros(lidar_app.MAX_POINTS + 10)].astype(np.float32)
    np.save(tmp_path / "big.npy", big)
    pts, det, notes, _, _ = lidar_app.analyse_file(tmp_path / "big.npy")
    assert len(pts) == lidar_app.MAX_POINTS and any("subsampled" in n for n in notes)
    ego = [n for n in notes if "ego vehicle" in n]
    near = int((np.hypot(pts[:, 0], pts[:, 1]) <= 2.0).sum())
    assert near > 0 and ego and ego[0].startswith(f"{near:,} returns within 2 m")
