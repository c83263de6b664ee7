"""Emotion fine-tuning (recipe ``audiovisual/emotion``): a :class:`HiCMAEClassifier` whose backbone starts
from a pre-trained HiCMAE (``init.weights``) or from scratch (``init.weights: null``).

Each step reads 2.56 s windows, flips the faces at random, and sums three cross-entropies (label
smoothing 0.1, as HiCMAE): the joint head on samples with a face and sound, and each single-modality
head on the samples that have that modality, so the model also answers for audio-only or
face-only input. HiCMAE's mixup and layer-wise learning-rate decay are left out (too few clips
here for either to matter).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from maskworks.core.io import InputError, resolve_shipped
from maskworks.core.training.task import StepContext, Task
from maskworks.domains.audiovisual.data import AVWindows, class_order, read_av_folder
from maskworks.domains.audiovisual.features import normalize_video
from maskworks.domains.audiovisual.hicmae import HiCMAEClassifier
from maskworks.domains.audiovisual.pretrain import hflip, hicmae_kwargs

SMOOTHING = 0.1


def load_backbone(model: HiCMAEClassifier, weights: str | Path) -> dict:
    """Load a ``maskworks train audiovisual/hicmae`` run's weights into ``model.backbone``; returns their
    recipe. The sizes must match (the error says which differ)."""
    from maskworks.core.training.checkpoint import load_weights, weights_metadata

    path = resolve_shipped(weights)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise InputError(path, "no such pre-trained weights file",
                         "give the model.safetensors of a `maskworks train audiovisual/hicmae` run, or null for random init")
    meta = weights_metadata(path)
    if not str(meta.get("task", "")).endswith(":HiCMAETask"):
        raise InputError(path, f"holds a {meta.get('task', 'unknown')} model, not a pre-trained HiCMAE",
                         "give the model.safetensors of a `maskworks train audiovisual/hicmae` run")
    want = {k: v for k, v in hicmae_kwargs(meta).items()}
    sd = load_weights(path)
    try:
        model.backbone.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InputError(path, f"does not fit this model's sizes ({str(e).splitlines()[0][:200]})",
                         f"use the pre-trained run's model settings: {json.dumps(meta.get('model', {}))}") from None
    return meta | {"resolved_model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in want.items()}}


def classification_loss(out, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy of the joint head (samples with both modalities) plus each single-modality head
    (samples with that modality); unlabelled samples (-1) are ignored."""
    head = out.head
    logs: dict[str, torch.Tensor] = {}
    total = out.logits.new_zeros(())
    both = torch.tensor([u == "audio+video" for u in out.used], device=labels.device)
    has_a = torch.tensor(["audio" in u for u in out.used], device=labels.device)
    has_v = torch.tensor(["video" in u for u in out.used], device=labels.device)
    for name, logits, sel in (("av", head.logits_av, both), ("audio", head.logits_audio, has_a),
                              ("video", head.logits_video, has_v)):
        sel = sel & (labels >= 0)
        if logits is None or not bool(sel.any()):
            continue
        loss = F.cross_entropy(logits[sel].float(), labels[sel], label_smoothing=SMOOTHING)
        logs[f"loss_{name}"] = loss.detach()
        total = total + loss
    logs["loss"] = total
    return logs


class EmotionTask(Task):
    """``data``: root, split, val_split, windows, classes (``auto``: every emotion in the labels, RAVDESS
    order); ``init``: weights (pre-trained HiCMAE, or null), freeze_backbone; ``model``: the backbone's
    sizes (those of the pre-trained run)."""

    SECTIONS = {"init": {"weights": None, "freeze_backbone": False}}

    def classes(self) -> list[str]:
        d = self.cfg["data"]
        if d.get("classes") in (None, "auto", []):
            d["classes"] = class_order([e.label for e in read_av_folder(d["root"], d.get("split") or None)])
        return list(d["classes"])

    def build_model(self) -> HiCMAEClassifier:
        model = HiCMAEClassifier(len(self.classes()), **hicmae_kwargs(self.cfg))
        init = self.section("init").get("weights")
        if init:
            load_backbone(model, init)
        if self.section("init").get("freeze_backbone"):
            model.backbone.requires_grad_(False)
        return model

    def model_config(self) -> dict:
        """The recipe without ``init`` (the trained weights replace it; rebuilding must not need the
        pre-trained file), and where the backbone came from."""
        return super().model_config() | {"init_from": self.section("init").get("weights")}

    def build_dataset(self, split: str = "train") -> AVWindows:
        d = self.cfg["data"]
        name = d.get("split") if split == "train" else d.get("val_split")
        if split != "train" and not name:
            raise ValueError("no val_split")
        return AVWindows(d["root"], split=name or None, windows=int(d.get("windows", 4)), classes=self.classes(),
                         face_crop=str(d.get("face_crop", "none")))

    def training_step(self, model, batch, ctx: StepContext):
        video = batch["video"]
        if self.cfg.get("augment", {}).get("flip", True):
            video = hflip(video, (ctx.rand() < 0.5).to(video.device))
        out = model(normalize_video(video), batch["audio"], batch["has_video"], batch["has_audio"])
        return classification_loss(out, batch["label"])

    @torch.no_grad()
    def on_fit_end(self, model: HiCMAEClassifier, run_dir: Path) -> dict:
        """Accuracy per head on the val split (else on the training clips, labelled as such) in ``fit.json``."""
        try:
            ds, which = self.build_dataset("val"), "val"
        except Exception:  # noqa: BLE001
            ds, which = self.build_dataset("train"), "train (seen in training)"
        dev = next(model.parameters()).device
        correct, total = {}, {}
        for i in range(len(ds)):
            it = ds[i]
            out = model(normalize_video(it["video"][None].to(dev)), it["audio"][None].to(dev),
                        it["has_video"][None].to(dev), it["has_audio"][None].to(dev))
            y = int(it["label"])
            for name, lg in (("prediction", out.logits), ("audio+video", out.head.logits_av),
                             ("audio", out.head.logits_audio), ("video", out.head.logits_video)):
                if lg is not None and y >= 0:
                    correct[name] = correct.get(name, 0) + int(int(lg.argmax()) == y)
                    total[name] = total.get(name, 0) + 1
        res = {"split": which, "windows": len(ds), "classes": ds.classes,
               "window_accuracy": {k: correct[k] / total[k] for k in total}}
        (Path(run_dir) / "fit.json").write_text(json.dumps(res, indent=2))
        return {"eval_split": which, **{f"acc_{k}": round(v, 3) for k, v in res["window_accuracy"].items()}}
