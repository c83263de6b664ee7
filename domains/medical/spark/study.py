"""``maskworks eval medical/label-fractions``: how much do SparK / contrastive pre-training help
when only a fraction of the labels is available?

Protocol (after Wolf et al. 2023, "Self-supervised pre-training with contrastive and masked
autoencoder methods for dealing with small datasets in deep learning for medical imaging"):

1. pre-train SparK (``medical/spark-cxr``) and MoCo v2 (``medical/moco-cxr``) on the folder's
   *training* images, labels unused (or load ``--spark`` / ``--moco`` backbones); a third backbone
   stays randomly initialised;
2. for each fraction and seed, draw a class-stratified subset of the training labels (nested
   across fractions for one seed) and fine-tune a linear head on the backbone: first with the
   encoder frozen (head trained on cached features, Adam), then unfrozen (Adam, lr 1e-4, flips and
   crops). BatchNorm statistics of every backbone are re-estimated once on the training images
   and kept frozen while fine-tuning;
3. report accuracy and ROC-AUC on the evaluation split (the folder's val/valid/test split, or a
   stratified 20 % hold-out when ``labels.csv`` has no split column) as mean ± std over seeds,
   both after the frozen stage ("probe") and after fine-tuning ("finetune").

Outputs in ``--out``: ``results.md`` (table), ``results.json``, ``auc_vs_fraction.png``.
"""
from __future__ import annotations

import json
import time
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

METHODS = ("spark", "moco", "random")
LABELS = {"spark": "SparK", "moco": "MoCo v2", "random": "random init"}
RECIPES = {"spark": "spark-cxr.yaml", "moco": "moco-cxr.yaml"}


# ------------------------------------------------------------------------------------ pre-training

