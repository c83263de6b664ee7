"""The "Audio-visual emotion (HiCMAE)" tab: a video (face and voice), an audio file, or a recording from the
microphone or camera -> the emotion probabilities, which modality they came from and how much each
contributed, and the pre-trained HiCMAE's masked and rebuilt spectrogram and face frames.

A UI over :class:`maskworks.domains.audiovisual.emotion.EmotionRecognizer`, the job that
``maskworks predict audiovisual/emotion`` and the ``/predict_audiovisual_emotion`` API run, so all give
the same numbers for the same file.
"""
from __future__ import annotations

import tempfile
import threading
from functools import lru_cache
from pathlib import Path

from maskworks.core.io import InputError
from maskworks.core.io.audio import AudioCaps
from maskworks.core.io.video import VideoCaps

CAPS = VideoCaps(max_file_bytes=25 * 1024 ** 2, max_side=4096, max_duration_s=10 * 60, timeout_s=60.0)
AUDIO_CAPS = AudioCaps(max_file_bytes=25 * 1024 ** 2, max_duration_s=10 * 60)
UPLOAD_TYPES = [".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".wav", ".flac", ".mp3", ".ogg", ".m4a"]
_LOCK = threading.Lock()

INTRO = """\
**HiCMAE** learns from talking faces without labels: it hides **90 % of the face tubes** (the same places in every
frame) and **80 % of the spectrogram patches**, lets the two encoders' visible tokens meet in a cross-modal fusion
encoder, and rebuilds what was hidden with decoders that read the encoders' intermediate layers (deepest first); an
InfoNCE loss also pulls each clip's face and voice together at those layers. A small labelled set then fine-tunes
it to read emotions. Give a **short video of a face speaking**, an **audio file**, or record one: the face is found
and cropped, 2.56 s windows are classified and averaged. Without a face (or sound) the answer comes from the
other modality alone, and the result says so.
"""


@lru_cache(maxsize=1)
def recognizer():
    from maskworks.domains.audiovisual.emotion import EmotionRecognizer

    return EmotionRecognizer.load()


def examples() -> dict[str, Path]:
    """Shipped recordings: the RAVDESS clips, and one of their sound tracks as an audio-only example."""
    from maskworks.data import data_path

    root = data_path("audiovisual", "ravdess")
    out = {f"clip {p.name}": p for p in sorted((root / "clips").glob("*.mp4"))}
    wavs = sorted((root / "audio").glob("*.wav"))
    if wavs:
        out[f"audio only {wavs[0].name}"] = wavs[0]
    return out


DEFAULT_EXAMPLE = "clip 01-01-07-02-02-01-01.mp4"


def notice() -> str:
    import json

    from maskworks.core.io import resolve_shipped
    from maskworks.domains.audiovisual.emotion import NOTICE, SHIPPED_CLASSIFIER

    try:
        meta = json.loads(resolve_shipped(SHIPPED_CLASSIFIER).with_suffix(".json").read_text())
        trained = meta["trained_on_short"]
    except (OSError, KeyError, ValueError):
        trained = "no shipped model found (train one with `maskworks train audiovisual/emotion`)"
    return f"**{NOTICE}** Shipped model: trained on {trained}."


def _pick(upload, camera, microphone, example) -> Path:
    import gradio as gr

    for x in (upload, camera, microphone):
        if x:
            return Path(x if isinstance(x, str) else getattr(x, "name", x))
    if example:
        path = examples().get(example)
        if path is None:
            raise gr.Error(f"No shipped recording named {example}.")
        return path
    raise gr.Error("Upload a video or an audio file, record one, or pick a shipped example.")


def recognise(upload, camera, microphone, example, seed):
    """The tab's one event (``api_name="recognise_emotion"``): the upload, else the camera recording, else the
    microphone recording, else the shipped example. Returns the summary, the bar plot, the contribution
    rows, the spectrogram and face pictures, the downloads and the job's JSON."""
    import gradio as gr

    path = _pick(upload, camera, microphone, example)
    try:
        with _LOCK:
            result = recognizer().predict_file(path, seed=int(seed or 0), caps=CAPS, audio_caps=AUDIO_CAPS)
    except InputError as e:
        raise gr.Error(f"Cannot read {e.short()}") from None
    out = Path(tempfile.mkdtemp(prefix="maskworks-emotion-"))
    files = result.write(out / path.stem)
    js = result.to_json()
    p = js["probabilities"]
    used = {"audio+video": "the **face and the voice**", "audio": "the **voice alone**",
            "video": "the **face alone**"}[result.used]
    text = (f"**{path.name}**: **{js['emotion']}** ({p[js['emotion']]:.0%}), read from {used} "
            f"({js['media']['windows']} window{'s' if js['media']['windows'] > 1 else ''} of 2.56 s over "
            f"{js['media']['duration_s']:.2f} s).")
    if js["alone"]:
        v, f = js["alone"]["voice alone"], js["alone"]["face alone"]
        text += (f"\n\nThe voice alone says **{max(v, key=v.get)}** ({max(v.values()):.0%}); "
                 f"the face alone says **{max(f, key=f.get)}** ({max(f.values()):.0%}).")
    if js["reconstruction"]:
        r = js["reconstruction"]
        mean = lambda k: f", each patch's own mean {r[k]:.3f}" if k in r else ""  # noqa: E731
        text += (f"\n\nPre-trained HiCMAE, seed {r['seed']}: it saw {r['video_tubes_seen']} face tubes and "
                 f"{r['audio_patches_seen']} spectrogram patches. Error on the hidden ones (its loss): faces "
                 f"{r['video_mse']:.3f} (copying the nearest visible patch {r['video_nearest_visible_mse']:.3f}"
                 f"{mean('video_patch_mean_mse')}); sound {r['audio_mse']:.3f} (nearest visible patch "
                 f"{r['audio_nearest_visible_mse']:.3f}{mean('audio_patch_mean_mse')}).")
    if result.notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in result.notes)
    rows = [[k, round(v, 3)] for k, v in (js["contributions_to_top_logit"] or {}).items()]
    pics = {f.name.rsplit("_", 1)[-1].removesuffix(".png"): str(f) for f in files}
    return (text, pics.get("probabilities"), rows or None, pics.get("spectrogram"), pics.get("faces"),
            [str(f) for f in files], js)


