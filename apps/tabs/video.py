"""The "Video MAE (VideoMAE V2)" tab: a clip -> the two masks of dual masking, the reconstruction of
the hidden tubes (frames and an animated GIF), and its error against copying the nearest visible patch.

A UI over :class:`maskworks.domains.video.reconstruct.VideoReconstructor`, the job that
``maskworks predict video/videomae`` runs, so both give the same numbers for the same file and seed.
"""
from __future__ import annotations

import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from maskworks.core.io import InputError
from maskworks.core.io.video import VideoCaps

CAPS = VideoCaps(max_file_bytes=25 * 1024 ** 2, max_side=4096, max_duration_s=30 * 60, timeout_s=60.0)
UPLOAD_TYPES = [".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v"]
_LOCK = threading.Lock()

INTRO = """\
**VideoMAE V2** pre-trains a video transformer by hiding **90 % of the tubes** (the same 16x16 places in every
frame) from the encoder and asking a decoder to rebuild them. V2's *dual masking* also lets the decoder rebuild
only **half of the hidden tubes** (running 2x2 cells that shift every 2 frames): half the decoder's work for the
same learning signal. Each column below is one 2-frame step of a 16-frame clip (frames 4 apart, 112 px):
**green edges** = the tubes the encoder sees, **orange** = hidden tubes the decoder rebuilds during training,
**dark** = hidden tubes its running cells skip. The reconstruction fills *every* hidden tube; it is compared with
the simplest guess, copying the nearest visible patch.
"""


@lru_cache(maxsize=1)
def reconstructor():
    from maskworks.domains.video.reconstruct import VideoReconstructor

    return VideoReconstructor.load()


def examples() -> dict[str, Path]:
    """Shipped clips by file name."""
    from maskworks.data import data_path

    folder = data_path("video", "kinetics_ucf", "videos")
    return {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in UPLOAD_TYPES}


def held_out_examples() -> list[str]:
    """The shipped clips of the test split, which the shipped model never saw."""
    from maskworks.domains.video.data import read_video_folder

    return [e.path.name for e in read_video_folder("shipped:video/kinetics_ucf", "test")]


def model_note() -> str:
    import json

    from maskworks.core.io import resolve_shipped
    from maskworks.domains.video.reconstruct import SHIPPED_WEIGHTS

    try:
        meta = json.loads(resolve_shipped(SHIPPED_WEIGHTS).with_suffix(".json").read_text())
        return f"Shipped model: {meta['trained_on_short']}. {meta.get('eval_short', '')}"
    except (OSError, KeyError, ValueError):
        return "Shipped model: not found (train one with `maskworks train video/videomae-v2`)."


