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


def test_corrupt_upload_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(gr.Error, match="broken.png.*corrupt"):
        anomaly_app.analyse(str(bad), "auto", None, "jet", 0.5, 0.95)
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(gr.Error, match="notes.txt: unknown format"):
        anomaly_app.analyse(str(odd), "auto", None, "jet", 0.5, 0.95)


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
    """The tab and ``maskworks predict medical/anomaly`` call the same job: same report for the same file."""
    from maskworks.apps.cli import main
    from maskworks.data import data_path

    path = data_path("medical", "dicom", "RG1_UNCI.dcm")  # a real CR chest radiograph
    *_, report = anomaly_app.analyse(str(path), "auto", None, "jet", 0.5, 0.95)
    assert main(["predict", "medical/anomaly", str(path), "--out", str(tmp_path), "--no-progress"]) == 0
    cli = json.loads((tmp_path / "RG1_UNCI.json").read_text())
    assert {k: v for k, v in cli.items() if k not in ("input", "outputs")} == report
    assert cli["outputs"] == ["RG1_UNCI_heatmap.png"]
