"""The action job: a skeleton file (or a short video, pose extracted) -> action probabilities, and what
SkeletonMAE makes of the skeleton with body parts hidden. The tab, ``maskworks predict skeleton/actions``
and Python users all call :class:`ActionRecognizer`.

The shipped models were trained by us on CMU motion capture (57 sequences of 6 subjects, 10 coarse
labels; four more sequences held out as the examples): a tiny set. Results carry notes when the
input is of another kind (pose estimated from video, joints missing in the layout) or when
SkeletonMAE rebuilds its hidden parts worse than it did for 95 % of its training windows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from maskworks.core.device import default_device
from maskworks.core.io import InputError, resolve_shipped

from .data import Prepared, features_to_joints, prepare, window
from .io import SUFFIXES, read_skeleton
from .layouts import NTU25
from .sequence import Skeleton, window_starts

WEIGHTS = "shipped:skeleton/weights/skeleton-actions.safetensors"
MAE_WEIGHTS = "shipped:skeleton/weights/skeleton-mae.safetensors"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
INPUT_SUFFIXES = SUFFIXES + VIDEO_SUFFIXES


@dataclass
class Reconstruction:
    """One window with ``masked_parts`` hidden: true and rebuilt joints ``[T, 25, 3]`` in metres, the
    window's first frame putting the pelvis at the origin and the subject facing +z (y up)."""

    start: int
    truth: np.ndarray
    recon: np.ndarray
    baseline: np.ndarray  # the hidden joints' mean training feature (the mean pose), drawn the same way
    masked_parts: list[str]
    masked_joints: list[int]
    sce: float
    error_cm: float
    baseline_cm: float

    def to_json(self) -> dict:
        return {"window_start_frame": self.start, "masked_parts": self.masked_parts, "masked_sce": round(self.sce, 4),
                "error_cm": round(self.error_cm, 2), "mean_pose_baseline_cm": round(self.baseline_cm, 2)}


@dataclass
class ActionResult:
    source: str
    label_names: list[str]
    probabilities: np.ndarray   # [C]: softmax of the windows' mean log-probabilities
    window_starts: list[int]    # frames at 30 fps
    window_probs: np.ndarray    # [W, C]
    skeleton: Prepared          # what the model saw (NTU-25, 30 fps, torso units; x scale = metres)
    input_info: dict
    reconstruction: Reconstruction | None
    notes: list[str] = field(default_factory=list)
    model_info: dict = field(default_factory=dict)
    pose: object | None = None  # a pose.PoseResult for videos

    @property
    def label(self) -> str:
        return self.label_names[int(self.probabilities.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())

    def ranked(self) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities)
        return [(self.label_names[i], float(self.probabilities[i])) for i in order]

    def to_json(self) -> dict:
        out = {
            "file": Path(self.source).name,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "probabilities": {n: round(p, 4) for n, p in self.ranked()},
            "windows": [{"start_frame": s, "label": self.label_names[int(p.argmax())], "confidence": round(float(p.max()), 4)}
                        for s, p in zip(self.window_starts, self.window_probs)],
            "sequence": self.input_info,  # not "input": the batch driver records the input path there
            "reconstruction": self.reconstruction.to_json() if self.reconstruction else None,
            "notes": self.notes,
            "model": self.model_info,
        }
        if self.pose is not None:
            out["pose"] = self.pose.to_json()
        return out

    def write(self, base: Path) -> list[Path]:
        """``base.joints.npy`` (the NTU-25 joints the model saw, metres) and ``base.png`` (probabilities and
        the reconstruction); for a video also ``base.pose.npz`` (landmarks and scores per frame)."""
        base = Path(base)
        base.parent.mkdir(parents=True, exist_ok=True)
        paths = [base.with_name(base.name + ".joints.npy"), base.with_name(base.name + ".png")]
        np.save(paths[0], (self.skeleton.joints * self.skeleton.scale).astype(np.float32))
        summary_figure(self, paths[1])
        if self.pose is not None:
            paths.append(self.pose.save(base.with_name(base.name + ".pose.npz")))
        return paths


