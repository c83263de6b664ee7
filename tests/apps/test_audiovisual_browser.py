"""The emotion tab in a real browser: a shipped clip -> probabilities, contributions, rebuilt spectrogram and
faces; an audio file -> the voice alone; a broken upload -> a message, the old result cleared."""
from __future__ import annotations

import pytest

from maskworks.data import data_path

pytestmark = pytest.mark.browser

TAB = "Audio-visual emotion (HiCMAE)"
ROOT = data_path("audiovisual", "ravdess")


def _expected(path, seed: int = 0) -> dict:
    from maskworks.apps.tabs.audiovisual import AUDIO_CAPS, CAPS
    from maskworks.domains.audiovisual.emotion import EmotionRecognizer

    return EmotionRecognizer.load(device="cpu").predict_file(path, seed=seed, caps=CAPS, audio_caps=AUDIO_CAPS).to_json()


def test_emotion_tab_reads_a_clip_an_audio_file_and_explains_a_bad_upload(page, tmp_path, screenshot):
    clip = ROOT / "clips" / "01-01-07-02-02-01-01.mp4"
    want = _expected(clip)
    page.get_by_role("tab", name=TAB).click()
    page.locator("#av-run").click()
    info = page.locator("#av-info")
    info.get_by_text(clip.name).wait_for()
    for pic in ("#av-probs img", "#av-spectrogram img", "#av-faces img"):
        page.locator(pic).wait_for()
    text = info.inner_text()
    assert f"{want['emotion']} ({want['probabilities'][want['emotion']]:.0%}), read from the face and the voice" in text
    assert "The voice alone says" in text and "face tubes" in text
    page.locator('#av-contrib [role=row][aria-rowindex="5"]').wait_for()  # header + 4 parts
    assert "Research use only" in page.locator("#av-notice").inner_text()
    screenshot(page, "demo_audiovisual", docs="audiovisual/emotion_app.png")

    wav = ROOT / "audio" / "01-01-04-01-01-01-05.wav"
    page.locator("#av-upload input[type=file]").set_input_files(str(wav))
    info.get_by_text(wav.name).wait_for()
    assert "read from the voice alone" in info.inner_text() and "was in this classifier's training set" in info.inner_text()
    page.locator("#av-spectrogram img").wait_for()
    assert page.locator("#av-faces img").count() == 0
    screenshot(page, "demo_audiovisual_audio_only")

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    page.locator("#av-upload button[aria-label='Clear']").click()  # a shown file replaces the file input
    page.locator("#av-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot read broken.mp4").first.wait_for()
    assert "not a readable video container" in page.get_by_text("Cannot read broken.mp4").first.inner_text()
    assert wav.name not in page.locator("#av-info").inner_text()  # the old result is cleared
    screenshot(page, "demo_audiovisual_bad_upload")
