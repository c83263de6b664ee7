"""R-MAE (Radial MAE, Hess et al.): hide whole azimuth sectors of a voxelised scan, predict occupancy.

Backbone choice: a BEV 2-D CNN after height compression (the ``nz`` height bins of the occupancy
grid are the input channels), not a dense 3-D CNN: spconv is unavailable, a dense 3-D convolution
over 10 x 200 x 200 voxels is ~10x the cost on CPU, and the next issue's detector head works on a
BEV map anyway (SECOND / PointPillars compress height the same way). The decoder upsamples back to
the grid and predicts ``nz`` occupancy logits per BEV cell, i.e. one per voxel.

Loss: binary cross-entropy on every originally occupied voxel (kept and masked) as positives plus
``neg_ratio`` x as many empty voxels drawn uniformly per scan as negatives (R-MAE predicts
occupancy over the whole grid; drawing the negatives keeps the 99 % empty voxels from swamping it).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from maskworks.core.masking import RadialSectorMasking
from torch import Tensor, nn

from .voxel import VoxelGrid


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BEVBackbone(nn.Module):
    """Height-compressed occupancy ``[B, nz, ny, nx]`` -> BEV features at strides 1, 2, 4 (what a detector loads)."""

    def __init__(self, in_channels: int = 10, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.in_channels, self.widths = in_channels, tuple(widths)
        self.stage1 = conv_bn(in_channels, c1)
        self.stage2 = nn.Sequential(conv_bn(c1, c2, 2), conv_bn(c2, c2))
        self.stage3 = nn.Sequential(conv_bn(c2, c3, 2), conv_bn(c3, c3))

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        return [f1, f2, self.stage3(f2)]


class OccupancyDecoder(nn.Module):
    """U-Net-style upsampling back to the grid; ``nz`` logits per BEV cell."""

    def __init__(self, out_channels: int = 10, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.up3 = nn.ConvTranspose2d(c3, c2, 2, 2)
        self.fuse2 = conv_bn(2 * c2, c2)
        self.up2 = nn.ConvTranspose2d(c2, c1, 2, 2)
        self.fuse1 = conv_bn(2 * c1, c1)
        self.out = nn.Conv2d(c1, out_channels, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        f1, f2, f3 = feats
        x = self.fuse2(torch.cat([self.up3(f3), f2], 1))
        x = self.fuse1(torch.cat([self.up2(x), f1], 1))
        return self.out(x)


class RMAE(nn.Module):
    """Backbone + occupancy decoder; ``forward(visible_occupancy) -> logits`` of the same shape."""

    def __init__(self, grid: VoxelGrid | dict | None = None, widths: tuple[int, int, int] | list[int] = (32, 64, 128),
                 mask_ratio: float = 0.8, sector_deg: float = 1.0, range_aware: bool = False,
                 neg_ratio: float = 1.0) -> None:
        super().__init__()
        self.voxel_grid = grid if isinstance(grid, VoxelGrid) else VoxelGrid(**{k: tuple(v) if isinstance(v, list) else v
                                                                                for k, v in (grid or {}).items()})
        nz, ny, nx = self.voxel_grid.shape
        if ny % 4 or nx % 4:
            raise ValueError(f"the BEV grid {ny} x {nx} must be divisible by 4 (two stride-2 stages)")
        self.backbone = BEVBackbone(nz, tuple(widths))
        self.decoder = OccupancyDecoder(nz, tuple(widths))
        self.masking = RadialSectorMasking(mask_ratio, sector_deg, range_aware)
        self.neg_ratio = neg_ratio

    def forward(self, visible: Tensor) -> Tensor:
        return self.decoder(self.backbone(visible.float()))


def sector_mask_occupied(occ: Tensor, grid: VoxelGrid, strategy: RadialSectorMasking,
                         generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Radial sector mask of one scan's occupied voxels.

    ``occ`` bool ``[nz, ny, nx]``. Returns ``(masked, idx)``: bool ``[N]`` (True = hidden) over the
    occupied voxels ``idx`` ``[N, 3]`` (iz, iy, ix); sectors are drawn from voxel centres in metres.
    """
    idx = occ.nonzero()
    centres = torch.from_numpy(grid.centers(idx.cpu().numpy())).float()
    m = strategy(1, (len(idx),), generator=generator, points=centres[None])
    return m.flat[0].to(occ.device), idx


def visible_grid(occ: Tensor, masked: Tensor, idx: Tensor) -> Tensor:
    """``occ`` with the masked occupied voxels cleared."""
    vis = occ.clone()
    hid = idx[masked]
    vis[hid[:, 0], hid[:, 1], hid[:, 2]] = False
    return vis


def occupancy_loss(logits: Tensor, occ: Tensor, u: Tensor, neg_ratio: float = 1.0) -> Tensor:
    """BCE on all occupied voxels + ``neg_ratio`` x as many empty voxels with the smallest draw ``u``.

    ``logits``, ``u`` float and ``occ`` bool, all ``[B, nz, ny, nx]``; positives and negatives are
    averaged separately and summed, so the loss is balanced whatever the occupancy rate.
    """
    b = occ.shape[0]
    occ_f, lf, uf = occ.reshape(b, -1), logits.reshape(b, -1), u.reshape(b, -1)
    pos = F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf), reduction="none")
    neg = F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf), reduction="none")
    n_pos = occ_f.sum(1)
    n_neg = (n_pos.float() * neg_ratio).clamp_min(1).long().clamp_max((~occ_f).sum(1))
    # rank empty voxels by their draw; the first n_neg of each scan are the negatives
    score = uf.masked_fill(occ_f, 2.0)
    rank = score.argsort(1).argsort(1)
    is_neg = rank < n_neg[:, None]
    pos_loss = (pos * occ_f).sum(1) / n_pos.clamp_min(1)
    neg_loss = (neg * is_neg).sum(1) / n_neg.clamp_min(1)
    return (pos_loss + neg_loss).mean()


def augment_bev(occ: Tensor, u: Tensor) -> Tensor:
    """Random left-right flip (y -> -y) and rotation by a multiple of 90 deg about the sensor (grid centre).

    Exact on a square grid centred on the sensor; ``u`` ``[B, 2]`` uniform draws.
    """
    out = []
    for o, (uf, ur) in zip(occ, u.tolist()):
        if uf < 0.5:
            o = o.flip(-2)
        out.append(torch.rot90(o, int(ur * 4) % 4, dims=(-2, -1)) if o.shape[-1] == o.shape[-2] else o)
    return torch.stack(out)


def sector_of_cells(grid: VoxelGrid, sector_deg: float) -> np.ndarray:
    """Sector index of each BEV cell centre ``[ny, nx]`` (azimuth from the sensor at the origin)."""
    nz, ny, nx = grid.shape
    x = grid.x_range[0] + (np.arange(nx) + 0.5) * grid.voxel_size
    y = grid.y_range[0] + (np.arange(ny) + 0.5) * grid.voxel_size
    az = np.rad2deg(np.arctan2(y[:, None], x[None, :])) % 360.0
    return np.minimum((az / sector_deg).astype(np.int64), int(math.ceil(360 / sector_deg)) - 1)
