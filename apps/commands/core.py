"""The core's command-line entries: image MAE evaluation and prediction, the MAE step benchmark."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from maskworks.apps.commands.common import add_batch_options, run_predict


def bench_mae_step(argv: list[str] | None = None) -> int:

    from maskworks.core.bench import COMPILE_CHOICES, DTYPE_CHOICES, bench_config

    p = argparse.ArgumentParser(prog="maskworks bench mae-step", description=
                                "Our MAE training step (forward, backward, AdamW) vs Hugging Face ViTMAEForPreTraining "
                                "with the same configuration, alternating in one process; median of --steps timed steps "
                                "after --warmup. Prints images/s of each and the ratio (ours / theirs).")
    p.add_argument("--configs", default="a,b", help="which configurations: a (ViT-tiny-like, batch 16), b (ViT-B, batch 8)")
    p.add_argument("--steps", type=int, default=10, help="timed steps of each model, alternating; the median is "
                   "reported (default 10; 20 or more for figures you quote)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first (default 3)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--compile", nargs="?", const="both", default="none", choices=COMPILE_CHOICES,
                   help="torch.compile the forward passes (inductor) of both models (--compile or --compile both: "
                   "like for like) or of ours only (--compile maskworks: our trainer compiled against Hugging Face "
                   "as shipped). The first steps compile, about a minute at (a) on CPU, and are not timed")
    p.add_argument("--dtype", choices=(*DTYPE_CHOICES, "both"),
                   help="fp32, bf16 (autocast) or both; default: both on a GPU, fp32 on a CPU (bf16 on a CPU is "
                   "worth measuring only where it has bf16 instructions, e.g. AVX-512 BF16 or AMX)")
    p.add_argument("--json", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    chosen = a.dtype or ("both" if dev.startswith("cuda") else "fp32")
    dtypes = DTYPE_CHOICES if chosen == "both" else (chosen,)
    results = []
    for name in a.configs.split(","):
        for dtype in dtypes:
            r = bench_config(name.strip(), a.steps, a.warmup, dtype, dev, compile=a.compile)
            results.append(r)
            compiled = {"none": "", "both": " compiled", "maskworks": " (maskworks compiled, Hugging Face eager)"}[r["compiled"]]
            print(f"[{r['config']}] {r['label']} | {r['device']} {r['dtype']}{compiled} | maskworks {r['maskworks_img_s']:.1f} img/s, "
                  f"Hugging Face {r['huggingface_img_s']:.1f} img/s, ratio {r['ratio']:.2f}x | FLOPs per step (forward+backward): "
                  f"maskworks {r['maskworks_gflop_step']:.1f} G, Hugging Face {r['huggingface_gflop_step']:.1f} G, "
                  f"ratio {r['flop_ratio']:.2f}x", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def eval_image_mae(argv: list[str]) -> int:
    """``maskworks eval image-mae``: masked-patch MSE on a data folder against two training-free in-painters."""
    p = argparse.ArgumentParser(prog="maskworks eval image-mae", description=
                                "Masked-patch reconstruction error of a trained image MAE on a data folder "
                                "(images/ + labels.csv), next to two training-free baselines on the same masks.")
    p.add_argument("--weights", help="model.safetensors or its run folder (default: runs/image-mae-cxr, else the shipped model)")
    p.add_argument("--data", help="data folder (default: the one the model was trained on)")
    p.add_argument("--split", help="split to evaluate (default: the recipe's validation split)")
    p.add_argument("--repeats", type=int, default=3, help="masks drawn per image (seeded)")
    p.add_argument("--json", help="write the results here too")
    a = p.parse_args(argv)
    from maskworks.core.datasets import LabelledImageFolder
    from maskworks.core.inpaint import baseline_predictions
    from maskworks.core.io import resolve_shipped
    from maskworks.core.losses import masked_mse
    from maskworks.core.masking import gather_tokens
    from maskworks.core.tasks.reconstruct import default_weights
    from maskworks.core.training.task import load_trained

    task, model = load_trained(a.weights or default_weights())
    d = task.cfg["data"]
    root = Path(a.data) if a.data else resolve_shipped(d["root"])
    split = a.split if a.split is not None else (d.get("val_split") if not a.data else None)
    ds = LabelledImageFolder(root, split=split, size=int(d["size"]), channels=int(d.get("channels", 1)))
    g = torch.Generator().manual_seed(0)
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for _ in range(a.repeats):
            for i in range(0, len(ds), 64):
                x = ds.images[i:i + 64]
                mask = model.make_mask(x.shape[0], g)
                patches = model.patchify(x)
                target = gather_tokens(patches, mask.ids_mask)
                preds = {"maskworks MAE": model(x, mask).pred}
                if model.norm_pix_loss:  # compare in pixel space
                    t = target
                    preds["maskworks MAE"] = preds["maskworks MAE"] * (t.var(-1, keepdim=True) + 1e-6) ** 0.5 + t.mean(-1, keepdim=True)
                preds |= baseline_predictions(patches, mask, model.grid)
                for k, v in preds.items():
                    sums[k] = sums.get(k, 0.0) + float(masked_mse(v, target)) * x.shape[0]
                count += x.shape[0]
    res = {k: v / count for k, v in sums.items()}
    out = {"data": str(root), "split": split, "images": len(ds), "repeats": a.repeats,
           "mask_ratio": model.masking.ratio, "masked_patch_mse": res}
    print(f"{len(ds)} images from {root} (split {split}), {a.repeats} masks each at {model.masking.ratio:.0%}:")
    print("| predictor | masked-patch MSE |\n|---|---|")
    for k, v in sorted(res.items(), key=lambda kv: kv[1]):
        print(f"| {k} | {v:.5f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


def predict_image_mae(argv: list[str]) -> int:
    """``maskworks predict image-mae FILES_OR_FOLDERS --out DIR``."""
    from maskworks.core.tasks.reconstruct import IMAGE_SUFFIXES, ImageReconstructor

    p = argparse.ArgumentParser(prog="maskworks predict image-mae", description=
                                "Mask each image with a seeded random mask, reconstruct it with a trained image MAE, and "
                                "write <name>_reconstruction.png and <name>.json (masked-patch MSE of the model and of "
                                "two training-free in-painters on the same mask).")
    add_batch_options(p, "PNG/JPEG images or folders of them")
    p.add_argument("--weights", help="model.safetensors or its run folder (default: runs/image-mae-cxr, else the shipped model)")
    p.add_argument("--ratio", type=float, help="mask ratio (default: the model's own, 0.75 for the shipped one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random mask (default 0; the same seed, the same mask)")
    a = p.parse_args(argv)
    rec = ImageReconstructor.load(a.weights, a.device)
    return run_predict(a, IMAGE_SUFFIXES, lambda f: rec.predict_file(f, a.ratio, a.seed), "image-mae",
                       describe=lambda it, r: f"{it.path}: masked-patch MSE {r.mse['maskworks MAE']:.4f}")


def bench_serve(argv: list[str]) -> int:
    """``maskworks bench serve``: concurrent clients against the demo's API endpoints."""
    from maskworks.apps.serve_bench import bench_serve as run

    p = argparse.ArgumentParser(prog="maskworks bench serve", description=
                                "Start the demo on a free loopback port (or use --url), then drive N concurrent "
                                "gradio_client clients, each sending R requests with a shipped example, against each "
                                "job's API endpoint (/predict_<name>). Prints errors, latency p50/p95/max, throughput "
                                "and the server's peak memory against its idle memory per endpoint. Stops by itself.")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients per endpoint (default 16)")
    p.add_argument("--requests", type=int, default=5, help="requests per client (default 5)")
    p.add_argument("--apis", default="", help="endpoints by name, comma separated (default: every /predict_* endpoint)")
    p.add_argument("--url", help="a running demo to measure instead of starting one (memory is then not measured)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the started demo (default 2)")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH",
                   help="the input to send to /predict_NAME (default: a shipped example; repeatable)")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args(argv)
    files = {}
    for spec in a.file:
        name, sep, path = spec.partition("=")
        if not sep:
            p.error(f"--file {spec!r}: expected NAME=PATH")
        files[name] = Path(path)
    res = run([n for n in a.apis.split(",") if n], a.clients, a.requests, a.url, a.threads, files)
    print(f"{res['url']} on {res['device']}, {res['server_threads']} torch threads")
    print("| endpoint | clients x requests | errors | p50 s | p95 s | max s | req/s | peak / idle memory |")
    print("|---|---|---|---|---|---|---|---|")
    for r in res["results"]:
        mem = f"{r['peak_mb']:.0f} / {r['idle_mb']:.0f} MB ({r['peak_over_idle']:.2f}x)" if "peak_mb" in r else "-"
        print(f"| {r['endpoint']} | {r['clients']} x {r['requests'] // r['clients']} | {r['errors']} | {r['p50_s']:.2f} | "
              f"{r['p95_s']:.2f} | {r['max_s']:.2f} | {r['throughput_per_s']:.1f} | {mem} |")
        for e in r["error_examples"]:
            print(f"    error: {e}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 1 if any(r["errors"] for r in res["results"]) else 0
