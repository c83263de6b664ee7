"""``maskworks eval skeleton/actions``: does SkeletonMAE pre-training help STRL recognise actions?

Protocol, for each seed and each fold (sequences never straddle a fold; windows of one sequence stay
together):

1. pre-train SkeletonMAE (recipe ``skeleton/skeletonmae``) on the fold's *training* sequences, labels
   unused (the held-out sequences are not seen even unlabelled);
2. **linear probe**: the encoder frozen (pre-trained, or random init with the same seed), its codes
   pooled as STRL pools them (:meth:`.strl.STRL.probe_features`), logistic regression on the training
   windows;
3. **fine-tune**: STRL (recipe ``skeleton/strl``) trained end to end from the pre-trained encoder, and
   from a random one (same steps, same seed);
4. baselines: the training fold's majority class, and logistic regression on hand-made window features
   (mean and spread of each joint's position and speed);
5. a sequence's prediction is the mean log-probability of its windows; accuracy and macro-F1 over the
   test sequences pooled over folds, per seed, then mean +- std over seeds.

Folds (``--protocol``): ``subject`` leaves one subject out at a time (a test sequence whose label no
training subject performed cannot be right; the table also reports the sequences whose label was seen);
``trial`` makes class-stratified folds of sequences (classes with fewer than ``--min-sequences``
sequences dropped, said in the output); ``split`` uses the data's own train/test (or val) split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from maskworks.core.device import default_device
from maskworks.core.io import InputError

from .data import Collection, WindowDataset, read_collection
from .strl import STRL

RECIPES = Path(__file__).parent / "recipes"
PROTOCOL_HELP = """Protocols: subject = leave one subject out (a test sequence whose label no training subject
performed cannot be right; the table also reports the sequences whose label was seen); trial =
class-stratified folds of sequences (classes with too few sequences left out); split = the data's
own train / val|test split. Windows of one sequence never straddle a fold, and the pre-training
sees the training sequences only."""
METHODS = {  # key -> label in tables and figures
    "majority": "majority class",
    "handcrafted": "hand-made features + logistic regression",
    "probe_random": "linear probe, random-init encoder",
    "probe_skeletonmae": "linear probe, SkeletonMAE encoder",
    "finetune_random": "STRL fine-tuned, random init",
    "finetune_skeletonmae": "STRL fine-tuned, SkeletonMAE init",
}


@dataclass
class Fold:
    name: str
    train: list[int]
    test: list[int]


@dataclass
class StudyConfig:
    protocol: str = "subject"
    seeds: tuple[int, ...] = (0, 1, 2)
    folds: int = 3               # trial protocol
    min_sequences: int = 3       # trial protocol: classes with fewer sequences are dropped
    frames: int = 32
    frames_per_node: int = 4
    stride: int = 8              # evaluation windows
    max_windows: int = 16        # training windows per sequence
    pretrain_steps: int = 600
    finetune_steps: int = 300
    batch_size: int = 32
    hidden: int = 64
    device: str | None = None


def make_folds(coll: Collection, protocol: str, seed: int, k: int = 3, min_sequences: int = 3
               ) -> tuple[list[Fold], list[str]]:
    """Folds of sequence indices and notes on what was dropped."""
    labelled = [i for i, s in enumerate(coll.samples) if s.label is not None]
    notes: list[str] = []
    if protocol == "subject":
        subjects = sorted({coll.samples[i].subject for i in labelled if coll.samples[i].subject is not None})
        if len(subjects) < 2:
            raise InputError(coll.source, f"{len(subjects)} subjects known", "give subjects (a 'subject' column, or "
                             "NTU / CMU names), or use --protocol trial")
        folds = [Fold(f"subject {s}", [i for i in labelled if coll.samples[i].subject != s],
                      [i for i in labelled if coll.samples[i].subject == s]) for s in subjects]
        return folds, notes
    if protocol == "trial":
        from sklearn.model_selection import StratifiedKFold

        counts: dict[int, int] = {}
        for i in labelled:
            counts[coll.samples[i].label] = counts.get(coll.samples[i].label, 0) + 1
        kept = [i for i in labelled if counts[coll.samples[i].label] >= max(min_sequences, k)]
        dropped = sorted({coll.label_names[c] for c, n in counts.items() if n < max(min_sequences, k)})
        if dropped:
            notes.append(f"classes with fewer than {max(min_sequences, k)} sequences left out: {', '.join(dropped)}")
        if len({coll.samples[i].label for i in kept}) < 2:
            raise InputError(coll.source, "fewer than 2 classes with enough sequences", "lower --min-sequences")
        y = [coll.samples[i].label for i in kept]
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [Fold(f"fold {f}", [kept[j] for j in tr], [kept[j] for j in te])
                for f, (tr, te) in enumerate(skf.split(np.zeros(len(kept)), y))], notes
    if protocol == "split":
        split_of = {i: (coll.samples[i].split or "").lower() for i in labelled}
        train = [i for i in labelled if split_of[i].endswith("train")]
        test = [i for i in labelled if split_of[i].endswith(("val", "test"))]
        if not train or not test:
            raise InputError(coll.source, "no train and val/test split", "add a split column, or use --protocol trial")
        return [Fold("split", train, test)], notes
    raise ValueError(f"unknown protocol {protocol!r}; choose subject, trial or split")


# -------------------------------------------------------------------------------------------- training

def _fit_recipe(recipe: str, root: str, names: list[str], run: Path, steps: int, seed: int, cfg: StudyConfig,
                max_persons: int, extra: dict[str, Any]) -> Path:
    """Run a recipe on the named sequences (skipped when ``run`` already holds its weights)."""
    from maskworks.core.training import apply_overrides, fit, load_recipe

    weights = run / "model.safetensors"
    if weights.is_file():
        return weights
    over = {"data.root": root, "data.sequences": names, "data.frames": cfg.frames, "data.stride": 4,
            "data.max_windows": cfg.max_windows, "data.max_persons": max_persons,
            "model.frames_per_node": cfg.frames_per_node, "model.hidden": cfg.hidden, "trainer.seed": seed,
            "trainer.max_steps": steps, "trainer.batch_size": cfg.batch_size,
            "trainer.warmup_steps": max(1, steps // 10), "trainer.log_every": max(1, min(50, steps)),
            "trainer.ckpt_every": steps, "trainer.keep_checkpoints": 1,
            "trainer.accelerator": default_device(cfg.device).type, **extra}
    fit(apply_overrides(load_recipe(RECIPES / f"{recipe}.yaml"), over), run, progress=False)
    return weights


def _batches(ds: WindowDataset, size: int = 64):
    for i in range(0, len(ds), size):
        items = [ds[j] for j in range(i, min(len(ds), i + size))]
        yield {k: torch.stack([t[k] for t in items]) for k in items[0]}


@torch.no_grad()
def window_outputs(model: STRL, ds: WindowDataset, probe: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits or probe features ``[N, *]``, sequence index ``[N]``) for every window of ``ds``."""
    model.eval()
    dev = next(model.parameters()).device
    outs, seqs = [], []
    for b in _batches(ds):
        x, valid = b["x"].to(dev), b["valid"].to(dev)
        outs.append((model.probe_features(x, valid) if probe else model(x, valid)).float().cpu().numpy())
        seqs.append(b["seq"].numpy())
    return np.concatenate(outs), np.concatenate(seqs)


