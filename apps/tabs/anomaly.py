"""Demo tab: where does a chest X-ray look unlike the normal ones? (MemMC-MAE anomaly heatmap)

Upload a PNG/JPEG, DICOM (with window presets) or NIfTI (with a slice slider), or pick a shipped
example. Shows the heatmap over the image, the contour of the region above the threshold, the
image's score against held-out normal images, and offers the overlay PNG and a JSON report.
An image the model cannot judge (not a frontal chest radiograph: a CT, an MR, noise, a turned or
inverted image) gets the reason instead of a verdict; a file that cannot be read clears the previous
result and leaves the reason on the page. Research use only, not diagnosis. Only the uploaded file is read.
"""
from __future__ import annotations

import io
import json
import logging
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DISCLAIMER = ("**For research use only, not for diagnosis.** The model learned what *normal* looks like "
              "from a few hundred small public chest X-rays; a high score means \"unlike those\", "
              "not \"disease\".")
CMAPS = ["jet", "inferno", "viridis", "magma", "turbo"]


@lru_cache(maxsize=1)
def detector():
    """The shipped MemMC-MAE with its calibration, loaded once (on the GPU when there is one)."""
    from maskworks.domains.medical.anomaly.detector import AnomalyDetector

    return AnomalyDetector.load()


def examples_dir() -> Path:
    from maskworks.data import data_path

    return data_path("examples", "anomaly")


def example_names() -> list[str]:
    try:
        return sorted(p.name for p in examples_dir().glob("*.png"))
    except FileNotFoundError:
        return []


def _fig_to_array(fig) -> np.ndarray:
    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def model_input_px() -> int | None:
    """The side the shipped model sees images at, from its record (no model loaded)."""
    from maskworks.domains.medical.anomaly.detector import record_path, shipped_weights

    try:
        return int(json.loads(record_path(shipped_weights()).read_text())["recipe"]["data"]["size"])
    except Exception:  # noqa: BLE001 - the page still builds without the model
        return None


def _cleared(message: str, report: dict):
    """Outputs after a file that could not be used: nothing of the previous file stays on screen."""
    import gradio as gr

    return None, None, None, message, None, gr.update(visible=False, value=0), report


