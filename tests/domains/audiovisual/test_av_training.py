"""The recipes' smoke presets train, a fine-tuning run starts from a pre-training run's weights, and the
emotion job loads what they wrote."""
from __future__ import annotations

import json

import pytest
import torch

from maskworks.apps.cli import main

pytestmark = pytest.mark.slow


def test_pretrain_then_finetune_smoke_runs_and_the_job_loads_them(tmp_path, capsys):
    pre, fin = tmp_path / "pre", tmp_path / "fin"
    assert main(["train", "audiovisual/hicmae", "--preset", "smoke", "--out", str(pre), "--no-progress"]) == 0
    rec = json.loads((pre / "reconstruction.json").read_text())
    assert set(rec["mean"]) >= {"video_mse", "video_nearest_visible_mse", "audio_mse", "audio_nearest_visible_mse"}
    assert (pre / "reconstructions").is_dir()
    assert main(["train", "audiovisual/emotion", "--preset", "smoke", "--out", str(fin), "--no-progress",
                 "--set", f"init.weights={pre / 'model.safetensors'}"]) == 0
    fit = json.loads((fin / "fit.json").read_text())
    assert fit["classes"] == ["neutral", "happy", "sad", "fearful", "disgust", "surprised"]
    from maskworks.core.training.checkpoint import load_weights
    from maskworks.domains.audiovisual.emotion import EmotionRecognizer

    job = EmotionRecognizer.load(fin, pre / "model.safetensors", "cpu")
    # the fine-tuning started from the pre-trained backbone: its decoders (never trained here) are unchanged
    a, b = load_weights(pre / "model.safetensors"), load_weights(fin / "model.safetensors")
    assert torch.equal(a["video.decoder_pred.weight"], b["backbone.video.decoder_pred.weight"])
    assert not torch.equal(a["audio.blocks.0.attn.qkv.weight"], b["backbone.audio.blocks.0.attn.qkv.weight"])
    assert job.classes == fit["classes"] and job.weights["classifier"] == str(fin)
    # a mismatched pre-trained model is refused with the sizes it needs
    assert main(["train", "audiovisual/emotion", "--out", str(tmp_path / "bad"), "--no-progress",
                 "--set", f"init.weights={pre / 'model.safetensors'}", "--set", "trainer.max_steps=1"]) == 2
    assert "does not fit this model's sizes" in capsys.readouterr().err
