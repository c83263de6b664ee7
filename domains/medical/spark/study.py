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

import json
import math
import time
from dataclasses import asdict, dataclass, replace
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
from maskworks.domains.medical.spark.study_report import (  # noqa: F401 - part of the study's API
    LABELS,
    METRICS,
    STAGES,
    t_quantile,
    mean_ci,
    summarize,
    paired_differences,
    drops,
    _fmt,
    markdown_table,
    metric_table,
    plot,
    plot_pretrain,
    loss_curve,
    flatness,
    _write_json,
    build_report,
    _write_outputs,
)
from torch import Tensor, nn

METHODS = ("spark", "moco", "simclr", "random")


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