def api_emotion(path: str, options: dict | None = None) -> dict:
    """``{"windows": int, "seed": int, "face": "detect" | "as_is"}`` -> the emotion job's JSON."""
    options = dict(options or {})
    allowed = {"windows": int, "seed": int, "face": str}
    unknown = set(options) - set(allowed)
    if unknown:
        raise InputError("options", f"unknown options {sorted(unknown)}", f"use only {sorted(allowed)}")
    try:
        o = {k: allowed[k](v) for k, v in options.items() if v is not None}
    except (TypeError, ValueError) as e:
        raise InputError("options", str(e), "give windows: int, seed: int, face: detect or as_is") from None
    with _LOCK:
        return recognizer().predict_file(path, caps=CAPS, audio_caps=AUDIO_CAPS, **o).to_json()


def build_tab() -> None:
    import gradio as gr

    ex = examples()
    gr.Markdown(INTRO)
    gr.Markdown(notice(), elem_id="av-notice")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="a video of a face speaking, or an audio file (up to 25 MB, 10 min)",
                             file_types=UPLOAD_TYPES, elem_id="av-upload")
            with gr.Accordion("or record", open=False):
                camera = gr.Video(sources=["webcam"], label="camera (with sound)", include_audio=True,
                                  elem_id="av-camera")
                microphone = gr.Audio(sources=["microphone"], type="filepath", label="microphone",
                                      elem_id="av-microphone")
            example = gr.Dropdown(list(ex), value=DEFAULT_EXAMPLE if DEFAULT_EXAMPLE in ex else next(iter(ex), None),
                                  label="or a shipped RAVDESS recording (used when nothing is uploaded or recorded)",
                                  elem_id="av-example")
            seed = gr.Number(value=0, precision=0, label="mask seed of the reconstruction pictures", elem_id="av-seed")
            go = gr.Button("Read the emotion", variant="primary", elem_id="av-run")
            info = gr.Markdown(elem_id="av-info")
            contrib = gr.Dataframe(headers=["part of the joint head's input", "contribution to the top emotion (logit)"],
                                   label="how much each modality contributed (exact split of the joint head's logit)",
                                   elem_id="av-contrib", interactive=False)
        with gr.Column(scale=2):
            bars = gr.Image(label="emotion probabilities (markers: the voice and the face alone)", type="filepath",
                            elem_id="av-probs")
            spec = gr.Image(label="spectrogram: as heard | what the encoder saw | rebuilt", type="filepath",
                            elem_id="av-spectrogram")
            faces = gr.Image(label="face frames: as seen | what the encoder saw | rebuilt", type="filepath",
                             elem_id="av-faces")
            files = gr.File(label="downloads", file_count="multiple", elem_id="av-downloads")
            with gr.Accordion("result as JSON (what `maskworks predict audiovisual/emotion` writes)", open=False):
                js = gr.JSON(elem_id="av-json")
    outputs = [info, bars, contrib, spec, faces, files, js]
    clear = lambda: ["", None, None, None, None, None, None]  # noqa: E731 - old results never stand beside a new error
    inputs = [upload, camera, microphone, example, seed]
    go.click(clear, None, outputs, queue=False).then(recognise, inputs, outputs, api_name="recognise_emotion")
    upload.upload(clear, None, outputs, queue=False).then(recognise, inputs, outputs, api_name="recognise_emotion_upload")


def launch(host: str = "127.0.0.1", port: int = 7865, block: bool = True):
    from maskworks.apps.demo import launch_tab

    return launch_tab("Audio-visual emotion (HiCMAE)", build_tab, host, port, block=block)
