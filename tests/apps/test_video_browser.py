"""The Video MAE tab in a real browser: a shipped clip -> panel, GIF, figures; a broken upload -> a message."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

TAB = "Video MAE (VideoMAE V2)"


def _expected(name: str = "apply_eye_makeup.avi", seed: int = 0) -> dict:
    from maskworks.data import data_path
    from maskworks.domains.video.reconstruct import VideoReconstructor

    return VideoReconstructor.load(device="cpu").predict_file(data_path("video", "kinetics_ucf", "videos", name),
                                                              seed=seed).to_json()


def test_video_tab_reconstructs_a_shipped_clip_and_explains_a_bad_upload(page, tmp_path, screenshot):
    want = _expected()
    page.get_by_role("tab", name=TAB).click()
    page.locator("#video-run").click()
    info = page.locator("#video-info")
    info.get_by_text("apply_eye_makeup.avi").wait_for()  # the default: the held-out clip
    page.locator("#video-panel img").wait_for()
    page.locator("#video-gif img").wait_for()
    text = info.inner_text()
    m = want["hidden_tube_mse"]
    assert f"model {m['model']:.4f}" in text and f"copying the nearest visible patch {m['nearest_visible_patch']:.4f}" in text
    assert f"Encoder sees {want['tokens']['encoder_visible']} of {want['tokens']['total']}" in text
    page.locator(f'#video-steps [role=row][aria-rowindex="{len(want["per_step"]) + 1}"]').wait_for()
    gif = page.locator("#video-gif img").get_attribute("src")
    assert gif and ".gif" in gif
    screenshot(page, "demo_video", docs="video/video_app.png")

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    page.locator("#video-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot read broken.mp4").first.wait_for()
    assert "not a readable video container" in page.get_by_text("Cannot read broken.mp4").first.inner_text()
    assert "apply_eye_makeup" not in page.locator("#video-info").inner_text()  # the old result is cleared
    screenshot(page, "demo_video_bad_upload")
