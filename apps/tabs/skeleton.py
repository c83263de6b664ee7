"""Demo tab: the action in a skeleton file or a short video, and what SkeletonMAE makes of the skeleton.

Upload a skeleton (pyskl ``.pkl``, NTU ``.skeleton``, ``.npy``/``.npz`` with 25 NTU / 17 COCO / 33
MediaPipe joints, BVH) or a short video (MediaPipe estimates the pose, drawn over a few frames), or pick a
shipped CMU sequence the model never saw. Shows an animated 3-D skeleton of one window with two body
parts hidden (red) and SkeletonMAE's reconstruction of them (green), the action probabilities, and
downloads (JSON, joints, pose). All through :class:`maskworks.domains.skeleton.actions.ActionRecognizer`,
the job the CLI runs.
"""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

UPLOAD_TYPES = [".pkl", ".skeleton", ".npy", ".npz", ".bvh", ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"]
VIDEO_MAX_FRAMES = 150  # the tab reads at most 5 s of video at 30 fps (the CLI's --max-frames goes further)


@lru_cache(maxsize=1)
def recognizer():
    """The shipped STRL classifier and SkeletonMAE, loaded once (GPU when present)."""
    from maskworks.domains.skeleton.actions import ActionRecognizer

    return ActionRecognizer.load()


def examples() -> dict[str, Path]:
    """Shipped CMU sequences the shipped model was not trained on."""
    import csv

    from maskworks.data import data_path

    out: dict[str, Path] = {}
    try:
        root = data_path("skeleton", "cmu")
    except FileNotFoundError:
        return out
    held = set(recognizer().info.get("held_out", []))
    with open(root / "labels.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["file"] in held:
                out[f"CMU {Path(r['file']).stem}: {r['description']} (held out)"] = root / r["file"]
    return out


def skeleton_figure(rec, title: str = ""):
    """Plotly 3-D animation of the reconstructed window: visible bones blue, hidden parts' truth red (faint),
    SkeletonMAE's rebuilt parts green; y up, metres, pelvis of the first frame at the origin."""
    import plotly.graph_objects as go

    from maskworks.domains.skeleton.layouts import NTU25

    hidden = set(rec.masked_joints)

    def lines(pts: np.ndarray, bones):
        xs, ys, zs = [], [], []
        for a, b in bones:
            xs += [pts[a, 0], pts[b, 0], None]
            ys += [pts[a, 2], pts[b, 2], None]  # plotly's z is up: show (x, z, y)
            zs += [pts[a, 1], pts[b, 1], None]
        return xs, ys, zs

    vis_bones = [(a, b) for a, b in NTU25.bones if a not in hidden and b not in hidden]
    hid_bones = [(a, b) for a, b in NTU25.bones if a in hidden or b in hidden]

    def traces(f: int):
        out = []
        for pts, bones, name, color, width in ((rec.truth[f], vis_bones, "visible joints", "#1f77b4", 7),
                                               (rec.truth[f], hid_bones, "hidden parts (truth)", "#d62728", 4),
                                               (rec.recon[f], hid_bones, "SkeletonMAE reconstruction", "#2ca02c", 7)):
            x, y, z = lines(pts, bones)
            out.append(go.Scatter3d(x=x, y=y, z=z, mode="lines+markers", name=name, line=dict(color=color, width=width),
                                    marker=dict(size=2.5, color=color), opacity=0.6 if "truth" in name else 1.0))
        return out

    frames = [go.Frame(data=traces(f), name=str(f)) for f in range(len(rec.truth))]
    allp = np.concatenate([rec.truth.reshape(-1, 3), rec.recon.reshape(-1, 3)])
    lo, hi = allp.min(0) - 0.1, allp.max(0) + 0.1
    fig = go.Figure(data=traces(0), frames=frames)
    fig.update_layout(
        height=600, margin=dict(l=0, r=0, t=40, b=0), legend=dict(x=0, y=1), title=dict(text=title, font=dict(size=12)),
        scene=dict(aspectmode="data", xaxis=dict(title="x (m)", range=[lo[0], hi[0]]),
                   yaxis=dict(title="z (m)", range=[lo[2], hi[2]]), zaxis=dict(title="y up (m)", range=[lo[1], hi[1]]),
                   camera=dict(eye=dict(x=1.45, y=-1.8, z=0.5))),
        updatemenus=[dict(type="buttons", x=0.02, y=0.02, xanchor="left", yanchor="bottom", buttons=[
            dict(label="▶ play", method="animate", args=[None, dict(frame=dict(duration=66, redraw=True), fromcurrent=True)]),
            dict(label="❚❚", method="animate", args=[[None], dict(mode="immediate", frame=dict(duration=0))])])],
        sliders=[dict(active=0, x=0.15, len=0.8, y=0.02, currentvalue=dict(prefix="frame "),
                      steps=[dict(method="animate", label=str(f), args=[[str(f)], dict(mode="immediate",
                                                                                     frame=dict(duration=0, redraw=True))])
                             for f in range(len(frames))])])
    return fig


def probability_figure(result):
    import plotly.graph_objects as go

    counts = result.model_info.get("trained_on", {}).get("sequences_per_label", {})
    ranked = result.ranked()
    names = [f"{n} ({counts[n]} seq.)" if n in counts else n for n, _ in ranked]
    fig = go.Figure(go.Bar(x=[p for _, p in ranked][::-1], y=names[::-1], orientation="h",
                           marker_color=["#2ca02c" if i == len(ranked) - 1 else "#9aa" for i in range(len(ranked))],
                           text=[f"{p:.0%}" for _, p in ranked][::-1], textposition="auto"))
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=36, b=10), xaxis=dict(range=[0, 1], title="probability"),
                      title=dict(text="action probabilities (training sequences per label in brackets)", font=dict(size=12)))
    return fig


