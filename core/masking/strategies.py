"""Masking strategies: each is "a different score, then the same top-k" (see mask.py).

A strategy's ``scores`` gives keep-priorities over the grid (higher = more likely visible); calling
the strategy turns them into a :class:`Mask` with a fixed count per sample. Randomness comes only
from the ``torch.Generator`` passed in, so a seed reproduces a mask exactly.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from maskworks.core.masking.mask import Mask, mask_from_scores, no_mask, num_to_keep
from torch import Tensor

Device = torch.device | str | None


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: Device) -> Tensor:
    """Uniform noise drawn on the generator's device, then moved (generators are device-bound)."""
    gdev = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=gdev).to(device)


class MaskingStrategy:
    """Base class: subclasses implement :meth:`scores`; ``__call__`` applies the shared top-k."""

    def __init__(self, ratio: float) -> None:
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"{type(self).__name__}: mask ratio must be in [0, 1), got {ratio}")
        self.ratio = float(ratio)

    def scores(self, batch_size: int, grid: Sequence[int], *, generator: torch.Generator | None = None,
               device: Device = None, **inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, batch_size: int, grid: Sequence[int], *, generator: torch.Generator | None = None,
                 device: Device = None, **inputs: Tensor) -> Mask:
        grid = tuple(int(g) for g in grid)
        if self.ratio == 0:
            return no_mask(batch_size, grid, device)
        s = self.scores(batch_size, grid, generator=generator, device=device, **inputs)
        return mask_from_scores(s, self.ratio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratio={self.ratio})"


class RandomMasking(MaskingStrategy):
    """MAE: uniform noise per token. Also Point-MAE's random group masking (a 1-D grid of groups)."""

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        return _rand((batch_size, *grid), generator, device)


