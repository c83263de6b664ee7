"""The anomaly tab in a real browser: example -> heatmap and score, corrupt upload -> message."""

import pytest

pytestmark = pytest.mark.browser

TAB = "Anomaly heatmap (chest X-ray)"


def _expected_z(name: str) -> float:
    from maskworks.apps.tabs.anomaly import examples_dir
    from maskworks.domains.medical.anomaly.detector import AnomalyDetector, to_unit_range
    from maskworks.domains.medical.imaging.io import load_medical_image

    arr, meta = load_medical_image(examples_dir() / name)
    return AnomalyDetector.load().analyse(to_unit_range(arr, meta)).z


def test_anomaly_tab_scores_an_example_and_explains_a_bad_upload(page, tmp_path, screenshot):
    page.get_by_role("tab", name=TAB).click()
    page.locator("#anomaly-example-go").click()
    info = page.locator("#anomaly-info")
    info.get_by_text("anomaly score z").wait_for()
    page.locator("#anomaly-overlay img").wait_for()
    text = info.inner_text()
    assert "normal_val_0183.png" in text  # the first example (alphabetical) is the default
    shown = float(text.split("z = ")[1].split(" ")[0])
    assert shown == pytest.approx(_expected_z("normal_val_0183.png"), abs=1e-3)
    assert "below the threshold" in text
    page.locator("#anomaly-plot img").wait_for()
    screenshot(page, "demo_anomaly", docs="medical/anomaly_app.png")

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    page.locator("#anomaly-upload input[type=file]").set_input_files(str(bad))
    page.get_by_text("Cannot read broken.png").first.wait_for()
    screenshot(page, "demo_anomaly_bad_upload")
    # the app keeps serving
    page.locator("#anomaly-example-go").click()
    info.get_by_text("normal_val_0183.png").wait_for()