def run(path: str | None, seed: float):
    """(3-D figure, probability figure, info markdown, downloads, pose gallery, JSON report) for a file."""
    import gradio as gr

    from maskworks.core.io import InputError

    if not path:
        raise gr.Error("Upload a skeleton file or a short video, or pick a shipped example.")
    name = Path(path).name
    from maskworks.domains.skeleton.actions import VIDEO_SUFFIXES

    video = Path(path).suffix.lower() in VIDEO_SUFFIXES
    try:
        result = recognizer().predict_file(path, seed=int(seed), **({"max_frames": VIDEO_MAX_FRAMES} if video else {}))
    except InputError as e:
        raise gr.Error(e.short()) from None
    out = Path(tempfile.mkdtemp(prefix="maskworks-skeleton-"))
    stem = Path(name).stem or "skeleton"
    files = result.write(out / stem)
    report = result.to_json()
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    inp = result.input_info
    info = (f"**{name}**: {inp['frames']} frames at {inp['fps'] or 30:g} fps, {inp['persons']} person(s), "
            f"{inp['layout']} joints → **{result.label}** ({result.confidence:.0%}), from {inp['windows']} windows of "
            f"{recognizer().frames} frames.")
    r = result.reconstruction
    if r is not None:
        info += (f"\n\nSkeletonMAE with the **{' and '.join(p.replace('_', ' ') for p in r.masked_parts)}** hidden "
                 f"(frames {r.start}–{r.start + len(r.truth) - 1}): rebuilt to **{r.error_cm:.1f} cm** mean joint error "
                 f"(the mean training pose: {r.baseline_cm:.1f} cm). The model predicts bone directions (scaled cosine "
                 "error); they are drawn at the bones' true lengths.")
    if result.pose is not None:
        pj = result.pose.to_json()
        info += (f"\n\nPose: MediaPipe found a person in {pj['frames_with_person']} of {pj['frames']} frames "
                 f"({pj['pose_frames_per_second']:.1f} frames/s on this machine).")
    info += "".join(f"\n\n⚠ {n}" for n in result.notes)
    info += ("\n\nThe shipped model learned 10 coarse labels from 57 CMU mocap sequences of 6 people: a tiny demo "
             "set; see the README's skeleton section for what it scores on sequences it never saw.")
    gallery = [(img, f"frame {i}") for i, img in result.pose.overlays] if result.pose is not None else []
    title = f"{name}: window with the {', '.join(r.masked_parts)} hidden" if r is not None else name
    fig3d = skeleton_figure(r, title) if r is not None else None
    return (fig3d, probability_figure(result), info, [str(f) for f in files] + [str(out / f"{stem}.json")],
            gr.update(value=gallery, visible=bool(gallery)), report)


