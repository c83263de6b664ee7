"""``maskworks eval medical/label-fractions``: how much do SparK / contrastive pre-training help
when only a fraction of the labels is available?

Protocol (after Wolf et al. 2023, "Self-supervised pre-training with contrastive and masked
autoencoder methods for dealing with small datasets in deep learning for medical imaging"):

1. pre-train SparK, MoCo v2 and SimCLR (the protocol's recipes, e.g. ``medical/spark-ct28``) on the
   folder's *training* images, labels unused, all with the same backbone, batch and number of
   steps (= images seen); or load given backbones. A fourth backbone stays randomly initialised;
2. for each fraction and seed, draw a class-stratified subset of the training labels (nested
   across fractions for one seed; the same subset for every method) and train a classifier on the
   backbone: first with the encoder frozen (linear head on cached features, Adam) = the **linear
   probe**, then the whole network unfrozen (Adam, lr 1e-4, crops; flips only where the protocol
   allows them) = **fine-tuning**. BatchNorm statistics of every backbone are re-estimated once on
   the training images and kept frozen while fine-tuning;
3. report accuracy, macro ROC-AUC and balanced accuracy on the evaluation split (the folder's
   val/valid/test split, or a stratified 20 % hold-out when ``labels.csv`` has no split column),
   never trained on, as mean ± std and a 95 % t-interval over seeds, after each stage.

Resumable: every finished piece is on disk in ``out`` (pre-training checkpoints, the recalibrated
backbones and their cached features, one JSON per fine-tuning run), and a restarted study skips
what is there; ``study.json`` pins the settings, so a restart with different ones is refused.

Outputs in ``out``: ``results.md`` (tables), ``results.json``, ``metrics_vs_fraction.png``,
``auc_vs_fraction.png`` and ``pretrain_loss.png``; refreshed after every run, so a study
stopped half way still has its partial tables.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from maskworks.domains.medical.imaging.datasets import (
    LabelledSplit,
    standardize,
    stratified_subset,
)
from maskworks.domains.medical.spark.pretrain import (
    BACKBONE_FILE,
    random_flip,
    random_resized_crop,
)
from maskworks.domains.medical.spark.spark import load_backbone, timm_backbone
from torch import Tensor, nn

METHODS = ("spark", "moco", "simclr", "random")
LABELS = {"spark": "SparK", "moco": "MoCo v2", "simclr": "SimCLR", "random": "random init"}
METRICS = {"accuracy": "accuracy", "auc": "macro ROC-AUC", "balanced_accuracy": "balanced accuracy"}
STAGES = {"probe": "frozen encoder (linear probe)", "finetune": "after fine-tuning (encoder unfrozen)"}


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a study's numbers, with a protocol's defaults (``PROTOCOLS``)."""

    name: str
    recipes: dict[str, str]                 # method -> recipe file in domains/medical/recipes
    methods: tuple[str, ...]
    fractions: tuple[float, ...]
    size: int                               # input px (a multiple of the backbone's stride)
    backbone: str
    pretrain_steps: int                     # the same for every method ...
    pretrain_batch: int                     # ... so each sees pretrain_steps x pretrain_batch images
    probe_epochs: int                       # frozen stage: epochs of the head on cached features,
    probe_min_steps: int                    # at least this many steps (small subsets)
    finetune_steps: int                     # unfrozen stage: the same number of steps for every subset
    lr: float                               # unfrozen stage, Adam
    batch: int
    flip: bool                              # horizontal flips while fine-tuning
    crop_scale: tuple[float, float]

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d["fractions"], d["methods"], d["crop_scale"] = list(self.fractions), list(self.methods), list(self.crop_scale)
        return d


PROTOCOLS = {
    # chest X-rays (the first study): timm resnet18 at 64 px, short pre-training, linear probes
    "cxr": Protocol("cxr", {"spark": "spark-cxr.yaml", "moco": "moco-cxr.yaml"}, ("spark", "moco", "random"),
                    (1.0, 0.5, 0.25, 0.1, 0.05), 64, "resnet18", 100, 32, 30, 0, 10, 1e-4, 32, True, (0.7, 1.0)),
    # 28 px CT slices (OrganAMNIST): ResNet-18 adapted to 28 px at quarter width, 32 px inputs,
    # 1,500 x 64 = 96,000 images seen per method, 150 fine-tuning steps x 32, no flips (left/right organs)
    "ct28": Protocol("ct28", {"spark": "spark-ct28.yaml", "moco": "moco-ct28.yaml", "simclr": "simclr-ct28.yaml"},
                     ("spark", "moco", "simclr", "random"), (1.0, 0.5, 0.25, 0.1, 0.05, 0.01), 32,
                     "resnet18_28px_w16", 1500, 64, 30, 500, 150, 1e-4, 32, False, (0.8, 1.0)),
}


