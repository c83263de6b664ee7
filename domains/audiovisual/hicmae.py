"""HiCMAE (Sun et al., "Hierarchical Contrastive Masked Autoencoder for Self-Supervised Audio-Visual
Emotion Recognition", 2024) on the core MAE.

Two core :class:`~maskworks.core.mae.MaskedAutoencoder` s, one per modality:

* **audio**: a ViT over the ``[1, 256, 128]`` (time x mel) spectrogram in 16 x 16 patches
  (16 x 8 = 128 tokens), 80 % hidden by random masking (the core ``RandomMasking``);
* **video**: a ViT over ``[3, 16, 160, 160]`` face clips in 2 x 16 x 16 tubes (8 x 10 x 10 = 800 tokens),
  90 % hidden by tube masking (the core ``TubeMasking``: the same places in every frame).

Their visible tokens meet in a **cross-modal fusion encoder** (2 layers; in each, video tokens
cross-attend to audio tokens and audio tokens to video tokens, then self-attend; HiCMAE's CSBlock).
Each modality's **decoder** fills the hidden places with mask tokens and rebuilds them from the fused
tokens; its first block only self-attends, the next ones also cross-attend to the encoder's
intermediate levels, the **deepest level first** (``levels=(3, 6, 9)``: block 2 of the decoder reads
encoder block 9, block 3 reads 6, block 4 reads 3; the *hierarchical skip connections*). The levels
are also tied across modalities by **hierarchical InfoNCE**: at each level, the mean-pooled video and
audio tokens of the same clip are positives and the batch's other clips negatives (temperature 0.07,
the sum over levels weighted 0.0025). Reconstruction targets are per-patch normalised (per colour
channel for video, as VideoMAE), optionally with the second frame of each tube replaced by its
difference to the first (``frame_diff``). Levels are 0-based block indices, as in the reference code,
where ``(3, 6, 9)`` on a depth-10 encoder ends at its last block; the levels are normalised with the
encoder's final norm before use, as there.

Fine-tuning (:class:`HiCMAEClassifier`) sees whole inputs: each modality's **softmax-weighted sum
of all its encoder layers** (mean-pooled) and the **fusion encoder's** mean-pooled outputs are
concatenated, layer-normalised and classified. Beyond the paper, single-modality heads are trained
beside the joint one, so a clip without a face or without sound is classified from what it has,
through exactly the path a single-modality input takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskworks.core.layers import Attention, Block, CrossAttention, Mlp
from maskworks.core.losses import info_nce, normalize_patches
from maskworks.core.mae import MaskedAutoencoder
from maskworks.core.masking import Mask, RandomMasking, TubeMasking, gather_tokens, no_mask

NormLayer = Callable[[int], nn.Module]
LN = partial(nn.LayerNorm, eps=1e-6)

PAPER_BASE = dict(video_dim=512, video_depth=10, video_heads=8, audio_dim=512, audio_depth=10, audio_heads=8,
                  fusion_depth=2, fusion_heads=8, decoder_dim=384, decoder_heads=6, levels=(3, 6, 9))
"""HiCMAE-Base's sizes (``pretrain_hicmae_dim512_patch16_160_a256``); the small model shipped here is
much narrower and shallower (see the recipe) so that it trains on a CPU."""


# -- layers ---------------------------------------------------------------------------------------
class CrossSelfBlock(nn.Module):
    """HiCMAE's CSBlock: ``x + cross(norm(x), norm(context))``, then ``x + attn(norm(x))``, then
    ``x + mlp(norm(x))``. Built from the core's attention layers; the core ``Block`` cross-attends
    *after* self-attention, HiCMAE before. Same call signature as the core ``Block``, so the core
    MAE's decoder loop runs it (``query_ids`` restricts the outputs to the tokens it predicts)."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None, mlp_ratio: float = 4.0,
                 norm_layer: NormLayer = LN) -> None:
        super().__init__()
        self.norm_cross = norm_layer(dim)
        self.norm_context = norm_layer(context_dim or dim)
        self.cross = CrossAttention(dim, num_heads, context_dim)
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor | None = None, memory: Tensor | None = None,
                query_ids: Tensor | None = None) -> Tensor:
        if context is None:
            raise ValueError("a cross-attending block needs context=")
        x = x + self.cross(self.norm_cross(x), self.norm_context(context))
        h = self.attn(self.norm1(x), query_ids=query_ids)
        if query_ids is not None:
            x = gather_tokens(x, query_ids)
        x = x + h
        return x + self.mlp(self.norm2(x))