def build_tab() -> None:
    import gradio as gr

    gr.Markdown("SkeletonMAE (a GIN over the NTU-25 bones, pre-trained by hiding whole body parts) + STRL, trained "
                "on CMU motion capture: upload a skeleton file or a short video (pose estimated on the fly with "
                "MediaPipe, offline) or pick a shipped sequence the model never saw.")
    ex = examples()
    path = gr.State(None)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="skeleton (.pkl, .skeleton, .npy, .npz, .bvh) or video (.mp4, .avi, ...)",
                             type="filepath", file_types=UPLOAD_TYPES, elem_id="skeleton-upload")
            example = gr.Dropdown(list(ex), value=next(iter(ex), None), label="or a shipped CMU sequence",
                                  elem_id="skeleton-example")
            go_btn = gr.Button("Recognise example", variant="primary", elem_id="skeleton-example-go")
            seed = gr.Number(value=0, precision=0, label="seed of the hidden body parts", elem_id="skeleton-seed")
            info = gr.Markdown(elem_id="skeleton-info")
            probs = gr.Plot(label="action probabilities", elem_id="skeleton-probs")
            files = gr.File(label="downloads: JSON, joints (.npy), summary (.png), pose (.npz)", file_count="multiple",
                            elem_id="skeleton-downloads")
        with gr.Column(scale=2):
            plot = gr.Plot(label="3-D skeleton, one window (drag to rotate, ▶ to play)", elem_id="skeleton-plot")
            gallery = gr.Gallery(label="pose over the video's frames", columns=3, height=300, visible=False,
                                 elem_id="skeleton-pose")
    report = gr.JSON(visible=False)
    outputs = [plot, probs, info, files, gallery, report]

    def from_example(name):
        if name not in ex:
            raise gr.Error("No shipped sequences found (data/skeleton/cmu).")
        return str(ex[name])

    def clear():
        return None, None, "", None, gr.update(value=[], visible=False), None

    go_btn.click(from_example, example, path).then(clear, None, outputs).then(run, [path, seed], outputs,
                                                                             api_name="skeleton_actions")
    upload.upload(lambda f: f, upload, path).then(clear, None, outputs).then(run, [path, seed], outputs)
    seed.submit(run, [path, seed], outputs)


def api(path: str, options: dict | None = None) -> dict:
    """``/predict_skeleton_actions``: ``{"seed": int, "index": int, "max_frames": int}`` -> the action report
    (the JSON of ``maskworks predict skeleton/actions``), with the model the tab has loaded."""
    from maskworks.apps.api import _opts
    from maskworks.domains.skeleton.actions import VIDEO_SUFFIXES

    o = _opts(options, {"seed": int, "index": int, "max_frames": int})
    video = Path(path).suffix.lower() in VIDEO_SUFFIXES
    extra = {"max_frames": o.get("max_frames", VIDEO_MAX_FRAMES)} if video else {}
    return recognizer().predict_file(path, seed=o.get("seed", 0), index=o.get("index", 0), **extra).to_json()


def launch(host: str = "127.0.0.1", port: int = 7863, block: bool = True):
    """This tab on its own (binds 127.0.0.1, caps uploads at 25 MB, one model call at a time)."""
    from maskworks.apps.demo import launch_tab

    return launch_tab("Skeleton actions", build_tab, host, port, "25mb", block)


if __name__ == "__main__":
    launch()
