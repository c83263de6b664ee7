"""The anomaly tab in a real browser: example -> heatmap and score; a corrupt upload clears the previous
result and leaves the reason on the page; a CT gets the reason instead of a verdict."""

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
    from maskworks.data import data_path

    page.get_by_role("tab", name=TAB).click()
    page.get_by_text("It sees every image at 28 x 28 px").first.wait_for()
    page.locator("#anomaly-example-go").click()
    info = page.locator("#anomaly-info")
    info.get_by_text("anomaly score z").wait_for()
    page.locator("#anomaly-overlay img").wait_for()
    text = info.inner_text()
    assert "normal_val_0183.png" in text  # the first example (alphabetical) is the default
    shown = float(text.split("z = ")[1].split(" ")[0])
    assert shown == pytest.approx(_expected_z("normal_val_0183.png"), abs=1e-3)
    assert "below the threshold" in text and "The model sees the image at 28 x 28 px" in text
    page.locator("#anomaly-plot img").wait_for()
    screenshot(page, "demo_anomaly", docs="medical/anomaly_app.png")

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    page.locator("#anomaly-upload input[type=file]").set_input_files(str(bad))
    info.get_by_text("Cannot read broken.png").wait_for()  # on the page, not only in a toast
    # the previous file's verdict, heatmap, plot and downloads are gone
    page.locator("#anomaly-overlay img").wait_for(state="detached")
    assert page.locator("#anomaly-plot img").count() == 0 and page.locator("#anomaly-input img").count() == 0
    assert "normal_val_0183" not in info.inner_text() and "threshold" not in info.inner_text()
    assert page.locator("#anomaly-downloads a").count() == 0
    page.wait_for_timeout(12_000)  # longer than a toast lives: the reason is still there
    assert "Cannot read broken.png" in info.inner_text()
    screenshot(page, "demo_anomaly_bad_upload")

    page.locator("#anomaly-upload").get_by_role("button", name="Clear").click()
    page.locator("#anomaly-upload input[type=file]").set_input_files(str(data_path("medical", "dicom", "CT_small.dcm")))
    info.get_by_text("does not look like a frontal chest radiograph").wait_for()
    page.locator("#anomaly-input img").wait_for()  # the input is shown ...
    assert page.locator("#anomaly-overlay img").count() == 0  # ... but no heatmap and no verdict
    text = info.inner_text()
    assert "Modality is CT" in text and "above" not in text and "z =" not in text
    screenshot(page, "demo_anomaly_not_a_chest_radiograph", docs="medical/anomaly_app_ood.png")
    # the app keeps serving
    page.locator("#anomaly-example-go").click()
    info.get_by_text("normal_val_0183.png").wait_for()