class GridBlockMasking(MaskingStrategy):
    """SimMIM / SparK / 3-D blocks: random masking on a coarse grid, upsampled to the token grid.

    ``block`` is the block size in tokens per axis (SimMIM 32 px blocks on 16 px patches -> 2;
    SparK masks at stride 32 -> the block covers one feature-map cell; volumes and NeRF grids use
    3-D blocks). Whole blocks are kept or masked, so the realised ratio is the coarse grid's.
    """

    def __init__(self, ratio: float, block: int | Sequence[int] = 2) -> None:
        super().__init__(ratio)
        self.block = block

    def _block(self, grid: Sequence[int]) -> tuple[int, ...]:
        block = (self.block,) * len(grid) if isinstance(self.block, int) else tuple(self.block)
        if len(block) != len(grid) or any(g % b for g, b in zip(grid, block)):
            raise ValueError(f"grid {tuple(grid)} is not divisible into blocks {block}")
        return block

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        block = self._block(grid)
        coarse = _rand((batch_size, *[g // b for g, b in zip(grid, block)]), generator, device)
        for axis, b in enumerate(block):
            coarse = coarse.repeat_interleave(b, dim=axis + 1)
        return coarse

    def __call__(self, batch_size, grid, *, generator=None, device=None, **inputs):
        grid = tuple(int(g) for g in grid)
        if self.ratio == 0:
            return no_mask(batch_size, grid, device)
        block = self._block(grid)
        coarse_n = math.prod(g // b for g, b in zip(grid, block))
        keep = num_to_keep(coarse_n, self.ratio) * math.prod(block)
        return mask_from_scores(self.scores(batch_size, grid, generator=generator, device=device),
                                num_keep=keep)


class BlockMasking(MaskingStrategy):
    """BEiT's block-wise masking: add random rectangles (area >= ``min_block`` tokens, aspect ratio
    in [``min_aspect``, 1/``min_aspect``]) until the masked count is reached, then the top-k trims
    or fills at random so the count is exact. 2-D grids only (as in BEiT)."""

    def __init__(self, ratio: float, min_block: int = 16, min_aspect: float = 0.3) -> None:
        super().__init__(ratio)
        self.min_block = min_block
        self.min_aspect = min_aspect

    def _one(self, h: int, w: int, target: int, generator: torch.Generator | None) -> Tensor:
        mask = torch.zeros(h, w, dtype=torch.bool)
        log_lo, log_hi = math.log(self.min_aspect), math.log(1 / self.min_aspect)
        for _ in range(10 * target + 10):
            count = int(mask.sum())
            if count >= target:
                break
            u = torch.rand(4, generator=generator).tolist()
            area = self.min_block + u[0] * (max(target - count, self.min_block) - self.min_block)
            aspect = math.exp(log_lo + u[1] * (log_hi - log_lo))
            bh = min(h, max(1, int(round(math.sqrt(area * aspect)))))
            bw = min(w, max(1, int(round(math.sqrt(area / aspect)))))
            top = int(u[2] * (h - bh + 1))
            left = int(u[3] * (w - bw + 1))
            mask[top:top + bh, left:left + bw] = True
        return mask

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        if len(grid) != 2:
            raise ValueError(f"BlockMasking works on 2-D grids, got {tuple(grid)}")
        h, w = grid
        target = h * w - num_to_keep(h * w, self.ratio)
        cpu_gen = generator if generator is None or generator.device.type == "cpu" else None
        blocks = torch.stack([self._one(h, w, target, cpu_gen) for _ in range(batch_size)]).to(device)
        # in-block tokens score below every out-of-block token; noise breaks ties at random
        return _rand((batch_size, h, w), generator, device) - blocks.float()


def _radial_filter(shape: tuple[int, int], kind: str, device: Device) -> Tensor:
    fy = torch.fft.fftfreq(shape[0], device=device).abs()
    fx = torch.fft.rfftfreq(shape[1], device=device)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / math.sqrt(0.5)  # 0 .. 1
    low, high = 0.15, 0.45
    if kind == "low":
        return (r <= low).float()
    if kind == "high":
        return (r >= high).float()
    band = ((r > low) & (r < high)).float()
    if kind == "band":
        return band
    if kind == "bandstop":
        return 1.0 - band
    raise ValueError(f"unknown ColorMAE filter {kind!r}; use low, high, band or bandstop")


class ColorNoiseMasking(MaskingStrategy):
    """ColorMAE: filtered random noise; keep the tokens with the largest filtered values.

    ``kind``: ``low`` (red noise: clustered masks), ``high`` (blue: dispersed), ``band`` (green, the
    paper's best), ``bandstop`` (purple). Filter cut-offs are 0.15 and 0.45 of the maximum radial
    frequency (our choice; the paper shows the spectra, not numbers).
    """

    ALIASES = {"red": "low", "blue": "high", "green": "band", "purple": "bandstop"}

    def __init__(self, ratio: float, kind: str = "band") -> None:
        super().__init__(ratio)
        self.kind = self.ALIASES.get(kind, kind)
        _radial_filter((4, 4), self.kind, "cpu")  # validate early

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        if len(grid) != 2:
            raise ValueError(f"ColorNoiseMasking works on 2-D grids, got {tuple(grid)}")
        white = _rand((batch_size, *grid), generator, device) - 0.5
        spectrum = torch.fft.rfft2(white) * _radial_filter(tuple(grid), self.kind, white.device)
        return torch.fft.irfft2(spectrum, s=tuple(grid))

    def __repr__(self) -> str:
        return f"ColorNoiseMasking(ratio={self.ratio}, kind={self.kind!r})"


class TubeMasking(MaskingStrategy):
    """VideoMAE: one spatial mask repeated over every time step of a ``(T, H, W)`` grid."""

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        t, *space = grid
        return _rand((batch_size, 1, *space), generator, device).expand(batch_size, t, *space)

    def __call__(self, batch_size, grid, *, generator=None, device=None, **inputs):
        grid = tuple(int(g) for g in grid)
        if self.ratio == 0:
            return no_mask(batch_size, grid, device)
        keep = num_to_keep(math.prod(grid[1:]), self.ratio) * grid[0]
        # a tube's T copies share one score, so they sit together in the sorted order and the
        # top-k (a multiple of T) keeps whole tubes
        s = self.scores(batch_size, grid, generator=generator, device=device)
        return mask_from_scores(s, num_keep=keep)


class RunningCellMasking(MaskingStrategy):
    """VideoMAE V2's decoder mask: in every 2x2 spatial cell, ``int(4 * ratio)`` of the 4 places are
    masked, and the pattern rotates by one place per frame, so each place is seen over time.
    A random phase per sample replaces the reference code's choice among precomputed maps."""

    def __init__(self, ratio: float = 0.5) -> None:
        super().__init__(ratio)
        self.per_cell = int(4 * ratio)
        if not 0 < self.per_cell < 4:
            raise ValueError(f"RunningCellMasking needs 0.25 <= ratio < 1, got {ratio}")

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        t, h, w = grid
        if h % 2 or w % 2:
            raise ValueError(f"RunningCellMasking needs an even spatial grid, got {(h, w)}")
        phase = (_rand((batch_size,), generator, device) * 4).long()  # [B]
        # cell place index 0..3 in row-major order inside the 2x2 cell
        place = (torch.arange(h, device=device)[:, None] % 2) * 2 + torch.arange(w, device=device)[None, :] % 2
        frame = torch.arange(t, device=device)
        # place is masked at frame f when (place - f - phase) mod 4 < per_cell
        rel = (place[None, None] - frame[None, :, None, None] - phase[:, None, None, None]) % 4
        return (rel >= self.per_cell).float()  # 1 = keep

    def __call__(self, batch_size, grid, *, generator=None, device=None, **inputs):
        grid = tuple(int(g) for g in grid)
        keep = math.prod(grid) * (4 - self.per_cell) // 4
        return mask_from_scores(self.scores(batch_size, grid, generator=generator, device=device),
                                num_keep=keep)


class PointBlockMasking(MaskingStrategy):
    """Point-BERT: mask the groups nearest to a random seed group (a contiguous block in space).

    Needs ``centers=[B, G, 3]``. ``ratio`` may be a ``(low, high)`` range: one ratio is drawn per
    call (Point-BERT uses 0.25-0.45), so the batch stays rectangular.
    """

    def __init__(self, ratio: float | tuple[float, float]) -> None:
        self.range = (ratio, ratio) if isinstance(ratio, (int, float)) else tuple(ratio)
        super().__init__(self.range[1])

    def scores(self, batch_size, grid, *, generator=None, device=None, centers: Tensor | None = None, **inputs):
        if centers is None:
            raise ValueError("PointBlockMasking needs centers=[B, G, 3]")
        b, g, _ = centers.shape
        seed = (_rand((b,), generator, centers.device) * g).long().clamp_max(g - 1)
        seed_xyz = centers[torch.arange(b, device=centers.device), seed]  # [B, 3]
        return (centers - seed_xyz[:, None]).norm(dim=-1)  # far from the seed = kept

    def __call__(self, batch_size, grid, *, generator=None, device=None, centers: Tensor | None = None, **inputs):
        lo, hi = self.range
        ratio = lo + float(_rand((1,), generator, None)) * (hi - lo) if hi > lo else lo
        if ratio == 0:
            return no_mask(batch_size, tuple(grid), device)
        s = self.scores(batch_size, grid, generator=generator, device=device, centers=centers)
        return mask_from_scores(s, ratio)


class RadialSectorMasking(MaskingStrategy):
    """R-MAE: bin occupied voxels into azimuth sectors around the sensor and keep whole sectors.

    Needs ``points=[B, N, 3]`` (voxel centres in metres, sensor frame; x forward, y left, z up).
    Azimuth and range are measured from ``sensor`` (default the origin), not from the grid corner
    (the released code's slip). ``ratio`` is the fraction of voxels masked (R-MAE keeps 20 %
    on KITTI -> 0.8). With ``range_aware``, each range band draws its own sectors and keeps a share
    proportional to ``band_keep`` (more far voxels are kept, where returns are sparse).
    """

    def __init__(self, ratio: float = 0.8, sector_deg: float = 1.0, range_aware: bool = False,
                 band_edges_m: Sequence[float] = (20.0, 40.0), band_keep: Sequence[float] = (1.0, 1.5, 2.0),
                 sensor: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        super().__init__(ratio)
        self.sector_deg = sector_deg
        self.range_aware = range_aware
        self.band_edges = tuple(band_edges_m)
        self.band_keep = tuple(band_keep)
        if len(self.band_keep) != len(self.band_edges) + 1:
            raise ValueError("band_keep needs one weight per range band (len(band_edges_m) + 1)")
        self.sensor = tuple(sensor)

    def sector_index(self, points: Tensor) -> Tensor:
        rel = points[..., :2] - points.new_tensor(self.sensor[:2])
        az = torch.rad2deg(torch.atan2(rel[..., 1], rel[..., 0])) % 360.0
        return (az / self.sector_deg).long().clamp_max(int(math.ceil(360.0 / self.sector_deg)) - 1)

    def band_index(self, points: Tensor) -> Tensor:
        rng = (points[..., :2] - points.new_tensor(self.sensor[:2])).norm(dim=-1)
        return torch.bucketize(rng, points.new_tensor(self.band_edges))

    def scores(self, batch_size, grid, *, generator=None, device=None, points: Tensor | None = None, **inputs):
        if points is None:
            raise ValueError("RadialSectorMasking needs points=[B, N, 3] in metres")
        n_sectors = int(math.ceil(360.0 / self.sector_deg))
        sector = self.sector_index(points)  # [B, N]
        b = points.shape[0]
        if not self.range_aware:
            prio = _rand((b, n_sectors), generator, points.device)
            return torch.gather(prio, 1, sector)
        band = self.band_index(points)
        n_bands = len(self.band_keep)
        prio = _rand((b, n_bands * n_sectors), generator, points.device)
        weight = points.new_tensor(self.band_keep)[band]
        # a sector-band is kept when its uniform draw is below a band-weighted threshold; sorting by
        # draw / weight ranks sector-bands exactly by that rule whatever the threshold is
        u = torch.gather(prio, 1, band * n_sectors + sector)
        return -u / weight


def _ntu25_parts() -> dict[str, list[int]]:
    # NTU RGB+D 25-joint order (0-based): 0 base of spine, 1 mid spine, 2 neck, 3 head, 4-7 left arm,
    # 8-11 right arm, 12-15 left leg, 16-19 right leg, 20 spine, 21-22 left hand tip/thumb,
    # 23-24 right hand tip/thumb.
    return {
        "head": [2, 3],
        "torso": [0, 1, 20],
        "left_arm": [4, 5, 6, 7, 21, 22],
        "right_arm": [8, 9, 10, 11, 23, 24],
        "left_leg": [12, 13, 14, 15],
        "right_leg": [16, 17, 18, 19],
    }


NTU25_PARTS: dict[str, list[int]] = _ntu25_parts()


class BodyPartMasking(MaskingStrategy):
    """SkeletonMAE: mask whole body parts (head, torso, arms, legs), the same parts in every frame.

    Grid is ``(V,)`` joints or ``(T, V)``. Parts get a random priority; joints inherit it, so the
    top-k keeps whole parts and cuts at most one part (to hit the exact count).
    """

    def __init__(self, ratio: float, parts: Mapping[str, Sequence[int]] | None = None) -> None:
        super().__init__(ratio)
        self.parts = {k: list(v) for k, v in (parts or NTU25_PARTS).items()}
        self.num_joints = 1 + max(j for js in self.parts.values() for j in js)
        part_of = torch.full((self.num_joints,), -1, dtype=torch.long)
        for p, joints in enumerate(self.parts.values()):
            part_of[joints] = p
        if (part_of < 0).any():
            raise ValueError(f"joints {part_of.lt(0).nonzero().flatten().tolist()} belong to no part")
        self.part_of = part_of

    def scores(self, batch_size, grid, *, generator=None, device=None, **inputs):
        v = grid[-1]
        if v != self.num_joints:
            raise ValueError(f"grid has {v} joints but the part map covers {self.num_joints}")
        prio = _rand((batch_size, len(self.parts)), generator, device)
        per_joint = prio[:, self.part_of.to(prio.device)]  # [B, V]
        if len(grid) == 2:
            per_joint = per_joint[:, None, :].expand(batch_size, grid[0], v)
        return per_joint

    def __call__(self, batch_size, grid, *, generator=None, device=None, **inputs):
        grid = tuple(int(g) for g in grid)
        if self.ratio == 0:
            return no_mask(batch_size, grid, device)
        per_frame = num_to_keep(grid[-1], self.ratio)
        s = self.scores(batch_size, grid, generator=generator, device=device)
        if len(grid) == 2:  # rank joints once, so every frame keeps the same joints
            frame = mask_from_scores(s[:, 0], num_keep=per_frame)
            keep = (~frame.mask).float()[:, None, :].expand(-1, grid[0], -1)
            return mask_from_scores(keep, num_keep=per_frame * grid[0])
        return mask_from_scores(s, num_keep=per_frame)


class HardPatchMasking(MaskingStrategy):
    """HPM: mask the patches a predictor expects to be hardest, for a share of the masked set that
    grows with training (easy -> hard), and the rest at random.

    Needs ``loss_pred=[B, *grid]`` (the predicted reconstruction loss, e.g. from an EMA teacher) and
    ``progress`` in [0, 1] (training progress). Hard share = ``max_hard * progress``.
    """

    def __init__(self, ratio: float = 0.75, max_hard: float = 0.5) -> None:
        super().__init__(ratio)
        self.max_hard = max_hard

    def hard_share(self, progress: float) -> float:
        return self.max_hard * min(max(float(progress), 0.0), 1.0)

    def scores(self, batch_size, grid, *, generator=None, device=None, loss_pred: Tensor | None = None,
               progress: float = 0.0, **inputs):
        if loss_pred is None:
            raise ValueError("HardPatchMasking needs loss_pred=[B, *grid]")
        b = loss_pred.shape[0]
        flat = loss_pred.reshape(b, -1)
        n = flat.shape[1]
        n_hard = int((n - num_to_keep(n, self.ratio)) * self.hard_share(progress))
        is_hard = torch.zeros_like(flat, dtype=torch.bool)
        if n_hard:
            is_hard.scatter_(1, flat.topk(n_hard, dim=1).indices, True)
        # keep priority = -(is_hard * 2 + rand): hard patches are always among the masked
        return -(is_hard.float() * 2 + _rand(flat.shape, generator, flat.device)).reshape(loss_pred.shape)
