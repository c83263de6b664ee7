"""The emotion study on any labelled folder: unweighted and weighted average recall (UAR, WAR) of a
pre-trained HiCMAE against the same network randomly initialised, for audio + video and for each
modality alone, under speaker-held-out splits where the folder allows them.

Protocol (``mode="probe"``, the default, CPU-sized): the backbone is frozen; every 2.56 s window of
every recording is encoded once; for each fold a fresh HiCMAE fine-tuning head (softmax-weighted
layer sums, fusion features, LayerNorm, linear) is trained on the training windows; a recording's
prediction is the mean of its windows' probabilities. UAR is the mean over classes of each class's
recall, WAR the share of recordings right, both over the pooled test predictions of all folds
(as the paper reports them). Baselines in the same folds: the training folds' majority class, and
random initialisation (several seeds). ``mode="finetune"`` trains the whole network per fold (the
paper's protocol; slow on a CPU).

Splits: ``actor`` holds out one speaker per fold (needs two or more speakers with labels); ``clip``
holds out one recording per fold (*not* speaker-independent: the same speaker is in training).
Classes with fewer than ``min_per_class`` recordings are left out (they cannot be both learnt and
tested) and listed in the result. Everything is stated with its counts: on the shipped 15 RAVDESS
clips this is a check that the pipeline runs and a measure of noise, not of emotion recognition.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from maskworks.core.io import InputError
from maskworks.domains.audiovisual.data import AVEntry, AVWindows, class_order, read_av_folder
from maskworks.domains.audiovisual.features import normalize_video
from maskworks.domains.audiovisual.hicmae import EmotionHead, HiCMAEClassifier, PooledFeatures

ARMS = ("audio+video", "audio", "video")


@dataclass
class WindowFeatures:
    """Pooled features of every window of a set, with which modalities each window has."""

    feats: PooledFeatures
    has_video: torch.Tensor  # [N] bool
    has_audio: torch.Tensor
    entry: torch.Tensor  # [N] which recording


@torch.no_grad()
def window_features(model: HiCMAEClassifier, ds: AVWindows, device: torch.device, batch: int = 4,
                    progress: Callable[[int, int], None] | None = None) -> WindowFeatures:
    """Encode every window once (frozen backbone): per-layer pooled features of each modality it has,
    and the fusion features where it has both (zeros elsewhere, never read)."""
    model.eval()
    parts: list[PooledFeatures] = []
    hv_all, ha_all, ent = [], [], []
    for lo in range(0, len(ds), batch):
        items = [ds[i] for i in range(lo, min(lo + batch, len(ds)))]
        video = torch.stack([it["video"] for it in items]).to(device)
        audio = torch.stack([it["audio"] for it in items]).to(device)
        hv = torch.stack([it["has_video"] for it in items])
        ha = torch.stack([it["has_audio"] for it in items])
        f = model.pooled_features(normalize_video(video) if bool(hv.any()) else None, audio if bool(ha.any()) else None)
        parts.append(f)
        hv_all.append(hv), ha_all.append(ha), ent.extend(int(it["entry"]) for it in items)
        if progress:
            progress(min(lo + batch, len(ds)), len(ds))
    b = model.backbone
    dims = {"video_layers": (len(b.video.blocks), b.video.norm.normalized_shape[0]),
            "audio_layers": (len(b.audio.blocks), b.audio.norm.normalized_shape[0]),
            "fused_video": (b.video.norm.normalized_shape[0],), "fused_audio": (b.audio.norm.normalized_shape[0],)}

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(p, name).cpu() if getattr(p, name) is not None else
                          torch.zeros(n, *dims[name]) for p, n in zip(parts, [len(h) for h in hv_all])])

    feats = PooledFeatures(cat("video_layers"), cat("audio_layers"), cat("fused_video"), cat("fused_audio"))
    return WindowFeatures(feats, torch.cat(hv_all), torch.cat(ha_all), torch.tensor(ent))


def _logits(head: EmotionHead, f: PooledFeatures, arm: str) -> torch.Tensor:
    if arm == "audio":
        return head.forward_audio(f)
    if arm == "video":
        return head.forward_video(f)
    return head.head(head.joint_input(f))


def arm_windows(wf: WindowFeatures, arm: str) -> torch.Tensor:
    """Windows an arm can use: ``audio`` those with sound, ``video`` those with a face, ``audio+video``
    all (each answered by the joint head when it has both, else by its own modality's head)."""
    if arm == "audio":
        return wf.has_audio
    if arm == "video":
        return wf.has_video
    return wf.has_audio | wf.has_video


def train_head(wf: WindowFeatures, labels: torch.Tensor, idx: torch.Tensor, arm: str, num_classes: int,
               dims: tuple[int, int, int, int], steps: int = 200, lr: float = 3e-3, weight_decay: float = 0.05,
               seed: int = 0) -> EmotionHead:
    """A fresh head fitted on windows ``idx`` (full batch, AdamW, label smoothing 0.1). The ``audio+video``
    arm trains the joint head on windows with both modalities and each single-modality head on the
    windows with that modality, as the fine-tuning recipe does."""
    torch.manual_seed(seed)
    vd, ad, lv, la = dims
    head = EmotionHead(num_classes, vd, ad, lv, la)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    f = wf.feats.select(idx)
    y = labels[idx]
    hv, ha = wf.has_video[idx], wf.has_audio[idx]
    groups = [("audio", ha), ("video", hv), ("audio+video", hv & ha)] if arm == "audio+video" else \
        [(arm, ha if arm == "audio" else hv)]
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(F.cross_entropy(_logits(head, f.select(sel), a), y[sel], label_smoothing=0.1)
                   for a, sel in groups if bool(sel.any()))
        loss.backward()
        opt.step()
    return head.eval()


@torch.no_grad()
def predict_head(head: EmotionHead, wf: WindowFeatures, idx: torch.Tensor, arm: str) -> torch.Tensor:
    """Window probabilities ``[len(idx), C]``: routed by modality for ``audio+video``."""
    f = wf.feats.select(idx)
    if arm != "audio+video":
        return torch.softmax(_logits(head, f, arm), dim=-1)
    return torch.softmax(head(f, wf.has_video[idx], wf.has_audio[idx]).logits, dim=-1)


def recall_scores(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """UAR (mean of per-class recall over classes present in ``y_true``), WAR (accuracy), per-class recall."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per = {classes[c]: float((y_pred[y_true == c] == c).mean()) for c in sorted(set(y_true.tolist()))}
    return {"uar": float(np.mean(list(per.values()))) if per else float("nan"),
            "war": float((y_true == y_pred).mean()) if len(y_true) else float("nan"), "recall": per, "n": int(len(y_true))}


def folds(entries: Sequence[AVEntry], split: str) -> list[tuple[str, list[int], list[int]]]:
    """``(name, train entries, test entries)`` per fold."""
    n = len(entries)
    if split == "clip":
        return [(entries[i].name, [j for j in range(n) if j != i], [i]) for i in range(n)]
    actors = sorted({e.actor for e in entries})
    return [(f"actor {a}", [j for j in range(n) if entries[j].actor != a], [j for j in range(n) if entries[j].actor == a])
            for a in actors]


@dataclass
class StudySet:
    ds: AVWindows
    labels: np.ndarray  # per entry, class index
    classes: list[str]
    dropped: dict[str, int]  # classes left out: recordings each


def study_set(root: str, split: str | None, windows: int, min_per_class: int = 2, face_crop: str = "none") -> StudySet:
    """The labelled recordings of ``root`` whose class has at least ``min_per_class`` recordings."""
    entries = [e for e in read_av_folder(root, split) if e.label]
    if not entries:
        raise InputError(root, "has no labelled recordings", "fill the emotion column of labels.csv")
    counts = Counter(e.label for e in entries)
    keep = {c for c, n in counts.items() if n >= min_per_class}
    dropped = {c: n for c, n in counts.items() if c not in keep}
    entries = [e for e in entries if e.label in keep]
    if len(keep) < 2:
        raise InputError(root, f"has fewer than 2 emotions with {min_per_class}+ recordings ({dict(counts)})",
                         "add recordings, or lower --min-per-class")
    classes = class_order([e.label for e in entries])
    ds = AVWindows(root, windows=windows, classes=classes, face_crop=face_crop, entries=entries)
    labels = np.array([classes.index(e.label) for e in ds.entries])
    return StudySet(ds, labels, classes, dropped)


def split_plan(entries: Sequence[AVEntry], requested: str) -> dict[str, str]:
    """Which splits run, and why the others do not."""
    actors = {e.actor for e in entries if e.actor}
    plan = {}
    if requested in ("auto", "actor", "both"):
        if len(actors) >= 2 and all(e.actor for e in entries):
            plan["actor"] = f"leave one actor out ({len(actors)} folds)"
        else:
            plan["actor_not_possible"] = (f"only {len(actors)} actor{'s' if len(actors) != 1 else ''} with labelled "
                                          "recordings of the kept classes" if all(e.actor for e in entries) else
                                          "labels.csv has no actor for some rows")
    if requested in ("clip", "both") or (requested == "auto" and "actor" not in plan):
        plan["clip"] = f"leave one recording out ({len(entries)} folds; the same actors are in training: not speaker-independent)"
    return plan


def run_arms(wf: WindowFeatures, st: StudySet, split: str, arms: Sequence[str], dims, steps: int, seed: int) -> dict:
    """UAR/WAR of each arm (and the majority baseline) over the folds of ``split``."""
    entries = st.ds.entries
    ent = wf.entry.numpy()
    y_win = torch.as_tensor(st.labels[ent])
    out: dict[str, dict] = {}
    fold_list = folds(entries, split)
    usable = [(n, tr, te) for n, tr, te in fold_list if len(set(st.labels[tr].tolist())) >= 2]
    skipped = [n for n, tr, te in fold_list if len(set(st.labels[tr].tolist())) < 2]
    for arm in arms:
        ok = arm_windows(wf, arm).numpy()
        y_true, y_pred, per_fold = [], [], []
        for name, tr, te in usable:
            tr_idx = torch.as_tensor(np.nonzero(np.isin(ent, tr) & ok)[0])
            te_entries = [k for k in te if ok[ent == k].any()]
            if len(tr_idx) == 0 or not te_entries or len(set(st.labels[np.unique(ent[tr_idx.numpy()])].tolist())) < 2:
                continue
            head = train_head(wf, y_win, tr_idx, arm, len(st.classes), dims, steps=steps, seed=seed)
            fold_true, fold_pred = [], []
            for k in te_entries:
                idx = torch.as_tensor(np.nonzero((ent == k) & ok)[0])
                p = predict_head(head, wf, idx, arm).mean(dim=0)
                fold_true.append(int(st.labels[k])), fold_pred.append(int(p.argmax()))
            y_true += fold_true
            y_pred += fold_pred
            per_fold.append({"fold": name, "test": len(fold_true), "correct": int(np.sum(np.array(fold_true) == np.array(fold_pred)))})
        out[arm] = recall_scores(y_true, y_pred, st.classes) | {"folds": per_fold}
    # majority class of each training fold
    y_true, y_pred = [], []
    for name, tr, te in usable:
        maj = Counter(st.labels[tr].tolist()).most_common(1)[0][0]
        y_true += st.labels[te].tolist()
        y_pred += [maj] * len(te)
    out["majority"] = recall_scores(y_true, y_pred, st.classes)
    out["skipped_folds"] = skipped
    return out


def study(pretrained: HiCMAEClassifier, build_random: Callable[[int], HiCMAEClassifier], st: StudySet,
          device: torch.device, split: str = "auto", random_seeds: int = 3, steps: int = 200,
          arms: Sequence[str] = ARMS, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """The whole study: pre-trained vs random init, per arm, per possible split (see the module doc)."""
    entries = st.ds.entries
    plan = split_plan(entries, split)
    b = pretrained.backbone
    dims = (b.video.norm.normalized_shape[0], b.audio.norm.normalized_shape[0], len(b.video.blocks), len(b.audio.blocks))
    have_v, have_a = any(r.frames is not None for r in st.ds.recordings), any(r.fbank is not None for r in st.ds.recordings)
    arms = [a for a in arms if (a != "video" or have_v) and (a != "audio" or have_a) and (a != "audio+video" or (have_v and have_a))]
    if not have_v and not have_a:
        raise InputError("study", "no recording has a face or sound", "check the files")

    def prog(tag):
        return (lambda i, n: progress(tag, i, n)) if progress else None

    inits = {"pretrained": window_features(pretrained, st.ds, device, progress=prog("pretrained"))}
    for s in range(random_seeds):
        inits[f"random_{s}"] = window_features(build_random(s), st.ds, device, progress=prog(f"random init {s}"))
    results: dict = {}
    for sp in [k for k in plan if k in ("actor", "clip")]:
        res = {"pretrained": run_arms(inits["pretrained"], st, sp, arms, dims, steps, 0)}
        rand = [run_arms(inits[f"random_{s}"], st, sp, arms, dims, steps, s) for s in range(random_seeds)]
        if rand:
            res["random_init"] = {a: {"uar": float(np.mean([r[a]["uar"] for r in rand])),
                                      "war": float(np.mean([r[a]["war"] for r in rand])),
                                      "uar_min_max": [float(min(r[a]["uar"] for r in rand)), float(max(r[a]["uar"] for r in rand))],
                                      "war_min_max": [float(min(r[a]["war"] for r in rand)), float(max(r[a]["war"] for r in rand))],
                                      "n": rand[0][a]["n"]} for a in arms}
        res["majority"] = res["pretrained"].pop("majority")
        res["skipped_folds"] = res["pretrained"].pop("skipped_folds")
        results[sp] = res
    counts = Counter(e.label for e in entries)
    return {"data": {"recordings": len(entries), "actors": sorted({e.actor for e in entries if e.actor}),
                     "with_face": int(sum(r.frames is not None for r in st.ds.recordings)),
                     "with_sound": int(sum(r.fbank is not None for r in st.ds.recordings)),
                     "class_counts": {c: counts[c] for c in st.classes}, "classes_left_out": st.dropped,
                     "windows_per_recording": st.ds.windows, "skipped_unusable": st.ds.skipped},
            "splits": plan, "arms": list(arms), "random_seeds": random_seeds, "head_steps": steps,
            "results": results}


def fmt_table(res: dict) -> str:
    """The study as a plain-text table (what the CLI prints and the README quotes)."""
    d = res["data"]
    lines = [f"{d['recordings']} recordings, {len(d['actors'])} actor(s) {d['actors']}, classes {d['class_counts']}"
             + (f"; left out (too few recordings): {d['classes_left_out']}" if d["classes_left_out"] else ""),
             f"windows per recording: {d['windows_per_recording']}; with a face: {d['with_face']}, with sound: {d['with_sound']}"]
    for k, v in res["splits"].items():
        lines.append(f"{k}: {v}")
    for sp, r in res["results"].items():
        lines.append(f"\n[{sp} split]  {'arm':<12} {'UAR':>6} {'WAR':>6}   (n = test recordings)")
        for arm in res["arms"]:
            p = r["pretrained"][arm]
            lines.append(f"  pre-trained  {arm:<12} {p['uar']:6.3f} {p['war']:6.3f}   n={p['n']}")
            if "random_init" in r:
                q = r["random_init"][arm]
                lines.append(f"  random init  {arm:<12} {q['uar']:6.3f} {q['war']:6.3f}   "
                             f"(mean of {res['random_seeds']} seeds; UAR {q['uar_min_max'][0]:.3f}-{q['uar_min_max'][1]:.3f})")
        m = r["majority"]
        lines.append(f"  majority class            {m['uar']:6.3f} {m['war']:6.3f}   n={m['n']}  (of each training fold; "
                     "leave-one-out makes it lose on balanced sets)")
        k = len(res["data"]["class_counts"])
        lines.append(f"  chance                    {1 / k:6.3f}          ({k} classes)")
        if r["skipped_folds"]:
            lines.append(f"  folds skipped (one class in training): {r['skipped_folds']}")
    return "\n".join(lines)


def _nan_to_none(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def jsonable(res: dict) -> dict:
    return _nan_to_none(res)
