"""The anomaly tab's functions without a browser: scores match the detector, bad files are explained."""
from __future__ import annotations

import json

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from maskworks.apps.tabs import anomaly as anomaly_app
from maskworks.apps.entries import collect
from maskworks.domains.medical.anomaly.detector import AnomalyDetector, file_sha256, to_unit_range
from maskworks.domains.medical.imaging.io import load_medical_image


def test_tab_and_commands_are_registered():
    assert collect("TABS")["Anomaly heatmap (chest X-ray)"] == "maskworks.apps.tabs.anomaly:build_tab"
    assert "medical/anomaly" in collect("EVALS") and "medical/anomaly" in collect("PREDICTS")
    assert "anomaly-latency" in collect("BENCHES")


def test_example_scores_as_the_detector_does_and_reports():
    names = anomaly_app.example_names()
    assert len(names) == 4 and sum(n.startswith("normal") for n in names) == 2
    path = anomaly_app.examples_dir() / "pneumonia_val_0060.png"
    shown, ov, plot, text, files, _, _ = anomaly_app.analyse(str(path), "auto", None, "jet", 0.5, 0.95)
    arr, meta = load_medical_image(path)
    ref = AnomalyDetector.load().analyse(to_unit_range(arr, meta))
    assert f"z = **{ref.z:+.3f}**" in text and "above" in text  # this example is flagged at 95 % specificity
    assert ov.shape == (256, 256, 3) and shown.shape == (256, 256) and plot.ndim == 3
    report = json.loads(open(files[1]).read())
    assert report["sha256"] == file_sha256(path) and report["z_score"] == pytest.approx(ref.z)
    assert report["model_version"].startswith("memmc-cxr-") and "not for diagnosis" in report["note"]
    # a more sensitive threshold (lower specificity) can only lower the threshold
    *_, text2, _, _, _ = anomaly_app.analyse(str(path), "auto", None, "jet", 0.5, 0.8)
    assert float(text2.split("threshold z = ")[1].split(" ")[0]) <= ref.threshold


def test_a_failed_upload_clears_the_previous_result_and_keeps_the_reason(tmp_path, caplog):
    good = anomaly_app.examples_dir() / "pneumonia_val_0060.png"
    before = anomaly_app.analyse(str(good), "auto", None, "jet", 0.5, 0.95)
    assert before[1] is not None and before[4]  # a heatmap and downloads are on screen
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with caplog.at_level("INFO", logger="maskworks.apps.tabs.anomaly"):
        shown, ov, plot, text, files, slider, report = anomaly_app.analyse(str(bad), "auto", None, "jet", 0.5, 0.95)
    # every output of the previous file is replaced: no image, heatmap, plot, downloads or verdict remain
    assert shown is None and ov is None and plot is None and files is None and slider["visible"] is False
    assert text.startswith("**Cannot read broken.png: not a readable image") and "corrupt" in text
    assert "above" not in text and "z =" not in text
    assert str(tmp_path) not in text  # no server paths in what the user reads
    assert report["error"].startswith("broken.png:") and report["anomalous"] is None
    # the user error is one log line, without a traceback
    records = [r for r in caplog.records if r.name == "maskworks.apps.tabs.anomaly"]
    assert len(records) == 1 and records[0].exc_info is None and "\n" not in records[0].getMessage()
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    assert "notes.txt: unknown format" in anomaly_app.analyse(str(odd), "auto", None, "jet", 0.5, 0.95)[3]
    assert anomaly_app.analyse(None, "auto", None, "jet", 0.5, 0.95)[1] is None


def test_a_ct_gets_the_reason_and_no_verdict():
    from maskworks.data import data_path

    ct = data_path("medical", "dicom", "CT_small.dcm")
    shown, ov, plot, text, files, _, report = anomaly_app.analyse(str(ct), "auto", None, "jet", 0.5, 0.95)
    assert shown.shape == (256, 256)  # the input is shown, as the model would see it
    assert ov is None and plot is None  # no heatmap, no score against the normals
    assert "does not look like a frontal chest radiograph; the score is not meaningful" in text
    assert "Modality is CT" in text and "above" not in text and "z =" not in text
    assert report["in_distribution"] is False and report["anomalous"] is None and report["z_score"] is None
    assert len(files) == 1 and json.loads(open(files[0]).read()) == report  # the JSON report says why


def test_page_and_report_say_what_size_the_model_sees():
    det = AnomalyDetector.load()
    assert anomaly_app.model_input_px() == det.size == 28  # the shipped model: PneumoniaMNIST, 28 px
    path = anomaly_app.examples_dir() / "normal_val_0183.png"
    *_, text, _, _, report = anomaly_app.analyse(str(path), "auto", None, "jet", 0.5, 0.95)
    assert "The model sees the image at 28 x 28 px" in text and report["model_input_px"] == 28


def test_dicom_windows_and_nifti_slices():
    from maskworks.data import data_path

    ct = data_path("medical", "dicom", "CT_small.dcm")
    a = anomaly_app.analyse(str(ct), "lung", None, "jet", 0.5, 0.95)
    b = anomaly_app.analyse(str(ct), "bone", None, "jet", 0.5, 0.95)
    assert not np.array_equal(a[0], b[0])  # the window changes what the model sees
    nii = data_path("medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    *_, slider, _ = anomaly_app.analyse(str(nii), "auto", None, "jet", 0.5, 0.95)
    assert slider["visible"] is True and slider["maximum"] == 188 and slider["value"] == 94  # 189 axial slices


def test_tab_and_cli_give_the_same_json(tmp_path):
    """The tab and ``maskworks predict medical/anomaly`` call the same job: same report for the same file,
    a verdict for a chest radiograph, the same refusal for a CT."""
    from maskworks.apps.cli import main
    from maskworks.data import data_path

    cxr = data_path("medical", "dicom", "RG1_UNCI.dcm")  # a real CR chest radiograph
    ct = data_path("medical", "dicom", "CT_small.dcm")
    assert main(["predict", "medical/anomaly", str(cxr), str(ct), "--out", str(tmp_path), "--no-progress"]) == 0
    for path, outputs in [(cxr, ["RG1_UNCI_heatmap.png"]), (ct, [])]:
        *_, report = anomaly_app.analyse(str(path), "auto", None, "jet", 0.5, 0.95)
        cli = json.loads((tmp_path / f"{path.stem}.json").read_text())
        assert {k: v for k, v in cli.items() if k not in ("input", "outputs")} == report
        assert cli["outputs"] == outputs
    assert report["in_distribution"] is False and cli["anomalous"] is None  # the CT
    rg1 = json.loads((tmp_path / "RG1_UNCI.json").read_text())
    assert rg1["in_distribution"] is True and isinstance(rg1["anomalous"], bool) and rg1["ood_reasons"] == []