def handcrafted(ds: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per window: mean and std over frames of each joint's (normalised) position, and its mean speed."""
    feats, seqs = [], []
    for b in _batches(ds):
        x = b["x"][:, 0]  # [B, S, V, F] first person
        b_, s, v, f = x.shape
        pos = x.reshape(b_, s, v, f // 3, 3).permute(0, 1, 3, 2, 4).reshape(b_, s * f // 3, v, 3)
        speed = (pos[:, 1:] - pos[:, :-1]).norm(dim=-1)
        feats.append(torch.cat([pos.mean(1).flatten(1), pos.std(1).flatten(1), speed.mean(1)], 1).numpy())
        seqs.append(b["seq"].numpy())
    return np.concatenate(feats), np.concatenate(seqs)


def logistic(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Standardised features -> balanced logistic regression -> log-probabilities ``[N, num_classes]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced", random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    out = np.full((len(test_x), num_classes), -1e9)
    out[:, clf.classes_] = clf.predict_log_proba(scaler.transform(test_x))
    return out


def sequence_predictions(logp: np.ndarray, seqs: np.ndarray) -> dict[int, int]:
    """Each sequence's class: the argmax of its windows' mean log-probability."""
    return {int(s): int(logp[seqs == s].mean(0).argmax()) for s in np.unique(seqs)}


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def run_fold(coll: Collection, fold: Fold, seed: int, cfg: StudyConfig, run_dir: Path, max_persons: int,
             log: Callable[[str], Any] = lambda s: None) -> dict[str, dict[int, int]]:
    """Every method's sequence predictions on one fold."""
    from maskworks.core.training.checkpoint import load_weights
    from maskworks.core.training.task import load_trained

    n_cls = len(coll.label_names)
    names = [coll.samples[i].name for i in fold.train]
    labels = np.array([coll.samples[i].label for i in range(len(coll.samples))], dtype=object)
    kw = dict(frames=cfg.frames, frames_per_node=cfg.frames_per_node, max_persons=max_persons)
    train_ds = WindowDataset(coll, fold.train, stride=cfg.stride, **kw)
    test_ds = WindowDataset(coll, fold.test, stride=cfg.stride, **kw)
    out: dict[str, dict[int, int]] = {}

    counts = np.bincount([coll.samples[i].label for i in fold.train], minlength=n_cls)
    out["majority"] = {i: int(counts.argmax()) for i in fold.test}

    tr_f, tr_s = handcrafted(train_ds)
    te_f, te_s = handcrafted(test_ds)
    out["handcrafted"] = sequence_predictions(logistic(tr_f, labels[tr_s].astype(int), te_f, n_cls, seed), te_s)

    log(f"  pre-training SkeletonMAE on {len(fold.train)} sequences")
    mae = _fit_recipe("skeletonmae", coll.source, names, run_dir / "pretrain", cfg.pretrain_steps, seed, cfg,
                      max_persons, {})
    segments = cfg.frames // cfg.frames_per_node
    for init in ("random", "skeletonmae"):
        torch.manual_seed(seed)
        probe = STRL(n_cls, frames_per_node=cfg.frames_per_node, hidden=cfg.hidden, segments=segments)
        if init == "skeletonmae":
            probe.load_encoder(load_weights(mae))
        tr_p, tr_s = window_outputs(probe, train_ds, probe=True)
        te_p, te_s = window_outputs(probe, test_ds, probe=True)
        out[f"probe_{init}"] = sequence_predictions(logistic(tr_p, labels[tr_s].astype(int), te_p, n_cls, seed), te_s)

        log(f"  fine-tuning STRL ({init} init)")
        w = _fit_recipe("strl", coll.source, names, run_dir / f"finetune_{init}", cfg.finetune_steps, seed, cfg,
                        max_persons, {"model.pretrained": str(mae) if init == "skeletonmae" else None,
                                      "model.num_classes": n_cls})
        _, model = load_trained(w, next(probe.parameters()).device)
        logits, te_s = window_outputs(model, test_ds)
        out[f"finetune_{init}"] = sequence_predictions(_log_softmax(logits), te_s)
    return out


# ---------------------------------------------------------------------------------------------- report

def scores(pred: dict[int, int], coll: Collection, only: set[int] | None = None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    keys = [k for k in sorted(pred) if only is None or k in only]
    if not keys:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "n": 0}
    y = [coll.samples[k].label for k in keys]
    p = [pred[k] for k in keys]
    return {"accuracy": float(accuracy_score(y, p)), "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
            "n": len(keys)}


def summarize(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out = {}
    for m in METHODS:
        rows = [r[m] for r in per_seed if m in r]
        if not rows:
            continue
        acc, f1 = np.array([r["accuracy"] for r in rows]), np.array([r["macro_f1"] for r in rows])
        out[m] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                  "macro_f1_mean": float(f1.mean()), "macro_f1_std": float(f1.std()), "seeds": len(rows),
                  "sequences": rows[0]["n"]}
    return out


def run_study(data: str | Path, out: str | Path, cfg: StudyConfig, log: Callable[[str], Any] = print) -> dict:
    """The whole study; writes ``results.json``, ``results.md`` and ``results.png`` under ``out``."""
    coll = read_collection(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    max_persons = max(1, min(2, max(s.skeleton.num_persons for s in coll.samples)))
    per_seed, per_seed_seen, notes, folds_info = [], [], [], []
    for seed in cfg.seeds:
        folds, fold_notes = make_folds(coll, cfg.protocol, seed, cfg.folds, cfg.min_sequences)
        notes = fold_notes
        preds: dict[str, dict[int, int]] = {m: {} for m in METHODS}
        seen: set[int] = set()
        for fold in folds:
            log(f"seed {seed}, {fold.name}: {len(fold.train)} training / {len(fold.test)} test sequences")
            train_labels = {coll.samples[i].label for i in fold.train}
            seen |= {i for i in fold.test if coll.samples[i].label in train_labels}
            slug = fold.name.replace(" ", "-")
            for m, p in run_fold(coll, fold, seed, cfg, out / "runs" / f"seed{seed}" / slug, max_persons, log).items():
                preds[m].update(p)
            if seed == cfg.seeds[0]:
                folds_info.append({"fold": fold.name, "train": len(fold.train), "test": len(fold.test)})
        per_seed.append({m: scores(p, coll) for m, p in preds.items()})
        per_seed_seen.append({m: scores(p, coll, seen) for m, p in preds.items()})
        (out / f"predictions_seed{seed}.json").write_text(json.dumps(
            {m: {coll.samples[k].name: coll.label_names[v] for k, v in p.items()} for m, p in preds.items()}, indent=1))
    tested = sorted({k for k in preds["majority"]})
    result = {
        "data": {"source": str(data), "description": coll.describe(), "sequences_tested": len(tested),
                 "frames_tested": sum(coll.samples[k].skeleton.num_frames for k in tested),
                 "labels_tested": sorted({coll.label_names[coll.samples[k].label] for k in tested})},
        "protocol": cfg.protocol, "folds": folds_info, "notes": notes, "config": cfg.__dict__,
        "results": summarize(per_seed),
        "per_seed": per_seed,
    }
    if cfg.protocol == "subject":
        result["results_seen_labels"] = summarize(per_seed_seen)
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(result))
    figure(result, out / "results.png")
    return result


def markdown(result: dict) -> str:
    d = result["data"]
    lines = [f"# Skeleton action recognition: SkeletonMAE pre-training vs random init ({result['protocol']} protocol)",
             "", f"Data: {d['source']}: {d['description']}. Tested: {d['sequences_tested']} sequences "
             f"({d['frames_tested']:,} frames), labels {', '.join(d['labels_tested'])}. "
             f"Folds: {len(result['folds'])} ({', '.join(f['fold'] for f in result['folds'][:8])}"
             f"{' ...' if len(result['folds']) > 8 else ''}); seeds: {len(result['config']['seeds'])}.", ""]
    lines += [f"Note: {n}." for n in result["notes"]]

    def table(res: dict, title: str) -> list[str]:
        rows = [f"## {title}", "", "| method | accuracy | macro-F1 | test sequences |", "|---|---|---|---|"]
        for m, label in METHODS.items():
            if m in res:
                r = res[m]
                rows.append(f"| {label} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | "
                            f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f} | {r['sequences']} |")
        return rows + [""]

    lines += table(result["results"], "All test sequences (mean ± std over seeds)")
    if "results_seen_labels" in result:
        lines += table(result["results_seen_labels"], "Test sequences whose label a training subject performed")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = result["results"]
    keys = [m for m in METHODS if m in res]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(keys))
    for off, metric, color in ((-0.2, "accuracy", "tab:blue"), (0.2, "macro_f1", "tab:orange")):
        ax.bar(x + off, [res[m][f"{metric}_mean"] for m in keys], 0.38, yerr=[res[m][f"{metric}_std"] for m in keys],
               color=color, capsize=3, label=metric.replace("_", "-"))
    ax.set_xticks(x, [textwrap.fill(METHODS[m], 20) for m in keys], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    d = result["data"]
    n_seeds = len(result['config']['seeds'])
    ax.set_title(f"{result['protocol']} protocol, {n_seeds} seed{'s' * (n_seeds != 1)}: {d['sequences_tested']} "
                 f"test sequences — a tiny set ({d['description']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