# ------------------------------------------------------------------------------------ pre-training

def pretrain(method: str, data: Path, out: Path, proto: Protocol, holdout: float, train_split: str | None,
             eval_split: str | None = None, seed: int = 0, progress: bool = False) -> Path:
    """Run the method's recipe on ``data``'s training images via ``fit`` (resuming from its last
    checkpoint if a previous run was stopped); returns backbone.safetensors."""
    from maskworks.core.training import apply_overrides, fit, load_recipe

    run = out / "pretrain" / method
    if (run / BACKBONE_FILE).is_file():
        return run / BACKBONE_FILE
    recipe = Path(__file__).parents[1] / "recipes" / proto.recipes[method]
    cfg = load_recipe(recipe, overrides=[f"data.roots=[{json.dumps(str(data))}]"])
    steps = proto.pretrain_steps
    over: dict[str, Any] = {
        "data.size": proto.size, "data.holdout": holdout, "model.backbone": proto.backbone, "trainer.seed": seed,
        "trainer.max_steps": steps, "trainer.batch_size": proto.pretrain_batch,
        "trainer.warmup_steps": max(1, steps // 10), "trainer.log_every": max(1, min(10, steps)),
        "trainer.ckpt_every": max(1, min(100, steps)), "trainer.keep_checkpoints": 1,
        "trainer.accelerator": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if train_split:
        over["data.train_split"] = train_split
    if eval_split:
        over["data.eval_split"] = eval_split
    cfg = apply_overrides(cfg, over)
    t = time.time()
    summary = fit(cfg, run, resume=True, progress=progress)
    (run / "pretrain_time.json").write_text(json.dumps({
        "seconds_last_session": round(time.time() - t, 1), "final_loss": summary.get("final_loss"),
        "threads": torch.get_num_threads(), "device": cfg["trainer"]["accelerator"]}))
    return run / BACKBONE_FILE


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, training loss) of a pre-training run, joining the logs of resumed segments."""
    points: dict[int, float] = {}
    for f in sorted(Path(run_dir, "logs").rglob("metrics.csv")):
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss"):
                    points[int(row["step"])] = float(row["train/loss"])
    return sorted(points.items())


def flatness(curve: list[tuple[int, float]], window: float = 0.1) -> dict[str, float] | None:
    """How flat a loss curve ends: mean loss over the first, the 3/4 and the last ``window`` of
    the steps, and the share of the total drop made during the last quarter of training."""
    if len(curve) < 8:
        return None
    steps = np.array([s for s, _ in curve], dtype=float)
    loss = np.array([v for _, v in curve])
    end = steps[-1]

    def mean_around(lo: float, hi: float) -> float:
        sel = (steps > lo * end) & (steps <= hi * end)
        return float(loss[sel].mean()) if sel.any() else float("nan")

    first, q3, last = mean_around(0, window), mean_around(0.75 - window, 0.75), mean_around(1 - window, 1)
    total = first - last
    return {"loss_start": first, "loss_at_75pct": q3, "loss_end": last,
            "last_quarter_share_of_drop": (q3 - last) / total if total > 0 else float("nan")}


# -------------------------------------------------------------------------------------- fine-tuning

@torch.no_grad()
def features(encoder: nn.Module, images: Tensor, device: torch.device, batch: int = 256) -> Tensor:
    """Globally pooled features of standardised images, encoder in eval mode."""
    encoder.eval()
    out = [encoder(standardize(images[i:i + batch]).to(device)).mean(dim=(2, 3)).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out)


@torch.no_grad()
def recalibrate_bn(encoder: nn.Module, images: Tensor, device: torch.device, batch: int = 128) -> None:
    """Re-estimate BatchNorm running statistics on the folder's training images (cumulative average).

    A random-init backbone has never estimated them (0/1) and a pre-trained one estimated them on
    its pre-training inputs (SparK: visible pixels only), so every method gets the same recalibration
    before its features are used; fine-tuning then keeps them frozen (small label subsets make
    noisy batch statistics).
    """
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    for i in range(0, len(images), batch):
        encoder(standardize(images[i:i + batch]).to(device))
    for m in bns:
        m.momentum = 0.1
    encoder.eval()


def freeze_bn_stats(model: nn.Module) -> None:
    """BatchNorm layers to eval mode (use, do not update, the running statistics)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy (argmax), ROC-AUC (binary: positive = class 1; more classes: one-vs-rest macro over
    the classes present) and balanced accuracy (mean per-class recall)."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = probs.argmax(1)
    acc = float((pred == labels).mean())
    present = np.unique(labels)
    try:
        if probs.shape[1] == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        elif len(present) == probs.shape[1]:
            auc = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
        else:  # one-vs-rest for the classes the split holds
            auc = float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))
    except ValueError:  # one class only in the evaluation split
        auc = float("nan")
    return {"accuracy": acc, "auc": auc, "balanced_accuracy": float(balanced_accuracy_score(labels, pred))}