class ActionRecognizer:
    """STRL classifier (+ SkeletonMAE for the reconstruction view), shipped weights by default."""

    def __init__(self, strl, label_names: list[str], frames: int, frames_per_node: int, mae=None,
                 info: dict | None = None, device: str | torch.device = "cpu") -> None:
        self.strl, self.mae = strl.eval(), (mae.eval() if mae is not None else None)
        self.label_names, self.frames, self.fpn = label_names, frames, frames_per_node
        self.info = info or {}
        self.device = torch.device(device)

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str | torch.device | None = None,
             mae_weights: str | Path | None = None) -> "ActionRecognizer":
        """STRL weights (``maskworks train skeleton/strl``; shipped by default) and, for the reconstruction
        view, SkeletonMAE weights (shipped by default with shipped STRL weights; otherwise optional)."""
        from maskworks.core.training.checkpoint import weights_metadata
        from maskworks.core.training.task import load_trained

        device = default_device(device)
        path = resolve_shipped(weights or WEIGHTS)
        if path.is_dir():
            path = path / "model.safetensors"
        meta = weights_metadata(path) if path.is_file() else {}
        if meta.get("task", "").split(":")[-1] != "STRLTask":
            raise InputError(path, "not STRL weights", "give the model.safetensors of a `maskworks train skeleton/strl` run")
        _, strl = load_trained(path, device)
        mae = None
        mae_path = mae_weights or (MAE_WEIGHTS if weights is None else None)
        if mae_path:
            _, mae = load_trained(resolve_shipped(mae_path), device)
        record = path.with_suffix(".json")
        info = json.loads(record.read_text()) if record.is_file() else {}
        d = meta.get("data", {})
        return cls(strl, list(meta["label_names"]), int(d.get("frames", 32)), int(meta["model"].get("frames_per_node", 4)),
                   mae, info, device)

    # ------------------------------------------------------------------------------------------ predict

    def predict_file(self, path: str | Path, seed: int = 0, index: int = 0, stride: int = 8, **pose_options) -> ActionResult:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            from .pose import extract_pose

            pose = extract_pose(path, **pose_options)
            whole, n = int(pose.body_in_view.sum()), len(pose.detected)
            if whole < 0.5 * n:
                raise InputError(path, f"a whole body (arms and legs) is in view in only {whole} of {n} frames; the "
                                 "action model needs the full skeleton, not guessed legs",
                                 "give a video in which one person is seen head to foot")
            result = self.predict(pose.skeleton(), seed=seed, stride=stride, source=str(path))
            result.pose = pose
            result.notes.append("pose estimated from video by MediaPipe (3-D world landmarks): the model was trained on "
                                "motion capture, so treat its probabilities as less reliable here")
            return result
        if suffix not in SUFFIXES:
            raise InputError(path, f"unsupported extension {suffix or '(none)'!r}",
                             f"give a skeleton file ({', '.join(SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})")
        return self.predict(read_skeleton(path, index=index), seed=seed, stride=stride, source=str(path))

    @torch.no_grad()
    def predict(self, skel: Skeleton, seed: int = 0, stride: int = 8, source: str | None = None) -> ActionResult:
        prep = prepare(skel)
        t = prep.joints.shape[1]
        starts = window_starts(t, self.frames, stride)
        x = torch.from_numpy(np.stack([window(prep, s, self.frames, self.fpn) for s in starts])).to(self.device)
        valid = torch.from_numpy(np.broadcast_to(prep.valid, (len(starts), len(prep.valid))).copy()).to(self.device)
        logp = torch.log_softmax(self.strl(x, valid).float(), dim=1).cpu().numpy()
        probs = np.exp(logp)
        mean = logp.mean(0)
        seq = np.exp(mean - mean.max())
        seq /= seq.sum()
        notes = list(prep.notes)
        if t < self.frames:
            notes.append(f"{t} frames at 30 fps, shorter than the model's {self.frames}-frame window: the last frame is "
                         "held to fill it")
        info = {"frames": skel.num_frames, "fps": skel.fps, "persons": skel.num_persons, "layout": skel.layout.name,
                "frames_at_30fps": t, "windows": len(starts), "torso_m": round(prep.scale, 4)}
        recon = self.reconstruct(prep, x, starts, seed) if self.mae is not None else None
        if recon is not None:
            info["reconstruction_sce_all_part_pairs"] = round(self.typicality(x), 4)
            limit = self.info.get("typical_sce_p95")
            if limit and info["reconstruction_sce_all_part_pairs"] > limit:
                notes.append(f"SkeletonMAE rebuilds this motion's hidden parts worse (SCE "
                             f"{info['reconstruction_sce_all_part_pairs']:.3f}) than it did for 95 % of its training "
                             f"sequences ({limit:.3f}): the motion is unlike the training data, the probabilities say little")
        return ActionResult(source or skel.source, self.label_names, seq, starts, probs, prep, info, recon, notes,
                            self.model_info())

    @torch.no_grad()
    def typicality(self, x: torch.Tensor) -> float:
        """Masked SCE averaged over the windows and every pair of hidden body parts (seed-free): how well
        SkeletonMAE knows this kind of motion (compared with the training sequences' 95th percentile)."""
        from .skeleton_mae import reconstruction_errors

        return reconstruction_errors(self.mae, x[:, 0])["sce"]

    def reconstruct(self, prep: Prepared, x: torch.Tensor, starts: list[int], seed: int) -> Reconstruction:
        """SkeletonMAE on every window with the same seeded body-part mask; shows the middle window.

        SCE fixes only the direction of each hidden node's feature (a bone over a few frames), not its
        length: hidden bones are drawn in the predicted direction at their true length (a bone keeps its
        length) and chained onto the visible skeleton. The baseline is drawn the same way from each joint's
        mean training feature (the mean pose)."""
        from .skeleton_mae import drawn_joints

        mae = self.mae
        xs = x[:, 0]  # first person [W, S, V, F]
        g = torch.Generator().manual_seed(seed)
        mask = mae.draw_mask(1, xs.shape[1], g).expand(len(xs), -1, -1)
        out = mae(xs, mask)
        k = len(starts) // 2
        truth, m = xs[k:k + 1], mask[k:k + 1]
        rebuilt = drawn_joints(truth, m, out.recon[k:k + 1], self.fpn)[0].cpu().numpy() * prep.scale
        base = drawn_joints(truth, m, mae.feature_mean.expand_as(truth), self.fpn)[0].cpu().numpy() * prep.scale
        true_j = features_to_joints(truth, self.fpn)[0].cpu().numpy() * prep.scale
        joints = torch.nonzero(mask[0, 0]).flatten().tolist()
        parts = [name for name, js in NTU25.parts.items() if all(j in joints for j in js)]
        err = float(np.linalg.norm(rebuilt[:, joints] - true_j[:, joints], axis=-1).mean() * 100)
        base_err = float(np.linalg.norm(base[:, joints] - true_j[:, joints], axis=-1).mean() * 100)
        return Reconstruction(starts[k], true_j, rebuilt, base, parts, joints, float(out.loss), err, base_err)

    def model_info(self) -> dict:
        keep = ("trained_on", "held_out", "steps", "test", "note")
        return {"labels": self.label_names, **{k: self.info[k] for k in keep if k in self.info}}