def analyse(path: str | None, window: str, slice_index: float | None, cmap: str, opacity: float,
            specificity: float):
    """Score one file; returns (input, overlay, score plot, text, downloads, slice slider update, JSON report).
    ``slice_index`` None (a new file) means the middle slice of a volume. The same
    :meth:`~maskworks.domains.medical.anomaly.detector.AnomalyDetector.analyse_file` as the CLI.

    A file that cannot be read, or none, clears every output and leaves the reason in the text (and the
    report's ``error``); an image the model cannot judge shows the input and the reasons, no heatmap,
    no score and no verdict. User errors are logged as one line."""
    import gradio as gr
    from PIL import Image

    from maskworks.core.io import InputError
    from maskworks.domains.medical.anomaly.detector import score_plot

    if not path:
        return _cleared("Upload a chest X-ray (PNG/JPEG, DICOM or NIfTI) or pick an example.",
                        {"error": "no file given"})
    try:
        det = detector()
    except (FileNotFoundError, ValueError) as e:
        raise gr.Error(f"The anomaly model is not available: {e}") from None
    name = Path(path).name
    try:
        res = det.analyse_file(path, window, None if slice_index is None else int(slice_index), float(specificity))
    except InputError as e:
        log.warning("anomaly tab: cannot read %s", e.short())
        gr.Warning(f"Cannot read {e.short()}")
        return _cleared(f"**Cannot read {e.short()}**\n\nNothing was scored; the previous result was cleared.",
                        {"file": name, "error": e.short(), "in_distribution": None, "anomalous": None})
    shown = np.asarray(Image.fromarray((np.clip(res.image, 0, 1) * 255).astype(np.uint8)).resize((256, 256), Image.BILINEAR))
    out = Path(tempfile.mkdtemp(prefix="maskworks-anomaly-"))
    stem = name.split(".")[0] or "image"
    report = res.to_json()
    js = out / f"{stem}_anomaly_report.json"
    js.write_text(json.dumps(report, indent=2))
    depth = res.depth
    if slice_index is None:
        slider = gr.update(maximum=max(depth - 1, 1), value=depth // 2, visible=depth > 1)
    else:
        slider = gr.update(maximum=max(depth - 1, 1), visible=depth > 1)
    px = f"The model sees the image at {res.size} x {res.size} px (left, enlarged)."
    if not res.in_distribution:
        log.info("anomaly tab: %s not judged: %s", name, "; ".join(res.reasons))
        reasons = "\n".join(f"* {r}" for r in res.reasons)
        text = (f"**{name}** — ⚠️ **This does not look like a frontal chest radiograph; the score is not "
                f"meaningful.** No verdict is given:\n\n{reasons}\n\n{px} Model `{det.version}`.")
        return shown, None, None, text, [str(js)], slider, report
    ov = res.overlay(float(opacity), cmap)
    plot = _fig_to_array(score_plot(det.calibration, res.z, res.threshold))
    verdict = "**above** the threshold" if res.anomalous else "below the threshold"
    text = (f"**{name}** — anomaly score z = **{res.z:+.3f}** (raw {res.score:.5f}), {verdict} "
            f"z = {res.threshold:.2f} (chosen so that {specificity:.0%} of held-out normal images fall below). "
            f"Higher than {res.percentile:.0%} of normal images. {px} Model `{det.version}`.")
    png = out / f"{stem}_anomaly_overlay.png"
    Image.fromarray(ov).save(png)
    return shown, ov, plot, text, [str(png), str(js)], slider, report


def build_tab() -> None:
    """Creates the tab's components; never raises (a missing model is reported when used)."""
    import gradio as gr
    from maskworks.domains.medical.anomaly.detector import WINDOW_CHOICES

    px = model_input_px()
    sees = f" It sees every image at **{px} x {px} px**: fine detail is lost." if px else ""
    gr.Markdown("MemMC-MAE (a masked autoencoder with memory slots and multi-level cross-attention) was trained "
                "on **normal** frontal chest X-rays only; regions it cannot reconstruct light up." + sees +
                " Anything else (CT, MR, a lateral, turned or inverted image) gets the reason, not a verdict. "
                + DISCLAIMER)
    path = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="chest X-ray: PNG/JPEG, DICOM (.dcm) or NIfTI (.nii/.nii.gz)", type="filepath",
                             elem_id="anomaly-upload")
            names = example_names()
            example = gr.Dropdown(names, value=names[0] if names else None, label="or a shipped example",
                                  elem_id="anomaly-example")
            example_go = gr.Button("Analyse example", variant="primary", elem_id="anomaly-example-go")
            window = gr.Dropdown(list(WINDOW_CHOICES), value="auto", label="DICOM/NIfTI window")
            slice_index = gr.Slider(0, 1, value=0, step=1, label="slice (volumes)", visible=False)
            specificity = gr.Slider(0.80, 0.995, value=0.95, step=0.005, elem_id="anomaly-specificity",
                                    label="threshold: specificity on normal images (lower = more sensitive)")
            cmap = gr.Dropdown(CMAPS, value="jet", label="colormap")
            opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="heatmap opacity")
        with gr.Column(scale=2):
            with gr.Row():
                shown = gr.Image(label=f"input as the model sees it ({px} x {px} px, enlarged)" if px else
                                 "input (as the model sees it)", height=256, elem_id="anomaly-input")
                heat = gr.Image(label="heatmap and above-threshold contour", height=256, elem_id="anomaly-overlay")
            info = gr.Markdown(elem_id="anomaly-info")
            plot = gr.Image(label="score vs. normal images", height=230, elem_id="anomaly-plot")
            files = gr.File(label="downloads: overlay PNG, JSON report", file_count="multiple",
                            elem_id="anomaly-downloads")
    report = gr.JSON(visible=False)
    outputs = [shown, heat, plot, info, files, slice_index, report]
    controls = [window, slice_index, cmap, opacity, specificity]

    def from_example(name):
        if not name:
            raise gr.Error("No shipped examples found (data/examples/anomaly).")
        return str(examples_dir() / name)

    def new_file(p, window, _slice, cmap, opacity, specificity):
        return analyse(p, window, None, cmap, opacity, specificity)

    example_go.click(from_example, example, path).then(new_file, [path] + controls, outputs, api_name="anomaly")
    upload.upload(lambda f: f, upload, path).then(new_file, [path] + controls, outputs)
    for c in controls:
        c.release(analyse, [path] + controls, outputs) if isinstance(c, gr.Slider) else \
            c.input(analyse, [path] + controls, outputs)


def launch(host: str = "127.0.0.1", port: int = 7861, block: bool = True):
    """This tab on its own (binds 127.0.0.1, caps uploads at 25 MB, one model call at a time)."""
    from maskworks.apps.demo import launch_tab

    return launch_tab("Chest X-ray anomaly heatmap (MemMC-MAE)", build_tab, host, port, "25mb", block)


if __name__ == "__main__":
    launch()