def pretrain(method: str, data: Path, out: Path, steps: int, size: int, batch: int, backbone: str,
             holdout: float, train_split: str | None, eval_split: str | None = None, seed: int = 0) -> Path:
    """Run the method's recipe on ``data``'s training images via ``fit``; returns backbone.safetensors."""
    from maskworks.core.training import apply_overrides, fit, load_recipe

    recipe = Path(__file__).parents[1] / "recipes" / RECIPES[method]  # domains/medical/recipes
    cfg = load_recipe(recipe, overrides=[f"data.roots=[{json.dumps(str(data))}]"])
    over: dict[str, Any] = {
        "data.size": size, "data.holdout": holdout, "model.backbone": backbone, "trainer.seed": seed,
        "trainer.max_steps": steps, "trainer.batch_size": batch, "trainer.warmup_steps": max(1, steps // 10),
        "trainer.log_every": max(1, min(10, steps)), "trainer.ckpt_every": steps, "trainer.keep_checkpoints": 1,
        "trainer.accelerator": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if train_split:
        over["data.train_split"] = train_split
    if eval_split:
        over["data.eval_split"] = eval_split
    cfg = apply_overrides(cfg, over)
    run = out / "pretrain" / method
    fit(cfg, run, progress=False)
    return run / BACKBONE_FILE


# -------------------------------------------------------------------------------------- fine-tuning

@torch.no_grad()
def features(encoder: nn.Module, images: Tensor, device: torch.device, batch: int = 128) -> Tensor:
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
    """Accuracy (argmax) and ROC-AUC (binary: positive = class 1; more classes: one-vs-rest macro)."""
    from sklearn.metrics import roc_auc_score

    acc = float((probs.argmax(1) == labels).mean())
    try:
        auc = float(roc_auc_score(labels, probs[:, 1]) if probs.shape[1] == 2 else
                    roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    except ValueError:  # one class only in the evaluation split
        auc = float("nan")
    return {"accuracy": acc, "auc": auc}


def train_head(head: nn.Linear, feats: Tensor, labels: Tensor, epochs: int, seed: int, lr: float = 1e-3,
               batch: int = 64) -> None:
    """Frozen-encoder stage: the linear head on cached features (standardised per feature)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        order = torch.randperm(len(feats), generator=g)
        for i in range(0, len(feats), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(head(feats[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


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


def finetune_one(state: dict[str, Tensor], backbone: str, in_chans: int, cached_tr: Tensor, cached_ev: Tensor,
                 x_tr: Tensor, y_tr: Tensor, x_ev: Tensor, y_ev: Tensor, n_classes: int, seed: int,
                 probe_epochs: int, ft_steps: int, lr: float, batch: int, device: torch.device) -> dict[str, Any]:
    """Frozen stage then unfrozen stage on one labelled subset; metrics after each."""
    torch.manual_seed(seed)
    enc = timm_backbone(backbone, in_chans)
    enc.load_state_dict(state)
    mean, std = cached_tr.mean(0), cached_tr.std(0).clamp_min(1e-6) if len(cached_tr) > 1 else \
        torch.ones(cached_tr.shape[1])
    model = Classifier(enc, mean, std, n_classes).to(device)
    train_head(model.head, ((cached_tr - mean) / std).to(device), y_tr.to(device), probe_epochs, seed)
    with torch.no_grad():
        p = F.softmax(model.head(((cached_ev - mean) / std).to(device)), dim=1).cpu().numpy()
    out: dict[str, Any] = {"probe": metrics(p, y_ev.numpy())}
    if ft_steps > 0:
        g = torch.Generator().manual_seed(seed + 7919)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        freeze_bn_stats(model)
        b = min(batch, len(x_tr))
        for _ in range(ft_steps):
            idx = torch.randperm(len(x_tr), generator=g)[:b]
            x = random_resized_crop(x_tr[idx], (0.7, 1.0), torch.rand(b, 3, generator=g))
            x = standardize(random_flip(x, torch.rand(b, 1, generator=g)))
            loss = F.cross_entropy(model(x.to(device)), y_tr[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(standardize(x_ev[i:i + 128]).to(device)).cpu() for i in range(0, len(x_ev), 128)])
        out["finetune"] = metrics(F.softmax(logits, dim=1).numpy(), y_ev.numpy())
    return out


# ------------------------------------------------------------------------------------------ report

def summarize(runs: list[dict[str, Any]], stage: str) -> dict[str, dict[str, dict[str, float]]]:
    """``{method: {fraction: {accuracy_mean, accuracy_std, auc_mean, auc_std, n}}}`` (std over seeds, ddof 0)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        if stage not in r:
            continue
        cell = out.setdefault(r["method"], {}).setdefault(str(r["fraction"]), {"acc": [], "auc": []})
        cell["acc"].append(r[stage]["accuracy"])
        cell["auc"].append(r[stage]["auc"])
    for method, fr in out.items():
        for f, cell in fr.items():
            acc, auc = np.array(cell.pop("acc")), np.array(cell.pop("auc"))
            cell.update(accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std()),
                        auc_mean=float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
                        auc_std=float(np.nanstd(auc)) if np.isfinite(auc).any() else float("nan"), seeds=len(acc))
    return out


def markdown_table(summary: dict, fractions: Sequence[float], n_labelled: dict[str, int], title: str) -> str:
    methods = [m for m in METHODS if m in summary]
    head = "| fraction | labelled | " + " | ".join(f"{LABELS[m]} acc | {LABELS[m]} AUC" for m in methods) + " |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (2 + 2 * len(methods))]
    for f in fractions:
        cells = []
        for m in methods:
            c = summary[m].get(str(f))
            cells += ([f"{c['accuracy_mean']:.3f} ± {c['accuracy_std']:.3f}", f"{c['auc_mean']:.3f} ± {c['auc_std']:.3f}"]
                      if c else ["–", "–"])
        lines.append(f"| {f:g} | {n_labelled[str(f)]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], fractions: Sequence[float], path: Path, title: str) -> Path:
    """AUC vs label fraction, one line per method with ± std error bars (one panel per stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summaries), figsize=(5.2 * len(summaries), 4), squeeze=False)
    for ax, (stage, summary) in zip(axes[0], summaries.items()):
        for m in METHODS:
            if m not in summary:
                continue
            fs = [f for f in fractions if str(f) in summary[m]]
            ax.errorbar(fs, [summary[m][str(f)]["auc_mean"] for f in fs], yerr=[summary[m][str(f)]["auc_std"] for f in fs],
                        marker="o", capsize=3, label=LABELS[m])
        ax.set_xscale("log")
        ax.set_xticks(list(fractions), [f"{f:g}" for f in fractions])
        ax.set_xlabel("fraction of training labels")
        ax.set_ylabel("ROC-AUC (eval split)")
        ax.set_title(f"{title}: {stage}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -------------------------------------------------------------------------------------------- main

def run_study(data: str | Path, out: str | Path, fractions: Sequence[float] = (1, 0.5, 0.25, 0.1, 0.05),
              seeds: int = 3, methods: Sequence[str] = METHODS, pretrain_steps: int = 100,
              weights: dict[str, str] | None = None, size: int = 64, backbone: str = "resnet18",
              pretrain_batch: int = 32, probe_epochs: int = 30, finetune_steps: int = 10, lr: float = 1e-4,
              batch: int = 32, train_split: str | None = None, eval_split: str | None = None,
              holdout: float = 0.2, progress: bool = True) -> dict[str, Any]:
    """The whole study; returns the JSON-able result (also written to ``out``)."""
    from tqdm.auto import tqdm

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = dict(weights or {})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ds = LabelledSplit(data, size, train_split, eval_split, holdout)
    x_tr, y_tr = ds.part("train")
    x_ev, y_ev = ds.part("eval")
    if len(x_ev) == 0:
        raise ValueError(f"{ds.root}: the evaluation split is empty ({ds.split.how})")
    n_cls = len(ds.classes)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown methods {bad}; choose from {list(METHODS)}")
    to_pretrain = [m for m in methods if m != "random" and m not in weights]
    total = len(to_pretrain) + len(methods) + len(methods) * len(fractions) * seeds
    bar = tqdm(total=total, desc="label-fractions", unit="job", disable=not progress, dynamic_ncols=True)
    timings: dict[str, float] = {}
    for m in to_pretrain:
        bar.set_postfix_str(f"pre-training {LABELS[m]} ({pretrain_steps} steps)")
        t = time.time()
        weights[m] = str(pretrain(m, ds.root, out, pretrain_steps, size, min(pretrain_batch, len(x_tr)), backbone,
                                  holdout, train_split, eval_split))
        timings[f"pretrain_{m}_s"] = round(time.time() - t, 1)
        bar.update(1)
    states, cached = {}, {}
    for m in methods:
        bar.set_postfix_str(f"features {LABELS[m]}")
        torch.manual_seed(12345)  # the same random init for 'random' in every run
        enc = timm_backbone(backbone, x_tr.shape[1])
        if m != "random":
            load_backbone(enc, weights[m])
        enc = enc.to(device)
        recalibrate_bn(enc, x_tr, device)
        states[m] = {k: v.detach().cpu().clone() for k, v in enc.state_dict().items()}
        cached[m] = (features(enc, x_tr, device), features(enc, x_ev, device))
        bar.update(1)
    runs: list[dict[str, Any]] = []
    subsets: dict[str, dict[str, Any]] = {}
    t = time.time()
    for seed in range(seeds):
        for f in fractions:
            idx = stratified_subset(y_tr.numpy(), float(f), seed)
            counts = {ds.classes[c]: int((y_tr[idx] == c).sum()) for c in range(n_cls)}
            subsets.setdefault(str(f), {})[str(seed)] = counts
            it = torch.as_tensor(idx, dtype=torch.long)
            for m in methods:
                bar.set_postfix_str(f"{LABELS[m]} fraction {f:g} seed {seed}")
                r = finetune_one(states[m], backbone, x_tr.shape[1], cached[m][0][it], cached[m][1], x_tr[it], y_tr[it],
                                 x_ev, y_ev, n_cls, seed, probe_epochs, finetune_steps, lr, batch, device)
                runs.append({"method": m, "fraction": float(f), "seed": seed, "n_labelled": len(idx), **r})
                bar.update(1)
    bar.close()
    timings["finetune_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t0, 1)
    fractions = [float(f) for f in fractions]
    n_labelled = {str(f): sum(subsets[str(f)]["0"].values()) for f in fractions}
    stages = ["probe"] + (["finetune"] if finetune_steps > 0 else [])
    summary = {s: summarize(runs, s) for s in stages}
    result = {
        "data": str(ds.root), "split": ds.split.how, "classes": ds.classes,
        "n_train": len(x_tr), "n_eval": len(x_ev),
        "train_counts": {c: int((y_tr == i).sum()) for i, c in enumerate(ds.classes)},
        "eval_counts": {c: int((y_ev == i).sum()) for i, c in enumerate(ds.classes)},
        "fractions": fractions, "seeds": seeds, "methods": list(methods),
        "settings": {"size": size, "backbone": backbone, "pretrain_steps": pretrain_steps,
                     "pretrain_batch": pretrain_batch, "probe_epochs": probe_epochs, "finetune_steps": finetune_steps,
                     "finetune_lr": lr, "finetune_batch": batch, "weights": weights, "device": str(device),
                     "threads": torch.get_num_threads()},
        "subset_counts": subsets, "n_labelled": n_labelled, "summary": summary, "runs": runs, "timings": timings,
    }
    md = [f"# Label-fraction study: {ds.root.name}", "",
          f"Data: `{ds.root}`, {ds.split.how}; train {len(x_tr)} {result['train_counts']}, eval {len(x_ev)} "
          f"{result['eval_counts']}; {size} px, {backbone}; pre-training {pretrain_steps} steps x batch "
          f"{pretrain_batch}; frozen stage {probe_epochs} epochs, fine-tuning {finetune_steps} steps, "
          f"lr {lr:g}; mean ± std over {seeds} seeds.", ""]
    for s in stages:
        md += [markdown_table(summary[s], fractions, n_labelled,
                              "after fine-tuning (encoder unfrozen)" if s == "finetune" else "frozen encoder (linear probe)"), ""]
    (out / "results.md").write_text("\n".join(md))
    (out / "results.json").write_text(json.dumps(result, indent=2))
    plot(summary, fractions, out / "auc_vs_fraction.png", f"{ds.root.name} (train {len(x_tr)}, eval {len(x_ev)})")
    result["markdown"] = "\n".join(md)
    return result