def summary_figure(result: ActionResult, path: Path) -> Path:
    """Probabilities (bar chart) beside the reconstructed window (side view, hidden parts in red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1.2, 1]})
    names, probs = zip(*result.ranked())
    axes[0].barh(range(len(names))[::-1], probs, color=["tab:green"] + ["tab:gray"] * (len(names) - 1))
    axes[0].set_yticks(range(len(names))[::-1], names, fontsize=8)
    axes[0].set_xlim(0, 1)
    axes[0].set_title(f"{Path(result.source).name}: {result.label} ({result.confidence:.0%})\n"
                      "model trained on 57 CMU mocap sequences (tiny)", fontsize=9)
    ax = axes[1]
    r = result.reconstruction
    if r is not None:
        f = len(r.truth) // 2
        for a, b in NTU25.bones:
            hidden = a in r.masked_joints or b in r.masked_joints
            ax.plot(r.truth[f, [a, b], 0], r.truth[f, [a, b], 1], color="tab:red" if hidden else "tab:blue", lw=2,
                    alpha=0.5 if hidden else 1)
            if hidden:
                ax.plot(r.recon[f, [a, b], 0], r.recon[f, [a, b], 1], color="tab:green", lw=2, ls="--")
        ax.set_title(f"hidden: {', '.join(r.masked_parts)} (red); SkeletonMAE (green dashed)\n"
                     f"error {r.error_cm:.1f} cm (mean pose: {r.baseline_cm:.1f} cm)", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y up (m)")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