class FusionEncoder(nn.Module):
    """Cross-modal fusion: in every layer both streams cross-attend to the other's tokens of the
    previous layer (simultaneous update), then self-attend; each stream ends with its own norm."""

    def __init__(self, video_dim: int, audio_dim: int, depth: int = 2, num_heads: int = 4, mlp_ratio: float = 4.0,
                 norm_layer: NormLayer = LN) -> None:
        super().__init__()
        self.video_blocks = nn.ModuleList([CrossSelfBlock(video_dim, num_heads, audio_dim, mlp_ratio, norm_layer)
                                           for _ in range(depth)])
        self.audio_blocks = nn.ModuleList([CrossSelfBlock(audio_dim, num_heads, video_dim, mlp_ratio, norm_layer)
                                           for _ in range(depth)])
        self.video_norm = norm_layer(video_dim)
        self.audio_norm = norm_layer(audio_dim)

    def forward(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        for bv, ba in zip(self.video_blocks, self.audio_blocks):
            video, audio = bv(video, context=audio), ba(audio, context=video)
        return self.video_norm(video), self.audio_norm(audio)


def encoder_levels(mae: MaskedAutoencoder, imgs: Tensor, mask: Mask, indices: Sequence[int] | None = None,
                   patches: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
    """``(latent, levels)``: the encoder's final normed latent and the raw outputs of the blocks in
    ``indices`` (all blocks when None), each ``[B, K, D]`` over the visible tokens.

    The core MAE's ``forward_intermediates`` when it has one (so no one rewrites the encoder loop);
    otherwise the same loop over ``embed_visible`` and the blocks."""
    if hasattr(mae, "forward_intermediates"):
        return mae.forward_intermediates(imgs, mask, patches, indices=indices)
    x = mae.embed_visible(mae.patchify(imgs) if patches is None else patches, mask)
    depth = len(mae.blocks)
    wanted = set(range(depth)) if indices is None else {i % depth for i in indices}
    levels = []
    for i, blk in enumerate(mae.blocks):
        x = blk(x)
        if i in wanted:
            levels.append(x)
    return mae.norm(x), levels


def normalize_video_patches(patches: Tensor, channels: int = 3) -> Tensor:
    """VideoMAE's and HiCMAE's target: each tube patch to zero mean, unit std per colour channel over
    its ``t * p * p`` pixels (``[B, N, t*p*p*C]`` in the core's (t, p, p, C) order)."""
    b, n, d = patches.shape
    x = patches.reshape(b, n, d // channels, channels).transpose(-1, -2)  # [B, N, C, t*p*p]
    return normalize_patches(x).transpose(-1, -2).reshape(b, n, d)


def frame_difference(patches: Tensor, tubelet: int = 2) -> Tensor:
    """HiCMAE's optional target: in every tube, frames after the first become their difference to the
    first frame (``[B, N, t*p*p*C]``, t-major)."""
    b, n, d = patches.shape
    x = patches.reshape(b, n, tubelet, d // tubelet)
    out = torch.cat([x[:, :, :1], x[:, :, 1:] - x[:, :, :1]], dim=2)
    return out.reshape(b, n, d)


# -- pre-training ---------------------------------------------------------------------------------
@dataclass
class EncoderOutput:
    video: Tensor  # [B, Kv, Dv] normed latent over visible tubes
    audio: Tensor  # [B, Ka, Da]
    video_levels: list[Tensor]  # at self.levels, normed with the encoder's final norm
    audio_levels: list[Tensor]


@dataclass
class HiCMAEOutput:
    loss: Tensor
    loss_video: Tensor
    loss_audio: Tensor
    loss_contrastive: Tensor  # the hierarchical InfoNCE, before its weight
    video_pred: Tensor  # [B, Mv, t*p*p*3] predictions of the hidden tubes, in video_mask.ids_mask order
    audio_pred: Tensor  # [B, Ma, p*p]
    video_mask: Mask
    audio_mask: Mask


class HiCMAE(nn.Module):
    """The pre-training model. ``video``: ImageNet-normalised ``[B, 3, T, H, W]`` face clips;
    ``audio``: normalised ``[B, 1, 256, 128]`` filter banks (time x mel); ``video_target``: the same
    clips in ``[0, 1]`` (what is reconstructed)."""

    def __init__(self, *, num_frames: int = 16, image_size: int = 160, tubelet: int = 2, patch: int = 16,
                 audio_frames: int = 256, mel_bins: int = 128, audio_patch: int = 16,
                 video_dim: int = 384, video_depth: int = 10, video_heads: int = 6,
                 audio_dim: int = 384, audio_depth: int = 10, audio_heads: int = 6,
                 fusion_depth: int = 2, fusion_heads: int = 6, decoder_dim: int = 192, decoder_heads: int = 3,
                 levels: Sequence[int] = (3, 6, 9), mlp_ratio: float = 4.0, video_mask_ratio: float = 0.9,
                 audio_mask_ratio: float = 0.8, temperature: float = 0.07, contrastive_weight: float = 0.0025,
                 norm_pix_loss: bool = True, frame_diff: bool = False) -> None:
        super().__init__()
        self.levels = tuple(int(i) for i in levels)
        if video_dim != audio_dim:
            raise ValueError(f"the InfoNCE compares video and audio tokens: video_dim ({video_dim}) and audio_dim "
                             f"({audio_dim}) must be equal")
        for name, depth in (("video", video_depth), ("audio", audio_depth)):
            if not self.levels or any(not 0 <= i < depth for i in self.levels) or list(self.levels) != sorted(set(self.levels)):
                raise ValueError(f"levels {self.levels} must be increasing 0-based block indices of the {depth}-block "
                                 f"{name} encoder")
        self.temperature, self.contrastive_weight = float(temperature), float(contrastive_weight)
        self.frame_diff, self.tubelet = bool(frame_diff), int(tubelet)
        decoder_depth = len(self.levels) + 1
        self.video = MaskedAutoencoder(input_size=(num_frames, image_size, image_size), patch_size=(tubelet, patch, patch),
                                       in_chans=3, embed_dim=video_dim, depth=video_depth, num_heads=video_heads,
                                       decoder_embed_dim=decoder_dim, decoder_depth=decoder_depth,
                                       decoder_num_heads=decoder_heads, mlp_ratio=mlp_ratio, norm_layer=LN,
                                       norm_pix_loss=norm_pix_loss, masking=TubeMasking(video_mask_ratio), cls_token=False)
        self.audio = MaskedAutoencoder(input_size=(audio_frames, mel_bins), patch_size=audio_patch, in_chans=1,
                                       embed_dim=audio_dim, depth=audio_depth, num_heads=audio_heads,
                                       decoder_embed_dim=decoder_dim, decoder_depth=decoder_depth,
                                       decoder_num_heads=decoder_heads, mlp_ratio=mlp_ratio, norm_layer=LN,
                                       norm_pix_loss=norm_pix_loss, masking=RandomMasking(audio_mask_ratio), cls_token=False)
        for mae in (self.video, self.audio):  # decoder: one self-attention block, then one cross-attending block per level
            mae.decoder_blocks = nn.ModuleList(
                [Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True, norm_layer=LN)]
                + [CrossSelfBlock(decoder_dim, decoder_heads, None, mlp_ratio, LN) for _ in self.levels])
        self.fusion = FusionEncoder(video_dim, audio_dim, fusion_depth, fusion_heads, mlp_ratio, LN)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's (and HiCMAE's) init everywhere: xavier-uniform linears, unit LayerNorms, N(0, 0.02) mask tokens."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for mae in (self.video, self.audio):
            nn.init.normal_(mae.mask_token, std=0.02)

    # -- masks ------------------------------------------------------------------------------------
    def make_masks(self, batch_size: int, generator: torch.Generator | None = None, device=None) -> tuple[Mask, Mask]:
        """Tube mask (90 %) for the video, random mask (80 %) for the audio."""
        return (self.video.make_mask(batch_size, generator, device), self.audio.make_mask(batch_size, generator, device))

    # -- the method -------------------------------------------------------------------------------
    def forward_encoder(self, video: Tensor, audio: Tensor, video_mask: Mask, audio_mask: Mask,
                        video_patches: Tensor | None = None, audio_patches: Tensor | None = None) -> EncoderOutput:
        """Both modality encoders over their visible tokens, with their levels normed by the final norm."""
        v, v_levels = encoder_levels(self.video, video, video_mask, self.levels, video_patches)
        a, a_levels = encoder_levels(self.audio, audio, audio_mask, self.levels, audio_patches)
        return EncoderOutput(v, a, [self.video.norm(x) for x in v_levels], [self.audio.norm(x) for x in a_levels])

    def contrastive_loss(self, video_levels: Sequence[Tensor], audio_levels: Sequence[Tensor]) -> Tensor:
        """Hierarchical InfoNCE: the sum over levels of symmetric InfoNCE between mean-pooled video and
        audio tokens (the same clip is the positive)."""
        return sum(info_nce(v.mean(dim=1), a.mean(dim=1), self.temperature) for v, a in zip(video_levels, audio_levels))

    @staticmethod
    def skips(mae: MaskedAutoencoder, levels: Sequence[Tensor], mask: Mask) -> list[Tensor | None]:
        """Decoder contexts: none for the first block, then the levels deepest first, each projected
        like the latent (``decoder_embed``) and given the decoder's positions of its visible tokens."""
        pos = mae.decoder_pos_embed.to(levels[0].dtype).expand(levels[0].shape[0], -1, -1)
        pos = gather_tokens(pos, mask.ids_keep) if mask.num_masked else pos
        return [None] + [mae.decoder_embed(x) + pos for x in reversed(levels)]

    def forward_decoder(self, fused_video: Tensor, fused_audio: Tensor, enc: EncoderOutput, video_mask: Mask,
                        audio_mask: Mask) -> tuple[Tensor, Tensor]:
        """Predictions of the hidden tubes and spectrogram patches (all tokens when nothing is hidden)."""
        v = self.video.forward_decoder(fused_video, video_mask, self.skips(self.video, enc.video_levels, video_mask))
        a = self.audio.forward_decoder(fused_audio, audio_mask, self.skips(self.audio, enc.audio_levels, audio_mask))
        return v, a

    def video_targets(self, target: Tensor, mask: Mask, patches: Tensor | None = None) -> Tensor:
        """``[B, Mv, P]`` at ``mask.ids_mask`` (every tube when nothing is hidden): ``[0, 1]`` pixels,
        normalised per patch and channel with ``norm_pix_loss``, frame differences with ``frame_diff``."""
        t = self.video.patchify(target) if patches is None else patches
        if mask.num_masked:
            t = gather_tokens(t, mask.ids_mask)
        if self.video.norm_pix_loss:
            t = normalize_video_patches(t, 3)
        return frame_difference(t, self.tubelet) if self.frame_diff else t

    def audio_targets(self, audio: Tensor, mask: Mask, patches: Tensor | None = None) -> Tensor:
        t = self.audio.patchify(audio) if patches is None else patches
        if mask.num_masked:
            t = gather_tokens(t, mask.ids_mask)
        return normalize_patches(t) if self.audio.norm_pix_loss else t

    def forward_loss(self, video_target: Tensor, audio: Tensor, video_pred: Tensor, audio_pred: Tensor,
                     video_mask: Mask, audio_mask: Mask, contrastive: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(total, video MSE, audio MSE)``: reconstruction of hidden tokens only, plus the weighted InfoNCE."""
        lv = F.mse_loss(video_pred.float(), self.video_targets(video_target, video_mask).float())
        la = F.mse_loss(audio_pred.float(), self.audio_targets(audio, audio_mask).float())
        return lv + la + self.contrastive_weight * contrastive, lv, la

    def forward(self, video: Tensor, audio: Tensor, video_mask: Mask | None = None, audio_mask: Mask | None = None,
                generator: torch.Generator | None = None, video_target: Tensor | None = None) -> HiCMAEOutput:
        """Pre-training pass; masks drawn from the model's strategies when not given."""
        if video_mask is None or audio_mask is None:
            vm, am = self.make_masks(video.shape[0], generator, video.device)
            video_mask = vm if video_mask is None else video_mask
            audio_mask = am if audio_mask is None else audio_mask
        enc = self.forward_encoder(video, audio, video_mask, audio_mask)
        contrastive = self.contrastive_loss(enc.video_levels, enc.audio_levels)
        fv, fa = self.fusion(enc.video, enc.audio)
        v_pred, a_pred = self.forward_decoder(fv, fa, enc, video_mask, audio_mask)
        loss, lv, la = self.forward_loss(video if video_target is None else video_target, audio, v_pred, a_pred,
                                         video_mask, audio_mask, contrastive)
        return HiCMAEOutput(loss, lv, la, contrastive, v_pred, a_pred, video_mask, audio_mask)

    @torch.no_grad()
    def reconstruct(self, video: Tensor, audio: Tensor, video_mask: Mask, audio_mask: Mask,
                    video_target: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Whole inputs with visible patches copied and hidden ones predicted: ``([B, 3, T, H, W]`` in the
        target's units, ``[B, 1, 256, 128]`` normalised filter banks). Normalised predictions are mapped
        back with each hidden patch's own statistics (MAE's visualisation); with ``frame_diff`` the
        second frame of a tube is first added back to the first."""
        target = video if video_target is None else video_target
        out = self(video, audio, video_mask, audio_mask, video_target=target)
        return (self._fill(self.video, target, out.video_pred.float(), video_mask, 3),
                self._fill(self.audio, audio, out.audio_pred.float(), audio_mask, 1))

    def _fill(self, mae: MaskedAutoencoder, x: Tensor, pred: Tensor, mask: Mask, channels: int) -> Tensor:
        patches = mae.patchify(x).float()
        if not mask.num_masked:
            return x
        if channels == 3 and self.frame_diff:
            b, m, d = pred.shape
            p = pred.reshape(b, m, self.tubelet, d // self.tubelet)
            pred = torch.cat([p[:, :, :1], p[:, :, 1:] + p[:, :, :1]], dim=2).reshape(b, m, d)
        if mae.norm_pix_loss:
            t = gather_tokens(patches, mask.ids_mask)
            b, m, d = t.shape
            tc = t.reshape(b, m, d // channels, channels)
            pc = pred.reshape(tc.shape)
            var = tc.var(dim=-2, keepdim=True)
            pred = (pc * (var + 1e-6).sqrt() + tc.mean(dim=-2, keepdim=True)).reshape(b, m, d)
        patches.scatter_(1, mask.ids_mask.unsqueeze(-1).expand_as(pred), pred)
        return mae.unpatchify(patches)


# -- fine-tuning ----------------------------------------------------------------------------------
@dataclass
class PooledFeatures:
    """What the classification heads read, mean-pooled over tokens (None where a modality is absent)."""

    video_layers: Tensor | None  # [B, Lv, Dv]: every encoder block, normed with the final norm
    audio_layers: Tensor | None  # [B, La, Da]
    fused_video: Tensor | None  # [B, Dv]: the fusion encoder's video stream (only with both modalities)
    fused_audio: Tensor | None  # [B, Da]

    def detach(self) -> "PooledFeatures":
        return PooledFeatures(*[None if t is None else t.detach() for t in
                                (self.video_layers, self.audio_layers, self.fused_video, self.fused_audio)])

    def select(self, idx: Tensor) -> "PooledFeatures":
        return PooledFeatures(*[None if t is None else t[idx] for t in
                                (self.video_layers, self.audio_layers, self.fused_video, self.fused_audio)])


@dataclass
class HeadOutput:
    logits: Tensor  # [B, C]: the joint head where a sample has both modalities, else its single-modality head
    used: list[str]  # per sample: "audio+video", "audio" or "video"
    logits_av: Tensor | None
    logits_audio: Tensor | None
    logits_video: Tensor | None


BLOCKS = ("face", "voice", "face, fused with voice", "voice, fused with face")


class EmotionHead(nn.Module):
    """HiCMAE's fine-tuning head: softmax-weighted sum of all layers per modality, concatenated with the
    fusion encoder's pooled outputs ``[video, audio, fused video, fused audio]``, LayerNorm, linear.
    Single-modality heads (the weighted layer sum of one modality, LayerNorm, linear) classify inputs
    that have only one modality."""

    def __init__(self, num_classes: int, video_dim: int, audio_dim: int, video_layers: int, audio_layers: int,
                 norm_layer: NormLayer = LN) -> None:
        super().__init__()
        self.dims = (video_dim, audio_dim, video_dim, audio_dim)
        self.video_layer_weights = nn.Parameter(torch.ones(video_layers) / video_layers)
        self.audio_layer_weights = nn.Parameter(torch.ones(audio_layers) / audio_layers)
        self.norm = norm_layer(sum(self.dims))
        self.head = nn.Linear(sum(self.dims), num_classes)
        self.norm_video, self.head_video = norm_layer(video_dim), nn.Linear(video_dim, num_classes)
        self.norm_audio, self.head_audio = norm_layer(audio_dim), nn.Linear(audio_dim, num_classes)
        for lin in (self.head, self.head_video, self.head_audio):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    @staticmethod
    def weighted(layers: Tensor, weights: Tensor) -> Tensor:
        return (layers * torch.softmax(weights, dim=0).view(1, -1, 1)).sum(dim=1)

    def joint_input(self, f: PooledFeatures) -> Tensor:
        """The normalised concatenation the joint head reads: ``[B, 2 (Dv + Da)]``."""
        v = self.weighted(f.video_layers, self.video_layer_weights)
        a = self.weighted(f.audio_layers, self.audio_layer_weights)
        return self.norm(torch.cat([v, a, f.fused_video, f.fused_audio], dim=-1))

    def forward_video(self, f: PooledFeatures) -> Tensor:
        return self.head_video(self.norm_video(self.weighted(f.video_layers, self.video_layer_weights)))

    def forward_audio(self, f: PooledFeatures) -> Tensor:
        return self.head_audio(self.norm_audio(self.weighted(f.audio_layers, self.audio_layer_weights)))

    def forward(self, f: PooledFeatures, has_video: Tensor, has_audio: Tensor) -> HeadOutput:
        both = has_video & has_audio
        av = self.head(self.joint_input(f)) if f.fused_video is not None else None
        lv = self.forward_video(f) if f.video_layers is not None else None
        la = self.forward_audio(f) if f.audio_layers is not None else None
        ref = next(x for x in (av, la, lv) if x is not None)
        logits = torch.zeros_like(ref)
        if lv is not None:
            logits = torch.where((has_video & ~has_audio)[:, None], lv, logits)
        if la is not None:
            logits = torch.where((has_audio & ~has_video)[:, None], la, logits)
        if av is not None:
            logits = torch.where(both[:, None], av, logits)
        used = ["audio+video" if b else ("audio" if a else "video") for b, a in zip(both.tolist(), has_audio.tolist())]
        return HeadOutput(logits, used, av, la, lv)

    def contributions(self, f: PooledFeatures) -> Tensor:
        """``[B, 4, C]``: each block's exact share of the joint head's centred logits (face, voice, fused
        face, fused voice; they sum with the centred bias to the logits minus their mean over classes,
        which is all softmax sees)."""
        y = self.joint_input(f)  # [B, D]
        w = self.head.weight - self.head.weight.mean(dim=0, keepdim=True)  # [C, D]
        parts, lo = [], 0
        for d in self.dims:
            parts.append(y[:, lo:lo + d] @ w[:, lo:lo + d].t())
            lo += d
        return torch.stack(parts, dim=1)


@dataclass
class ClassifierOutput:
    logits: Tensor
    used: list[str]
    head: HeadOutput
    features: PooledFeatures


class HiCMAEClassifier(nn.Module):
    """A HiCMAE backbone (load the pre-trained weights into ``backbone``) and the emotion head.

    ``forward(video, audio, has_video, has_audio)``: either input may be None (that modality is absent
    from the whole batch); ``has_*`` mark per-sample presence in a mixed batch (zeros stand in for a
    missing input and are never read by the head that answers)."""

    def __init__(self, num_classes: int, **backbone: object) -> None:
        super().__init__()
        self.backbone = HiCMAE(**backbone)
        bv, ba = self.backbone.video, self.backbone.audio
        self.head = EmotionHead(num_classes, bv.norm.normalized_shape[0], ba.norm.normalized_shape[0],
                                len(bv.blocks), len(ba.blocks))
        self.num_classes = num_classes

    def pooled_features(self, video: Tensor | None, audio: Tensor | None) -> PooledFeatures:
        """Every layer of each present modality over its whole input, and the fusion when both are there."""
        b = self.backbone
        vl = al = v_lat = a_lat = fv = fa = None
        if video is not None:
            v_lat, levels = encoder_levels(b.video, video, no_mask(video.shape[0], b.video.grid, video.device))
            vl = torch.stack([b.video.norm(x).mean(dim=1) for x in levels], dim=1)
        if audio is not None:
            a_lat, levels = encoder_levels(b.audio, audio, no_mask(audio.shape[0], b.audio.grid, audio.device))
            al = torch.stack([b.audio.norm(x).mean(dim=1) for x in levels], dim=1)
        if v_lat is not None and a_lat is not None:
            fv_t, fa_t = b.fusion(v_lat, a_lat)
            fv, fa = fv_t.mean(dim=1), fa_t.mean(dim=1)
        return PooledFeatures(vl, al, fv, fa)

    def forward(self, video: Tensor | None = None, audio: Tensor | None = None, has_video: Tensor | None = None,
                has_audio: Tensor | None = None) -> ClassifierOutput:
        if video is None and audio is None:
            raise ValueError("give video, audio or both")
        n = (video if video is not None else audio).shape[0]
        dev = (video if video is not None else audio).device
        hv = torch.full((n,), video is not None, device=dev) if has_video is None else has_video.bool() & (video is not None)
        ha = torch.full((n,), audio is not None, device=dev) if has_audio is None else has_audio.bool() & (audio is not None)
        if not bool((hv | ha).all()):
            raise ValueError("every sample needs video or audio")
        f = self.pooled_features(video if bool(hv.any()) else None, audio if bool(ha.any()) else None)
        out = self.head(f, hv, ha)
        return ClassifierOutput(out.logits, out.used, out, f)
