"""The medical domain's command-line entries: anomaly prediction, evaluation and latency bench; the label-fraction
study; the SparK step benchmark."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from maskworks.apps.commands.common import add_batch_options, run_predict


def load_trained_cpu(weights: str | Path):
    from maskworks.core.training.task import load_trained

    return load_trained(weights, "cpu")


def parse_fractions(text: str) -> list[float]:
    try:
        fr = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fractions {text!r}: expected numbers like 1,0.5,0.1") from None
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise argparse.ArgumentTypeError(f"--fractions {text!r}: each must be in (0, 1]")
    return fr


@torch.no_grad()  # not set_grad_enabled(False): entries also run in-process (tests)
def eval_anomaly(argv: list[str]) -> int:
    from typing import Callable

    from maskworks.domains.medical.anomaly.evaluate import (
        DetectorResult,
        default_plain_weights,
        evaluate_detector,
        insert_lesions,
        markdown_table,
        roc_plot,
    )
    from maskworks.domains.medical.anomaly.scoring import AnomalyScorer, ScoreResult

    p = argparse.ArgumentParser(prog="maskworks eval medical/anomaly", description=
                                "Image-level anomaly detection (AUROC, AUPR; label 'normal' vs anything else) of "
                                "MemMC-MAE on a data folder (images/ + labels.csv), next to a plain MAE's "
                                "reconstruction error and a PatchCore baseline on the plain MAE's encoder, all in "
                                "this run; plus localisation (pixel AUROC, AUPRO) on synthetic lesions inserted into "
                                "the folder's normal images. Writes a Markdown table, JSON and a ROC plot.")
    p.add_argument("--data", help="data folder (default: the validation split the model's recipe names)")
    p.add_argument("--split", help="split of --data to use (default: all rows; the recipe's val split without --data)")
    p.add_argument("--weights", help="MemMC-MAE weights (default: shipped data/weights/memmc-cxr.safetensors)")
    p.add_argument("--plain-weights", default=default_plain_weights(),
                   help="a plain MAE trained on the same normals (recipe preset 'plain'); baseline (a) and the "
                        "backbone of baseline (b). Default: the shipped memmc-cxr.plain-mae.safetensors")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=WEIGHTS",
                   help="more MemMC-MAE variants to score the same way (repeatable)")
    p.add_argument("--errors", default="", help="also score MemMC-MAE with these error maps, comma separated "
                   "(pixel,ssim,feature,mix) for the scoring study")
    p.add_argument("--scoring", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scorer setting for MemMC-MAE and the ablation, e.g. error=pixel (repeatable)")
    p.add_argument("--max-normals", type=int, default=None,
                   help="use at most this many training normals (seeded) for statistics and the PatchCore bank")
    p.add_argument("--no-lesions", action="store_true", help="skip the synthetic-lesion localisation")
    p.add_argument("--lesion-seed", type=int, default=0, help="seed of the synthetic lesions (default 0)")
    p.add_argument("--specificity", type=float, default=0.95, help="threshold on held-out normals (default 0.95)")
    p.add_argument("--json", help="write results as JSON here")
    p.add_argument("--md", help="write the Markdown table here")
    p.add_argument("--plot", help="ROC plot PNG (default: beside --json or --md, else roc.png)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    a = p.parse_args(argv)

    from maskworks.core.datasets import LabelledImageFolder
    from maskworks.core.io import resolve_shipped
    from maskworks.domains.medical.anomaly.baselines import PatchCore
    from maskworks.domains.medical.anomaly.detector import record_path, shipped_weights

    weights = Path(a.weights) if a.weights else shipped_weights()
    task, model = load_trained_cpu(weights)
    rec_file = record_path(weights)
    record = json.loads(rec_file.read_text()) if rec_file.is_file() else {}
    scoring = dict(record.get("scoring") or task.cfg.get("scoring") or {})
    from maskworks.core.training.config import parse_yaml

    for item in a.scoring:
        k, _, v = item.partition("=")
        scoring[k.strip()] = parse_yaml(v)
    d = task.cfg["data"]
    root = Path(a.data) if a.data else resolve_shipped(d["root"])
    split = a.split if a.split is not None else (None if a.data else d.get("val_split"))
    ds = LabelledImageFolder(root, split=split, size=model.input_size[0], channels=int(d.get("channels", 1)))
    labels = (~ds.is_normal).numpy().astype(int)
    if labels.min() == labels.max():
        raise SystemExit(f"{root} (split {split}): needs both normal and abnormal images for AUROC")
    calib = task.build_dataset("calib").images
    train_normals = task.build_dataset("train").images
    if a.max_normals and len(train_normals) > a.max_normals:
        pick = torch.randperm(len(train_normals), generator=torch.Generator().manual_seed(0))[:a.max_normals]
        train_normals = train_normals[pick.sort().values]
    lesion_images = lesion_masks = None
    if not a.no_lesions:
        lesion_images, lesion_masks = insert_lesions(ds.images[ds.is_normal], seed=a.lesion_seed)
    prog = not a.no_progress
    common = dict(images=ds.images, labels=labels, calib=calib, lesion_images=lesion_images,
                  lesion_masks=lesion_masks, specificity=a.specificity)
    print(f"{len(ds)} images from {root} (split {split}): {int((labels == 0).sum())} normal, "
          f"{int(labels.sum())} abnormal; trained on {len(train_normals)} normals, calibrated on {len(calib)} "
          f"held-out normals; {0 if lesion_images is None else len(lesion_images)} synthetic-lesion images")

    results: list[DetectorResult] = []

    def run(name: str, fn: Callable[[torch.Tensor], ScoreResult]) -> None:
        results.append(evaluate_detector(name, fn, **common))
        r = results[-1]
        print(f"  {name}: AUROC {r.auroc:.3f}  AUPR {r.aupr:.3f}  ({r.seconds:.0f} s)", flush=True)

    def make(m, cfg) -> AnomalyScorer:
        sc = AnomalyScorer.from_config(m, cfg)
        return sc.fit_normal(train_normals, prog) if sc.standardise != "none" else sc

    def label(sc: AnomalyScorer) -> str:
        return f"{sc.error}" + (f", per-pixel {sc.standardise} z" if sc.standardise != "none" else "") + f", {sc.reduce}"

    scorer = make(model, scoring)
    tag = label(scorer)
    run(f"MemMC-MAE ({tag})", lambda x: scorer.score(x, prog, "MemMC-MAE"))
    for err in [e.strip() for e in a.errors.split(",") if e.strip() and e.strip() != scorer.error]:
        s2 = make(model, {**scoring, "error": err})
        run(f"MemMC-MAE ({label(s2)})", lambda x, s2=s2: s2.score(x, prog, err))
    for item in a.ablation:
        name, _, w = item.partition("=")
        _, m2 = load_trained_cpu(w)
        s3 = make(m2, scoring)
        run(f"{name} ({tag})", lambda x, s3=s3: s3.score(x, prog, name))
    if a.plain_weights:
        _, plain = load_trained_cpu(a.plain_weights)
        sp = AnomalyScorer.from_config(plain, {**scoring, "error": "pixel", "reduce": "mean", "standardise": "none",
                                               "sigma": 0.0})
        run("plain MAE (pixel error, mean)", lambda x: sp.score(x, prog, "plain MAE"))
        pc = PatchCore(plain).fit(train_normals)
        run("PatchCore (plain-MAE encoder)", lambda x: pc.score(x, prog))
    else:
        print("no --plain-weights: baselines skipped")

    title = f"{root.name} split {split}: {int((labels == 0).sum())} normal / {int(labels.sum())} abnormal"
    table = markdown_table(results, title)
    print(table)
    out = {"data": str(root), "split": split, "images": len(ds), "normal": int((labels == 0).sum()),
           "abnormal": int(labels.sum()), "train_normals": len(train_normals), "calibration_normals": len(calib),
           "synthetic_lesion_images": 0 if lesion_images is None else len(lesion_images),
           "lesion_seed": a.lesion_seed, "specificity": a.specificity, "weights": str(weights),
           "plain_weights": a.plain_weights, "scoring": scorer.config(), "results": [r.row() for r in results]}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    if a.md:
        Path(a.md).parent.mkdir(parents=True, exist_ok=True)
        Path(a.md).write_text(table + "\n")
    plot = a.plot or str(Path(a.json or a.md or "roc.json").with_suffix("")) + "_roc.png"
    roc_plot(results, plot, title)
    print(f"ROC plot: {plot}")
    return 0


def bench_anomaly_latency(argv: list[str]) -> int:
    """``maskworks bench anomaly-latency``: CPU latency per image of MemMC-MAE scoring vs plain-MAE scoring."""
    import time

    import numpy as np
    from maskworks.domains.medical.anomaly.evaluate import default_plain_weights
    from maskworks.domains.medical.anomaly.scoring import AnomalyScorer

    p = argparse.ArgumentParser(prog="maskworks bench anomaly-latency", description=
                                "Inference latency per image on CPU (batch 1, one thread unless --threads): the shipped "
                                "MemMC-MAE with its scoring (K complementary masks, its error map) vs the plain MAE "
                                "with pixel error and the same masks, measured in the same run; prints the ratio.")
    p.add_argument("--weights", help="MemMC-MAE weights (default: shipped)")
    p.add_argument("--plain-weights", default=default_plain_weights(), help="plain MAE weights (default: shipped)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per detector in each of 3 alternating rounds; the median is reported (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before each round (default 5)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads torch may use (default 1)")
    p.add_argument("--json", help="write the result here")
    a = p.parse_args(argv)
    from maskworks.domains.medical.anomaly.detector import AnomalyDetector

    torch.set_num_threads(a.threads)
    det = AnomalyDetector.load(a.weights, device="cpu")
    if not a.plain_weights:
        raise SystemExit("no plain MAE weights: pass --plain-weights")
    _, plain = load_trained_cpu(a.plain_weights)
    plain_scorer = AnomalyScorer.from_config(plain, {**det.scorer.config(), "error": "pixel", "reduce": "mean",
                                                     "standardise": "none", "sigma": 0.0})
    x = torch.rand(1, 1, det.size, det.size, generator=torch.Generator().manual_seed(0))

    def timeit(fn) -> list[float]:
        for _ in range(a.warmup):
            fn()
        ts = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return ts

    # interleave the two so that load from other processes hits both alike
    mem_t, plain_t = [], []
    for _ in range(3):
        mem_t += timeit(lambda: det.scorer.score_batch(x))
        plain_t += timeit(lambda: plain_scorer.score_batch(x))
    m, pl = float(np.median(mem_t)) * 1e3, float(np.median(plain_t)) * 1e3
    out = {"device": "cpu", "threads": a.threads, "image_size": det.size, "k": det.scorer.k,
           "memmc_error": det.scorer.error, "memmc_ms_per_image": round(m, 3), "plain_ms_per_image": round(pl, 3),
           "ratio_memmc_over_plain": round(m / pl, 3), "repeats": 3 * a.repeats}
    print(f"MemMC-MAE scoring ({det.scorer.error}, K={det.scorer.k}): {m:.2f} ms/image (median)\n"
          f"plain MAE scoring (pixel, K={det.scorer.k}):   {pl:.2f} ms/image (median)\n"
          f"ratio MemMC / plain: {m / pl:.2f}x  (CPU, {a.threads} thread(s), batch 1, {det.size} px)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


def eval_label_fractions(argv: list[str] | None = None) -> int:

    from maskworks.domains.medical.spark.study import METHODS, PROTOCOLS, run_study

    cxr, ct = PROTOCOLS["cxr"], PROTOCOLS["ct28"]
    p = argparse.ArgumentParser(
        prog="maskworks eval medical/label-fractions", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Label-fraction study on any images/ + labels.csv folder (after Wolf et al. 2023): pre-train SparK "
                    "and contrastive baselines (MoCo v2, SimCLR) on the training images without labels, with the same "
                    "backbone, batch and steps each; keep a random-init baseline; on stratified fractions of the "
                    "training labels (several seeds, the same subsets for every method) train a linear probe on the "
                    "frozen encoder, then fine-tune the whole network; report accuracy, macro ROC-AUC and balanced "
                    "accuracy on the evaluation split (never trained on): mean ± std and 95 %% CI. Resumable: run the "
                    "same command again and it continues where it stopped (finished runs are kept in --out). Writes "
                    "results.md, results.json, metrics_vs_fraction.png, auc_vs_fraction.png and pretrain_loss.png "
                    "to --out, refreshed after every run.",
        epilog="protocols (--protocol; any option below overrides one setting):\n"
               f"  cxr   {cxr.size} px {cxr.backbone}, methods {','.join(cxr.methods)}, {cxr.pretrain_steps} pre-training "
               f"steps x {cxr.pretrain_batch}, {cxr.finetune_steps} fine-tuning steps, flips\n"
               f"  ct28  {ct.size} px {ct.backbone} (ResNet-18 adapted to 28 px, quarter width), methods "
               f"{','.join(ct.methods)},\n        {ct.pretrain_steps} pre-training steps x {ct.pretrain_batch}, "
               f"{ct.finetune_steps} fine-tuning steps x {ct.batch}, no flips (left/right organs)\n"
               "examples:\n"
               "  maskworks eval medical/label-fractions --data data/cxr/pneumoniamnist_28px --out runs/lf-pneumonia\n"
               "  OMP_NUM_THREADS=1 maskworks eval medical/label-fractions --protocol ct28 \\\n"
               "      --data /path/to/organamnist_28px --out runs/lf-organamnist      # ~4 h on one CPU core\n"
               "evaluation split: labels.csv's split/patient_split column (train vs val/valid/validation/test),\n"
               "or a stratified 20 %% hold-out when there is none (--holdout).")
    p.add_argument("--data", required=True, help="folder with images/ and labels.csv (file,label[,split])")
    p.add_argument("--out", default="runs/label-fractions",
                   help="output folder; a folder holding a stopped study with the same settings is resumed "
                        "(default %(default)s)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cxr",
                   help="defaults for everything below: recipes, backbone, size, budgets (default %(default)s)")
    p.add_argument("--json", help="also write the JSON result here")
    p.add_argument("--fractions", type=parse_fractions, default=None,
                   help="label fractions, comma separated (default: the protocol's; cxr 1,0.5,0.25,0.1,0.05, "
                        "ct28 also 0.01)")
    p.add_argument("--seeds", type=int, default=3, help="subsets/initialisations per fraction (default 3)")
    p.add_argument("--methods", default=None,
                   help=f"comma separated subset of {','.join(METHODS)} (default: the protocol's)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="pre-training steps, the same for every method (default: the protocol's)")
    p.add_argument("--pretrain-batch", type=int, default=None,
                   help="pre-training batch, the same for every method (default: the protocol's; at most the "
                        "training images)")
    for m in ("spark", "moco", "simclr"):
        p.add_argument(f"--{m}", help=f"use this {m} backbone.safetensors instead of pre-training")
    p.add_argument("--size", type=int, default=None, help="input size in px, a multiple of the backbone's stride "
                   "(32 for timm CNNs, 8 for resnet18_28px*) (default: the protocol's)")
    p.add_argument("--backbone", default=None, help="timm CNN name or resnet18_28px[_wN] (default: the protocol's)")
    p.add_argument("--probe-epochs", type=int, default=None, help="frozen-encoder head epochs (default: the protocol's)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="unfrozen fine-tuning steps per run, the same for every fraction (0 = probe only; "
                        "default: the protocol's)")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate, Adam (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch (default 32)")
    p.add_argument("--train-split", help="value of the split column used for training (default 'train')")
    p.add_argument("--eval-split", help="value used for evaluation (default: val, valid, validation or test)")
    p.add_argument("--holdout", type=float, default=0.2, help="hold-out fraction without a split column (default 0.2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    a = p.parse_args(argv)
    proto = PROTOCOLS[a.protocol]
    size, backbone = a.size or proto.size, a.backbone or proto.backbone
    stride = 8 if "_28px" in backbone else 32
    if size % stride:
        p.error(f"--size {size} must be a multiple of {stride} (the backbone's stride, SparK's mask grid)")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()] if a.methods else None
    weights = {k: v for k, v in (("spark", a.spark), ("moco", a.moco), ("simclr", a.simclr)) if v}
    for k, v in weights.items():
        if not Path(v).is_file():
            p.error(f"--{k} {v}: file not found (expected a backbone.safetensors from `maskworks train medical/...`)")
    from maskworks.core.io import InputError

    try:
        res = run_study(a.data, a.out, a.protocol, fractions=a.fractions, seeds=a.seeds, methods=methods,
                        weights=weights, train_split=a.train_split, eval_split=a.eval_split, holdout=a.holdout,
                        progress=not a.no_progress, pretrain_steps=a.pretrain_steps, pretrain_batch=a.pretrain_batch,
                        size=a.size, backbone=a.backbone, probe_epochs=a.probe_epochs,
                        finetune_steps=a.finetune_steps, lr=a.lr, batch=a.batch_size)
    except (InputError, ValueError) as e:
        print(f"maskworks eval medical/label-fractions: {e}", file=sys.stderr)
        return 2
    print(res.pop("markdown"))
    print(f"\nwrote {Path(a.out) / 'results.md'}, results.json, metrics_vs_fraction.png, auc_vs_fraction.png, "
          f"pretrain_loss.png ({res['timings']['total_s_this_session']:.0f} s this session)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def bench_spark_step(argv: list[str] | None = None) -> int:

    from maskworks.domains.medical.spark.bench import bench

    p = argparse.ArgumentParser(
        prog="maskworks bench spark-step",
        description="A SparK pre-training step (forward, backward, AdamW) against the same CNN's dense step "
                    "(--peer dense-recon: same encoder+decoder without masking; classify: backbone + linear "
                    "head), alternating in one process; median of --steps timed steps after --warmup. Prints "
                    "images/s of both and the ratio SparK / dense. Runs on CUDA when present (and on CPU with "
                    "--device cpu).")
    p.add_argument("--backbone", default="resnet18", help="timm CNN (default %(default)s), in_chans=1")
    p.add_argument("--size", type=int, default=96, help="input size, a multiple of 32 (default %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default %(default)s)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (default %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default %(default)s)")
    p.add_argument("--peer", choices=["dense-recon", "classify", "both"], default="both",
                   help="the dense step to compare with (default %(default)s: one line each)")
    p.add_argument("--decoder-width", type=int, default=256, help="SparK decoder channels (default %(default)s)")
    p.add_argument("--device", help="cpu or cuda; default: cuda when present, and cpu too")
    p.add_argument("--json", help="write the results (a list) here")
    a = p.parse_args(argv)
    if a.size % 32:
        p.error(f"--size {a.size} must be a multiple of 32")
    devices = [a.device] if a.device else (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    peers = ["dense-recon", "classify"] if a.peer == "both" else [a.peer]
    results = []
    for dev in devices:
        for peer in peers:
            r = bench(a.backbone, a.size, a.batch, a.steps, a.warmup, peer, dev, a.decoder_width)
            results.append(r)
            print(f"{r['device']:>5} {r['backbone']} {r['size']} px batch {r['batch']} (mask grid {r['mask_grid']}), "
                  f"vs {peer}: SparK {r['spark_img_s']:.1f} img/s ({r['spark_step_ms']:.0f} ms), dense "
                  f"{r['dense_img_s']:.1f} img/s ({r['dense_step_ms']:.0f} ms), ratio {r['ratio']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


def predict_anomaly(argv: list[str] | None = None) -> int:
    """``maskworks predict medical/anomaly FILES_OR_FOLDERS --out DIR``."""
    from maskworks.domains.medical.anomaly.detector import (
        INPUT_SUFFIXES,
        WINDOW_CHOICES,
        AnomalyDetector,
    )

    p = argparse.ArgumentParser(prog="maskworks predict medical/anomaly", description=
                                "Anomaly heatmap and score of each chest X-ray (PNG/JPEG, DICOM with or without an "
                                "extension, NIfTI slice) with the MemMC-MAE: writes <name>_heatmap.png (overlay with the "
                                "above-threshold contour) and <name>.json (score, z-score against normal images, "
                                "threshold, model version, input SHA-256). An image the model cannot judge (not a "
                                "frontal chest radiograph: CT, MR, lateral, turned, inverted, blank or noise) gets "
                                "\"in_distribution\": false with the reasons, \"anomalous\": null and no heatmap. "
                                "The model sees every image at its training size (28 px for the shipped one). "
                                "Research use only, not for diagnosis.")
    add_batch_options(p, "images (PNG/JPEG, DICOM, NIfTI) or folders of them (a PACS export of DICOMs named by UID works)")
    p.add_argument("--weights", help="weights (default: shipped data/weights/memmc-cxr.safetensors)")
    p.add_argument("--specificity", type=float, default=None,
                   help="threshold at this specificity on held-out normals (default: the model's, 0.95)")
    p.add_argument("--window", default="auto", choices=WINDOW_CHOICES, help="DICOM/NIfTI intensity window")
    p.add_argument("--slice", type=int, default=None, help="slice of a volume (default: middle)")
    a = p.parse_args(argv)
    det = AnomalyDetector.load(a.weights, a.device)
    return run_predict(a, INPUT_SUFFIXES, lambda f: det.analyse_file(f, a.window, a.slice, a.specificity),
                       "medical/anomaly", dicom_without_suffix=True,
                       describe=lambda it, r: f"{it.path}: z {r.z:+.2f} (threshold {r.threshold:.2f}) "
                                              f"{'ABOVE' if r.anomalous else 'below'} threshold" if r.in_distribution
                       else f"{it.path}: NOT JUDGED, not a frontal chest radiograph: {'; '.join(r.reasons)}")


def eval_anomaly_scoring(argv: list[str] | None = None) -> int:
    """``maskworks eval medical/anomaly-scoring``: how the shipped scoring was chosen, rerun on any run."""
    from maskworks.domains.medical.anomaly.detector import shipped_weights
    from maskworks.domains.medical.anomaly.evaluate import scoring_selection

    p = argparse.ArgumentParser(prog="maskworks eval medical/anomaly-scoring", description=
                                "Choose the anomaly scoring without touching the reported split: image AUROC of each "
                                "error map (raw, per-pixel |z|, per-pixel signed z) and pooling on held-out training "
                                "normals against the abnormal images of the training split (which a model trained on "
                                "normals never saw). Prints and writes the table docs/medical/anomaly.md quotes.")
    p.add_argument("--weights", help="a MemMC-MAE run's model.safetensors or run folder (default: the shipped model)")
    p.add_argument("--sigma", type=float, default=0.5, help="Gaussian smoothing of the error maps, pixels (default 0.5)")
    p.add_argument("--json", help="also write the result here (e.g. docs/medical/anomaly_scoring_selection.json)")
    a = p.parse_args(argv)
    res = scoring_selection(a.weights or shipped_weights(), a.json, a.sigma)
    print(json.dumps(res, indent=2, default=str))
    return 0


def eval_anomaly_gate(argv: list[str] | None = None) -> int:
    """``maskworks eval medical/anomaly-gate``: what the out-of-distribution gate refuses and wrongly refuses."""
    from maskworks.domains.medical.anomaly.gate_report import gate_figures, summary

    p = argparse.ArgumentParser(prog="maskworks eval medical/anomaly-gate", description=
                                "The anomaly model's out-of-distribution gate on unusual inputs (the shipped CT DICOMs "
                                "and brain NIfTI, black, uniform, noise, 1 px, strip, rotated and inverted radiographs: "
                                "all should be refused) and on real chest radiographs (the shipped examples, "
                                "PneumoniaMNIST val, NIH valid: the share wrongly refused).")
    p.add_argument("--weights", help="MemMC-MAE weights (default: the shipped model)")
    p.add_argument("--json", help="also write the figures here (e.g. docs/medical/anomaly_gate.json)")
    a = p.parse_args(argv)
    print(summary(gate_figures(a.weights, a.json)))
    return 0