def reconstruct(upload: str | None, example: str | None, seed: float, start: str | float | None):
    """The tab's one event (``api_name="reconstruct_video"``): the upload if there is one, else the
    chosen shipped clip. Returns panel, GIF, summary, per-step rows, downloads and the JSON."""
    import gradio as gr

    if upload:
        path = Path(upload)
    elif example:
        path = examples().get(example)
        if path is None:
            raise gr.Error(f"No shipped clip named {example}.")
    else:
        raise gr.Error("Upload a short video (mp4, avi, webm, mov, mkv) or pick a shipped clip.")
    try:
        start_s = None if start is None or str(start).strip() == "" else float(str(start).strip())
    except ValueError:
        raise gr.Error(f"Clip start {start!r} is not a number of seconds; leave it empty for the middle.") from None
    try:
        with _LOCK:
            result = reconstructor().predict_file(path, seed=int(seed or 0), start_s=start_s, caps=CAPS)
    except InputError as e:
        raise gr.Error(f"Cannot read {e.short()}") from None
    out = Path(tempfile.mkdtemp(prefix="maskworks-video-"))
    files = result.write(out / path.stem)
    js = result.to_json()
    m = js["hidden_tube_mse"]
    tok = js["tokens"]
    verdict = "better than" if result.beats_baseline else "**not better** than"
    text = (f"**{path.name}**: frames {js['frames'][0]}–{js['frames'][-1]} ({js['times_s'][0]:.2f}–{js['times_s'][-1]:.2f} s) "
            f"of {result.info.num_frames} ({result.info.width}x{result.info.height}, {result.info.fps:.3g} fps).\n\n"
            f"Encoder sees **{tok['encoder_visible']} of {tok['total']}** tokens; in training the decoder rebuilds "
            f"{tok['decoder_reconstructs_in_training']} of the {tok['hidden']} hidden ones.\n\n"
            f"Hidden-tube error (MSE, pixels 0–1): model **{m['model']:.4f}**, copying the nearest visible patch "
            f"**{m['nearest_visible_patch']:.4f}**: the model is {verdict} the baseline on this clip "
            f"(x{m['ratio_baseline_over_model']:.2f}). Filling every hidden tube with the mean of the visible "
            f"ones scores {m['visible_patch_mean']:.4f}"
            f"{' (**better than the model** here: it has learnt little more than colours)' if m['visible_patch_mean'] < m['model'] else ''}.")
    if result.notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in result.notes)
    rows = [[f"{s['frames'][0]}-{s['frames'][-1]}", s["model"], s["nearest_visible_patch"]] for s in js["per_step"]]
    return str(files[0]), str(files[1]), text, rows, [str(f) for f in files], js


def build_tab() -> None:
    import gradio as gr

    ex = examples()
    held_out = set(held_out_examples())
    default = next((n for n in ex if n in held_out), next(iter(ex), None))
    choices = [(f"{n} ({'held out: never trained on' if n in held_out else 'a training clip'})", n)
               for n in sorted(ex, key=lambda n: (n not in held_out, n))]
    gr.Markdown(INTRO)
    gr.Markdown(model_note(), elem_id="video-model")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="a short video (mp4, avi, webm, mov, mkv; up to 25 MB)", file_types=UPLOAD_TYPES,
                             elem_id="video-upload")
            example = gr.Dropdown(choices, value=default, label="or a shipped clip (used when nothing is uploaded)",
                                  elem_id="video-example")
            seed = gr.Number(value=0, precision=0, label="mask seed", elem_id="video-seed")
            start = gr.Textbox(value="", label="clip start in seconds (empty: the middle of the video)",
                               elem_id="video-start")
            go = gr.Button("Reconstruct", variant="primary", elem_id="video-run")
            info = gr.Markdown(elem_id="video-info")
            steps = gr.Dataframe(headers=["frames", "model MSE", "nearest-visible MSE"], label="per 2-frame step",
                                 elem_id="video-steps", interactive=False)
        with gr.Column(scale=2):
            pic = gr.Image(label="rows: clip | what the encoder and decoder see | reconstruction | nearest visible patch",
                           type="filepath", elem_id="video-panel")
            gif = gr.Image(label="animated: clip | masks | reconstruction | baseline", type="filepath", elem_id="video-gif")
            files = gr.File(label="downloads: panel PNG, GIF", file_count="multiple", elem_id="video-downloads")
            with gr.Accordion("result as JSON (what `maskworks predict video/videomae` writes)", open=False):
                js = gr.JSON(elem_id="video-json")
    outputs = [pic, gif, info, steps, files, js]
    clear = lambda: [None, None, "", None, None, None]  # noqa: E731 - old results never stand beside a new error
    go.click(clear, None, outputs, queue=False).then(reconstruct, [upload, example, seed, start], outputs,
                                                     api_name="reconstruct_video")
    upload.upload(clear, None, outputs, queue=False).then(reconstruct, [upload, example, seed, start], outputs,
                                                          api_name="reconstruct_video_upload")


def launch(host: str = "127.0.0.1", port: int = 7864, block: bool = True):
    from maskworks.apps.demo import launch_tab

    return launch_tab("Video MAE (VideoMAE V2)", build_tab, host, port, block=block)