def train_head(head: nn.Linear, feats: Tensor, labels: Tensor, epochs: int, seed: int, lr: float = 1e-3,
               batch: int = 64, min_steps: int = 0) -> int:
    """Frozen-encoder stage: the linear head on cached (standardised) features; ``epochs`` passes,
    more if needed to reach ``min_steps`` updates. Returns the number of steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = math.ceil(len(feats) / batch)
    epochs = max(epochs, math.ceil(min_steps / per_epoch))
    for _ in range(epochs):
        order = torch.randperm(len(feats), generator=g)
        for i in range(0, len(feats), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(head(feats[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * per_epoch


class Classifier(nn.Module):
    """Backbone + (feature standardisation) + linear head; the standardisation keeps the head's
    frozen-stage learning rate meaningful whatever scale a pre-training left the features at."""

    def __init__(self, encoder: nn.Module, mean: Tensor, std: Tensor, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = nn.Linear(mean.numel(), n_classes)

    def pooled(self, x: Tensor) -> Tensor:
        return (self.encoder(x).mean(dim=(2, 3)) - self.mean) / self.std

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pooled(x))


def finetune_one(state: dict[str, Tensor], proto: Protocol, in_chans: int, cached_tr: Tensor, cached_ev: Tensor,
                 x_tr: Tensor, y_tr: Tensor, x_ev: Tensor, y_ev: Tensor, n_classes: int, seed: int,
                 device: torch.device) -> dict[str, Any]:
    """Frozen stage then unfrozen stage on one labelled subset; metrics after each."""
    t0 = time.time()
    torch.manual_seed(seed)
    enc = timm_backbone(proto.backbone, in_chans)
    enc.load_state_dict(state)
    mean = cached_tr.mean(0)
    std = cached_tr.std(0).clamp_min(1e-6) if len(cached_tr) > 1 else torch.ones(cached_tr.shape[1])
    model = Classifier(enc, mean, std, n_classes).to(device)
    probe_steps = train_head(model.head, ((cached_tr - mean) / std).to(device), y_tr.to(device), proto.probe_epochs,
                             seed, min_steps=proto.probe_min_steps)
    with torch.no_grad():
        p = F.softmax(model.head(((cached_ev - mean) / std).to(device)), dim=1).cpu().numpy()
    out: dict[str, Any] = {"probe": metrics(p, y_ev.numpy()), "probe_steps": probe_steps}
    if proto.finetune_steps > 0:
        g = torch.Generator().manual_seed(seed + 7919)
        opt = torch.optim.Adam(model.parameters(), lr=proto.lr)
        model.train()
        freeze_bn_stats(model)
        b = min(proto.batch, len(x_tr))
        for _ in range(proto.finetune_steps):
            idx = torch.randperm(len(x_tr), generator=g)[:b]
            x = random_resized_crop(x_tr[idx], proto.crop_scale, torch.rand(b, 3, generator=g))
            u = torch.rand(b, 1, generator=g)  # drawn either way: the same crops with or without flips
            x = standardize(random_flip(x, u) if proto.flip else x)
            loss = F.cross_entropy(model(x.to(device)), y_tr[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(standardize(x_ev[i:i + 256]).to(device)).cpu() for i in range(0, len(x_ev), 256)])
        out["finetune"] = metrics(F.softmax(logits, dim=1).numpy(), y_ev.numpy())
        out["finetune_images_seen"] = proto.finetune_steps * b
    out["seconds"] = round(time.time() - t0, 1)
    return out


# ------------------------------------------------------------------------------------------ report

def t_quantile(n: int) -> float:
    """Two-sided 95 % Student-t quantile for ``n`` samples (``n - 1`` degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_ci(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, sample std (ddof 1; 0 for one value) and the 95 % t-interval half width (None for one value)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std,
            "ci95": float(t_quantile(len(v)) * std / math.sqrt(len(v))) if len(v) > 1 else None}


def summarize(runs: list[dict[str, Any]], stage: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {fraction: {<metric>_mean, <metric>_std, <metric>_ci95, ..., seeds}}}``."""
    cells: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        if stage in r:
            cells.setdefault(r["method"], {}).setdefault(str(r["fraction"]), []).append(r[stage])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, fr in cells.items():
        for f, rs in fr.items():
            cell: dict[str, Any] = {}
            for k in METRICS:
                s = mean_ci([r.get(k) for r in rs])
                cell.update({f"{k}_mean": s["mean"], f"{k}_std": s["std"], f"{k}_ci95": s["ci95"]})
            cell["seeds"] = len(rs)
            out.setdefault(method, {})[f] = cell
    return out


def paired_differences(runs: list[dict[str, Any]], stage: str, metric: str, a: str, b: str
                       ) -> dict[str, dict[str, float | None]]:
    """Per fraction: ``a - b`` on ``metric``, paired by seed (the same labelled subset), mean and 95 % CI."""
    by = {(r["method"], str(r["fraction"]), r["seed"]): r[stage][metric] for r in runs if stage in r}
    out = {}
    for (m, f, s), v in by.items():
        if m == a and (b, f, s) in by:
            out.setdefault(f, []).append(v - by[(b, f, s)])
    return {f: {**mean_ci(d), "seeds": len(d)} for f, d in out.items()}


def drops(runs: list[dict[str, Any]], stage: str, metric: str, hi: float, lo: float) -> dict[str, dict[str, Any]]:
    """Per method: metric at fraction ``hi`` minus at ``lo``, paired by seed (nested subsets), mean and CI."""
    by = {(r["method"], float(r["fraction"]), r["seed"]): r[stage][metric] for r in runs if stage in r}
    out: dict[str, list[float]] = {}
    for (m, f, s), v in by.items():
        if f == hi and (m, lo, s) in by:
            out.setdefault(m, []).append(v - by[(m, lo, s)])
    return {m: {**mean_ci(d), "seeds": len(d)} for m, d in out.items()}


def _fmt(cell: dict[str, Any] | None, key: str) -> str:
    if not cell or cell.get(f"{key}_mean") is None:
        return "–"
    ci = cell.get(f"{key}_ci95")
    return f"{cell[f'{key}_mean']:.3f} ± {cell[f'{key}_std']:.3f}" + (f" [±{ci:.3f}]" if ci is not None else "")


def markdown_table(summary: dict, fractions: Sequence[float], n_labelled: dict[str, int], title: str,
                   methods: Sequence[str], metrics_shown: Sequence[str] = ("accuracy", "auc", "balanced_accuracy")) -> str:
    """One row per fraction, one column per method x metric: ``mean ± std [± 95 % CI half width]``."""
    methods = [m for m in methods if m in summary]
    short = {"accuracy": "acc", "auc": "AUC", "balanced_accuracy": "bal. acc"}
    head = "| fraction | labelled | " + " | ".join(f"{LABELS[m]} {short[k]}" for m in methods for k in metrics_shown) + " |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (2 + len(metrics_shown) * len(methods))]
    for f in fractions:
        cells = [_fmt(summary[m].get(str(f)), k) for m in methods for k in metrics_shown]
        lines.append(f"| {f:g} | {n_labelled.get(str(f), '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(summaries: dict, fractions: Sequence[float], n_labelled: dict[str, int], metric: str,
                 methods: Sequence[str]) -> str:
    """One row per fraction, one column per method x stage for one metric (the compact view)."""
    cols = [(s, m) for s in summaries for m in methods if m in summaries[s]]
    head = "| fraction | labelled | " + " | ".join(f"{LABELS[m]} {'probe' if s == 'probe' else 'fine-tune'}"
                                                   for s, m in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for f in fractions:
        cells = []
        for s, m in cols:
            c = summaries[s][m].get(str(f))
            cells.append("–" if not c or c[f"{metric}_mean"] is None else
                         f"{c[f'{metric}_mean']:.3f} ± {c[f'{metric}_std']:.3f}")
        lines.append(f"| {f:g} | {n_labelled.get(str(f), '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], fractions: Sequence[float], path: Path, title: str, methods: Sequence[str],
         metrics_shown: Sequence[str] = tuple(METRICS)) -> Path:
    """Metric vs label fraction, one line per method with 95 % CI error bars (± std when one seed;
    methods nudged sideways so their bars do not hide each other); one row per metric, one column
    per stage, shared y range per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics_shown), len(summaries), figsize=(5.4 * len(summaries), 3.4 * len(metrics_shown)),
                             squeeze=False, sharey="row")
    shown = [m for m in methods if any(m in s for s in summaries.values())]
    for col, (stage, summary) in enumerate(summaries.items()):
        for row, k in enumerate(metrics_shown):
            ax = axes[row][col]
            for i, m in enumerate(shown):
                if m not in summary:
                    continue
                fs = [f for f in fractions if str(f) in summary[m] and summary[m][str(f)][f"{k}_mean"] is not None]
                err = [summary[m][str(f)][f"{k}_ci95"] or summary[m][str(f)][f"{k}_std"] or 0.0 for f in fs]
                nudge = 1.06 ** (i - (len(shown) - 1) / 2)
                ax.errorbar([f * nudge for f in fs], [summary[m][str(f)][f"{k}_mean"] for f in fs], yerr=err,
                            marker="o", ms=4, capsize=3, label=LABELS[m])
            ax.set_xscale("log")
            ax.set_xticks(list(fractions), [f"{f:g}" for f in fractions])
            ax.minorticks_off()
            if row == len(metrics_shown) - 1:
                ax.set_xlabel("fraction of training labels")
            if col == 0:
                ax.set_ylabel(f"{METRICS[k]} (eval split)")
            if row == 0:
                ax.set_title(STAGES[stage], fontsize=10)
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean over seeds, bars = 95 % CI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pretrain(curves: dict[str, list[tuple[int, float]]], batch: int, path: Path, title: str) -> Path | None:
    """Each method's pre-training loss vs images seen (own panel: the losses have different units)."""
    curves = {m: c for m, c in curves.items() if c}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
    for ax, (m, c) in zip(axes[0], curves.items()):
        s = np.array([p[0] for p in c]) * batch
        v = np.array([p[1] for p in c])
        ax.plot(s, v, lw=0.8, alpha=0.4, label="logged")
        k = max(1, len(v) // 20)
        if len(v) > k:
            smooth = np.convolve(v, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1:], smooth, lw=1.8, label=f"running mean ({k} logs)")
        ax.set_title(f"{LABELS[m]}", fontsize=10)
        ax.set_xlabel("images seen")
        ax.set_ylabel({"spark": "masked-patch MSE (norm. pixels)", "moco": "InfoNCE (queue)",
                       "simclr": "NT-Xent"}.get(m, "loss"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------- main

SETTINGS_FILE = "study.json"
#: settings a restarted study must share with the stopped one (fractions, seeds and methods may grow)
PINNED = ("data", "split", "n_train", "n_eval", "protocol", "weights")


def _check_settings(out: Path, pinned: dict[str, Any]) -> None:
    path = out / SETTINGS_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [k for k in PINNED if old.get(k) != pinned.get(k)]
        if diff:
            details = "; ".join(f"{k}: was {old.get(k)!r}, now {pinned.get(k)!r}" for k in diff)[:600]
            raise ValueError(f"{out} holds a study run with other settings ({details}): give another --out, or "
                             "the same settings to resume it")
    path.write_text(json.dumps(pinned, indent=2))


def _run_file(out: Path, method: str, fraction: float, seed: int) -> Path:
    return out / "runs" / method / f"fraction{fraction:g}_seed{seed}.json"


def _encoder_cache(out: Path, method: str, enc_fn, x_tr: Tensor, x_ev: Tensor, device: torch.device
                   ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Recalibrated backbone state and its cached train/eval features (computed once, kept on disk)."""
    from safetensors.torch import load_file, save_file

    path = out / "features" / f"{method}.safetensors"
    if path.is_file():
        d = load_file(str(path))
        state = {k[len("state."):]: v for k, v in d.items() if k.startswith("state.")}
        return state, d["features_train"], d["features_eval"]
    enc = enc_fn().to(device)
    recalibrate_bn(enc, x_tr, device)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in enc.state_dict().items()}
    f_tr, f_ev = features(enc, x_tr, device), features(enc, x_ev, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({**{f"state.{k}": v for k, v in state.items()}, "features_train": f_tr.contiguous(),
               "features_eval": f_ev.contiguous()}, str(tmp))
    tmp.replace(path)
    return state, f_tr, f_ev


def _write_json(path: Path, obj: Any) -> None:
    """Write atomically (a killed study never leaves half a file that a restart would trust)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def build_report(result: dict[str, Any], runs: list[dict[str, Any]], out: Path, pre: dict[str, dict[str, Any]]) -> str:
    """Summaries and paired comparisons (into ``result``), tables and figures from the runs
    finished so far; ``pre`` holds each pre-training's loss curve. Returns the Markdown."""
    proto = result["settings"]
    fractions, methods = result["fractions"], result["methods"]
    stages = ["probe"] + (["finetune"] if proto["finetune_steps"] > 0 else [])
    summary = {s: summarize(runs, s) for s in stages}
    result["summary"] = summary
    hi, lo = max(fractions), min(fractions)
    result["drop"] = {s: {k: drops(runs, s, k, hi, lo) for k in METRICS} for s in stages}
    others = [m for m in methods if m != "spark"]
    result["spark_minus"] = ({s: {k: {m: paired_differences(runs, s, k, "spark", m) for m in others} for k in METRICS}
                              for s in stages} if "spark" in methods else {})
    n_lab = result["n_labelled"]
    done, total = len(runs), len(methods) * len(fractions) * result["seeds"]
    ds = Path(result["data"]).name
    md = [f"# Label-fraction study: {ds}", "",
          f"Data: `{result['data']}`, {result['split']}; train {result['n_train']} {result['train_counts']}, "
          f"eval {result['n_eval']} {result['eval_counts']}.",
          f"Protocol `{proto['name']}`: {proto['size']} px, `{proto['backbone']}`; pre-training "
          f"{proto['pretrain_steps']} steps x batch {proto['pretrain_batch']} = "
          f"{proto['pretrain_steps'] * proto['pretrain_batch']:,} images seen per method; linear probe "
          f"{proto['probe_epochs']} epochs (>= {proto['probe_min_steps']} steps) on cached features; fine-tuning "
          f"{proto['finetune_steps']} steps x batch {proto['batch']}, Adam lr {proto['lr']:g}, flips "
          f"{'on' if proto['flip'] else 'off'}. Cells: mean ± std [± 95 % t-interval half width] over seeds.",
          "", f"Runs finished: {done} of {total}" + ("" if done == total else " (partial table)"), ""]
    for s in stages:
        md += [markdown_table(summary[s], fractions, n_lab, STAGES[s], methods), ""]
    for s in stages:
        d = result["drop"][s]["accuracy"]
        if d:
            md += [f"**Accuracy drop from {hi:g} to {lo:g} of the labels, {STAGES[s]}** (paired by seed):", "",
                   "| method | acc at " + f"{hi:g} | acc at {lo:g} | drop (95 % CI) |", "|---|---|---|---|"]
            for m in methods:
                if m in d and d[m]["mean"] is not None:
                    a, b = summary[s][m][str(hi)], summary[s][m][str(lo)]
                    ci = d[m]["ci95"]
                    md.append(f"| {LABELS[m]} | {a['accuracy_mean']:.3f} | {b['accuracy_mean']:.3f} | "
                              f"{d[m]['mean']:.3f}" + (f" ± {ci:.3f}" if ci is not None else "") + " |")
            md.append("")
    if result["spark_minus"]:
        for s in stages:
            cols = [m for m in others if result["spark_minus"][s]["accuracy"][m]]
            if not cols:
                continue
            md += [f"**SparK minus each method, accuracy, {STAGES[s]}** (paired by seed; 95 % CI; "
                   "an interval that excludes 0 is a difference):", "",
                   "| fraction | " + " | ".join(f"SparK − {LABELS[m]}" for m in cols) + " |", "|" + "---|" * (1 + len(cols))]
            for f in fractions:
                cells = []
                for m in cols:
                    c = result["spark_minus"][s]["accuracy"][m].get(str(f))
                    cells.append("–" if not c or c["mean"] is None else
                                 f"{c['mean']:+.3f}" + (f" [{c['mean'] - c['ci95']:+.3f}, {c['mean'] + c['ci95']:+.3f}]"
                                                        if c["ci95"] is not None else ""))
                md.append(f"| {f:g} | " + " | ".join(cells) + " |")
            md.append("")
    if any(p.get("flatness") for p in pre.values()):
        md += ["**Pre-training losses** (mean over the first / last 10 % of logged steps; share of the total drop "
               "made in the last quarter of training: small = flattened):", "",
               "| method | images seen | loss start | loss at 75 % | loss end | last-quarter share of drop | seconds (finishing session) |",
               "|---|---|---|---|---|---|---|"]
        for m, p in pre.items():
            fl = p.get("flatness")
            if fl:
                md.append(f"| {LABELS[m]} | {p['images_seen']:,} | {fl['loss_start']:.4f} | {fl['loss_at_75pct']:.4f} | "
                          f"{fl['loss_end']:.4f} | {fl['last_quarter_share_of_drop']:.1%} | "
                          f"{p.get('seconds_last_session', '–')} |")
        md.append("")
    title = f"{ds} (train {result['n_train']}, eval {result['n_eval']})"
    plot(summary, fractions, out / "metrics_vs_fraction.png", title, methods)
    plot(summary, fractions, out / "auc_vs_fraction.png", title, methods, ("auc",))
    curves = {m: p["curve"] for m, p in pre.items() if p.get("curve")}
    if curves:
        plot_pretrain(curves, proto["pretrain_batch"], out / "pretrain_loss.png", f"pre-training on {ds}")
    return "\n".join(md)


def run_study(data: str | Path, out: str | Path, protocol: str | Protocol = "cxr", *,
              fractions: Sequence[float] | None = None, seeds: int = 3, methods: Sequence[str] | None = None,
              weights: dict[str, str] | None = None, train_split: str | None = None, eval_split: str | None = None,
              holdout: float = 0.2, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """The whole study (resuming what ``out`` already holds); returns the JSON-able result, also
    written to ``out``. ``overrides`` replace fields of the protocol (``pretrain_steps=...``)."""
    from tqdm.auto import tqdm

    t0 = time.time()
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    if isinstance(protocol, str) and protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    bad = [k for k in overrides if k not in Protocol.__dataclass_fields__]
    if bad:
        raise TypeError(f"unknown protocol settings {bad}")
    proto = replace(proto, **{k: v for k, v in overrides.items() if v is not None})
    if proto.crop_scale and isinstance(proto.crop_scale, list):
        proto = replace(proto, crop_scale=tuple(proto.crop_scale))
    fractions = [float(f) for f in (fractions or proto.fractions)]
    methods = list(methods or proto.methods)
    bad = [m for m in methods if m not in METHODS or (m != "random" and m not in proto.recipes and m not in (weights or {}))]
    if bad:
        raise ValueError(f"unknown methods {bad} for protocol {proto.name!r}; choose from "
                         f"{[m for m in METHODS if m == 'random' or m in proto.recipes]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: str(v) for k, v in (weights or {}).items()}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ds = LabelledSplit(data, proto.size, train_split, eval_split, holdout)
    x_tr, y_tr = ds.part("train")
    x_ev, y_ev = ds.part("eval")
    if len(x_ev) == 0:
        raise ValueError(f"{ds.root}: the evaluation split is empty ({ds.split.how})")
    n_cls = len(ds.classes)
    if proto.pretrain_batch > len(x_tr):
        proto = replace(proto, pretrain_batch=len(x_tr))
    settings = {**proto.settings(), "fractions": fractions, "methods": methods}
    _check_settings(out, {"data": str(ds.root), "split": ds.split.how, "n_train": len(x_tr), "n_eval": len(x_ev),
                          "protocol": {k: v for k, v in settings.items() if k not in ("fractions", "methods")},
                          "weights": weights})
    to_pretrain = [m for m in methods if m != "random" and m not in weights]
    jobs = [(seed, f, m) for seed in range(seeds) for f in fractions for m in methods]
    total = len(to_pretrain) + len(methods) + len(jobs)
    bar = tqdm(total=total, desc="label-fractions", unit="job", disable=not progress, dynamic_ncols=True)
    timings: dict[str, float] = {}
    pre: dict[str, dict[str, Any]] = {}
    for m in to_pretrain:
        bar.set_postfix_str(f"pre-training {LABELS[m]} ({proto.pretrain_steps} steps)")
        t = time.time()
        weights[m] = str(pretrain(m, ds.root, out, proto, holdout, train_split, eval_split, progress=progress))
        timings[f"pretrain_{m}_s"] = round(time.time() - t, 1)
        bar.update(1)
    for m in to_pretrain:
        run_dir = out / "pretrain" / m
        curve = loss_curve(run_dir)
        info = json.loads((run_dir / "pretrain_time.json").read_text()) if (run_dir / "pretrain_time.json").is_file() else {}
        pre[m] = {"images_seen": proto.pretrain_steps * proto.pretrain_batch, "curve": curve,
                  "flatness": flatness(curve), **info}
    cache: dict[str, tuple[dict[str, Tensor], Tensor, Tensor]] = {}
    for m in methods:
        bar.set_postfix_str(f"BN recalibration + features {LABELS[m]}")

        def make(m: str = m) -> nn.Module:
            torch.manual_seed(12345)  # the same random init for 'random' in every run
            enc = timm_backbone(proto.backbone, x_tr.shape[1])
            return enc if m == "random" else load_backbone(enc, weights[m])

        cache[m] = _encoder_cache(out, m, make, x_tr, x_ev, device)
        bar.update(1)
    subsets: dict[str, dict[str, Any]] = {}
    subset_idx: dict[tuple[float, int], np.ndarray] = {}
    for seed in range(seeds):
        for f in fractions:
            idx = stratified_subset(y_tr.numpy(), f, seed)
            subset_idx[(f, seed)] = idx
            subsets.setdefault(str(f), {})[str(seed)] = {ds.classes[c]: int((y_tr[idx] == c).sum()) for c in range(n_cls)}
    n_labelled = {str(f): sum(subsets[str(f)]["0"].values()) for f in fractions}
    result: dict[str, Any] = {
        "data": str(ds.root), "split": ds.split.how, "classes": ds.classes,
        "n_train": len(x_tr), "n_eval": len(x_ev),
        "train_counts": {c: int((y_tr == i).sum()) for i, c in enumerate(ds.classes)},
        "eval_counts": {c: int((y_ev == i).sum()) for i, c in enumerate(ds.classes)},
        "fractions": fractions, "seeds": seeds, "methods": methods,
        "settings": {**settings, "weights": weights, "device": str(device), "threads": torch.get_num_threads()},
        "subset_counts": subsets, "n_labelled": n_labelled,
        "pretrain": {m: {k: v for k, v in p.items() if k != "curve"} for m, p in pre.items()},
    }
    runs: list[dict[str, Any]] = []
    t = time.time()
    for seed, f, m in jobs:
        path = _run_file(out, m, f, seed)
        if path.is_file():
            runs.append(json.loads(path.read_text()))
            bar.update(1)
            continue
        bar.set_postfix_str(f"{LABELS[m]} fraction {f:g} seed {seed}")
        idx = subset_idx[(f, seed)]
        it = torch.as_tensor(idx, dtype=torch.long)
        state, f_tr, f_ev = cache[m]
        r = finetune_one(state, proto, x_tr.shape[1], f_tr[it], f_ev, x_tr[it], y_tr[it], x_ev, y_ev, n_cls, seed, device)
        run = {"method": m, "fraction": f, "seed": seed, "n_labelled": len(idx), **r}
        _write_json(path, run)
        runs.append(run)
        bar.update(1)
        _write_outputs(result, runs, out, pre)
    bar.close()
    timings["finetune_s_this_session"] = round(time.time() - t, 1)
    timings["total_s_this_session"] = round(time.time() - t0, 1)
    timings["finetune_s_all_runs"] = round(sum(r.get("seconds", 0) for r in runs), 1)
    result["timings"] = timings
    md = _write_outputs(result, runs, out, pre)
    result["markdown"] = md
    return result


def _write_outputs(result: dict[str, Any], runs: list[dict[str, Any]], out: Path, pre: dict) -> str:
    """results.md, results.json and the figures from the runs finished so far."""
    result["runs"] = runs
    md = build_report(result, runs, out, pre)
    (out / "results.md").write_text(md + "\n")
    _write_json(out / "results.json", {k: v for k, v in result.items() if k != "markdown"})
    return md
