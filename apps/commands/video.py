"""``maskworks predict video/videomae``, ``maskworks eval video/probe``, ``maskworks eval video/reconstruction``:
argparse over the video job (``domains/video/reconstruct.py``) and evaluations (``domains/video/evaluate.py``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

WEIGHTS_HELP = ("model.safetensors of a `maskworks train video/videomae-v2` run, or its run folder (default: the "
                "shipped small model, trained on 3 short clips; see data/weights/videomae-v2-small.json)")


def predict(argv: list[str]) -> int:
    from maskworks.apps.commands.common import add_batch_options, run_predict
    from maskworks.domains.video.reconstruct import SUFFIXES, VideoReconstructor

    p = argparse.ArgumentParser(prog="maskworks predict video/videomae", description=
                                "Mask one clip of each video (16 frames 4 apart, 112 px) as VideoMAE V2 pre-training "
                                "does (90 %% of tubes hidden from the encoder; the decoder's running cells drawn too) "
                                "and reconstruct the hidden tubes. Writes <name>.json (hidden-tube MSE of the model "
                                "and of copying the nearest visible patch, per 2-frame step), <name>_panel.png and an "
                                "animated <name>.gif.")
    add_batch_options(p, what=f"video files ({', '.join(SUFFIXES)}) or folders of them")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0; the same seed gives the "
                   "same masks, in the app too)")
    p.add_argument("--start", type=float, metavar="SECONDS", help="where the clip starts (default: the clip is centred "
                   "in the video)")
    a = p.parse_args(argv)
    job = VideoReconstructor.load(a.weights, a.device)

    def describe(item, r) -> str:
        j = r.to_json()["hidden_tube_mse"]
        return f"model {j['model']:.4f} vs nearest visible patch {j['nearest_visible_patch']:.4f}"

    return run_predict(a, SUFFIXES, lambda f: job.predict_file(f, seed=a.seed, start_s=a.start), "video/videomae",
                       describe=describe)


def _loaded(weights: str | None, device: str | None):
    from maskworks.domains.video.reconstruct import VideoReconstructor

    return VideoReconstructor.load(weights, device)


def _progress(desc: str, enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="clip")

    def update(i: int, n: int) -> None:
        bar.total = n
        bar.n = i
        bar.refresh()

    return update, bar.close


def probe(argv: list[str]) -> int:
    from maskworks.domains.video.evaluate import probe as run_probe
    from maskworks.domains.video.evaluate import video_set

    p = argparse.ArgumentParser(prog="maskworks eval video/probe", description=
                                "Leave-one-video-out classification of a labelled videos folder (videos/ + labels.csv "
                                "with file,label[,split]) from the frozen encoder's mean token, averaged over --clips "
                                "clips per video: nearest class centroid and a linear probe (logistic regression), next "
                                "to the same encoder randomly initialised (--random-seeds). Tiny sets give noisy "
                                "figures: the counts and the majority-class accuracy are printed with them.")
    p.add_argument("--data", required=True, help="folder with videos/ and labels.csv (at least 2 labels with 2 videos each)")
    p.add_argument("--split", help="use only this split's rows (default: every row)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--clips", type=int, default=4, help="clips per video, spread over it (default 4)")
    p.add_argument("--random-seeds", type=int, default=3, help="random initialisations to compare with (default 3)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    a = p.parse_args(argv)
    job = _loaded(a.weights, a.device)
    from maskworks.core.training.task import load_task

    ds = video_set(a.data, a.split, job.cfg, a.clips)
    res = run_probe(job.model, load_task(job.cfg).build_model, ds, job.device, a.random_seeds)
    res |= {"data": str(a.data), "split": a.split, "weights": job.weights}
    print(f"{res['num_videos']} videos, {dict(res['class_counts'])}; majority-class accuracy {res['majority_acc']:.3f}")
    for kind in ("pretrained", "random_init_mean"):
        r = res[kind]
        print(f"{kind:<17} nearest centroid {r['nearest_centroid_acc']:.3f} (balanced {r['nearest_centroid_balanced_acc']:.3f})"
              f"  linear probe {r['linear_probe_acc']:.3f} (balanced {r['linear_probe_balanced_acc']:.3f})")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def reconstruction(argv: list[str]) -> int:
    from maskworks.domains.video.evaluate import reconstruction_error, video_set

    p = argparse.ArgumentParser(prog="maskworks eval video/reconstruction", description=
                                "Mean squared error (pixels in [0, 1]) of the hidden tubes of --clips clips per video "
                                "in a videos folder, each under --masks random tube masks (90 %%), for the model, for "
                                "copying the nearest visible patch and for the mean of the visible patches (same step), "
                                "under the same masks. Use videos the model was not "
                                "trained on (e.g. --split test of the shipped set, or any other folder).")
    p.add_argument("--data", required=True, help="folder with videos/ (labels.csv optional; shipped:video/kinetics_ucf "
                   "is the shipped set)")
    p.add_argument("--split", help="use only this split's rows, e.g. test (default: every video)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--clips", type=int, default=4, help="clips per video, spread over it (default 4)")
    p.add_argument("--masks", type=int, default=4, help="random masks per clip (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the masks (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    a = p.parse_args(argv)
    job = _loaded(a.weights, a.device)
    ds = video_set(a.data, a.split, job.cfg, a.clips)
    update, close = _progress("reconstruction", a.progress)
    res = reconstruction_error(job.model, ds, job.device, a.masks, a.seed, update)
    close()
    res |= {"data": str(a.data), "split": a.split, "weights": job.weights}
    for name, r in [*res["per_video"].items(), ("all", res)]:
        print(f"{name:<32} model {r['model_mse']:.4f} | nearest visible patch {r['nearest_visible_mse']:.4f} (model "
              f"better in {r['model_better_fraction']:.0%}) | mean of visible patches {r['visible_mean_mse']:.4f} "
              f"(model better in {r['model_better_than_mean_fraction']:.0%}) | {r['samples']} masked clips")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


def bench_videomae_step(argv: list[str] | None = None) -> int:
    import argparse
    import json

    import torch
    from maskworks.core.bench import DTYPE_CHOICES
    from maskworks.domains.video.bench import CONFIGS, bench_config

    p = argparse.ArgumentParser(prog="maskworks bench videomae-step", description=
                                "Our VideoMAE V2 training step (dual masking: tube 90 %% for the encoder, running cells "
                                "50 %% for the decoder; forward, backward, AdamW) against Hugging Face "
                                "VideoMAEForPreTraining (tube mask only; its decoder reconstructs every hidden token) with "
                                "the same weights, clips, tube mask, batch and precision, alternating in one process; "
                                "median of --steps timed steps after --warmup. Prints clips/s of each, their ratio "
                                "(ours / theirs) and both models' FLOPs per step.")
    p.add_argument("--configs", default="a", help="comma-separated configurations: a (ViT-S/16, decoder 192x4, 16x112, "
                   "batch 4; CPU), b (ViT-B/16, decoder 384x4, 16x224, batch 2; meant for a GPU), tiny (tests). "
                   "Default a")
    p.add_argument("--steps", type=int, default=10, help="timed steps of each model, alternating; the median is reported "
                   "(default 10; 20 or more for figures you quote)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first (default 3)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    p.add_argument("--dtype", choices=(*DTYPE_CHOICES, "both"),
                   help="fp32, bf16 (autocast) or both; default: both on a GPU, fp32 on a CPU")
    p.add_argument("--decoder-mask-ratio", type=float, default=0.5,
                   help="our decoder's running-cell mask ratio (default 0.5, VideoMAE V2's; 0 = plain VideoMAE, "
                   "which should then run at about Hugging Face's speed)")
    p.add_argument("--json", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch")
    chosen = a.dtype or ("both" if dev.startswith("cuda") else "fp32")
    dtypes = DTYPE_CHOICES if chosen == "both" else (chosen,)
    results = []
    for name in a.configs.split(","):
        name = name.strip()
        if name not in CONFIGS:
            p.error(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
        for dtype in dtypes:
            r = bench_config(name, a.steps, a.warmup, dtype, dev, decoder_mask_ratio=a.decoder_mask_ratio)
            results.append(r)
            t = r["tokens"]
            print(f"[{r['config']}] {r['label']} | {r['device']} {r['dtype']} | maskworks {r['maskworks_clips_s']:.2f} clips/s, "
                  f"Hugging Face {r['huggingface_clips_s']:.2f} clips/s, ratio {r['ratio']:.2f}x | FLOPs per step "
                  f"(forward+backward): maskworks {r['maskworks_gflop_step']:.1f} G, Hugging Face "
                  f"{r['huggingface_gflop_step']:.1f} G, ratio {r['flop_ratio']:.2f}x | decoder tokens per clip "
                  f"{t['maskworks_decoder']} vs {t['huggingface_decoder']} (encoder {t['encoder']})", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0
