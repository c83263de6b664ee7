"""The detector network: the R-MAE BEV backbone (same class and :class:`~..voxel.VoxelGrid` as R-MAE, so the
pre-trained weights load unchanged) -> a small FPN-like neck to stride 2 (0.8 m cells) -> heads for class
heatmaps (Car, Pedestrian, Cyclist), sub-cell offset, z centre, log size and (sin, cos) yaw."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..rmae import BEVBackbone, conv_bn
from ..voxel import VoxelGrid

CLASSES = ("Car", "Pedestrian", "Cyclist")
MAX_OBJECTS = 64
NUSCENES_TO_KITTI = {"car": "Car", "pedestrian": "Pedestrian", "bicycle": "Cyclist"}
GROUND_Z = -1.73  # KITTI / simulator sensor height above the road


def make_grid(cfg: dict | None) -> VoxelGrid:
    return VoxelGrid(**{k: tuple(v) if isinstance(v, list) else v for k, v in (cfg or {}).items()})



class BEVDetector(nn.Module):
    """Occupancy ``[B, nz, ny, nx]`` -> dict of head maps at stride 2: ``heatmap`` (logits, C),
    ``offset`` (2), ``z`` (1), ``size`` (3, log metres), ``rot`` (2, sin/cos)."""

    def __init__(self, grid: VoxelGrid | dict | None = None, widths: tuple[int, int, int] | list[int] = (16, 32, 64),
                 head_channels: int = 32, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.voxel_grid = grid if isinstance(grid, VoxelGrid) else make_grid(grid)
        nz, ny, nx = self.voxel_grid.shape
        if ny % 4 or nx % 4:
            raise ValueError(f"the BEV grid {ny} x {nx} must be divisible by 4 (two stride-2 stages)")
        c1, c2, c3 = widths
        self.backbone = BEVBackbone(nz, tuple(widths))
        self.up3 = nn.ConvTranspose2d(c3, c2, 2, 2)
        self.fuse = conv_bn(2 * c2, head_channels)
        self.shared = conv_bn(head_channels, head_channels)
        outs = {"heatmap": num_classes, "offset": 2, "z": 1, "size": 3, "rot": 2}
        self.heads = nn.ModuleDict({k: nn.Sequential(conv_bn(head_channels, head_channels), nn.Conv2d(head_channels, n, 1))
                                    for k, n in outs.items()})
        nn.init.constant_(self.heads["heatmap"][-1].bias, -2.19)  # prior 0.1, as CenterNet
        self.stride = 2

    def forward(self, occ: Tensor) -> dict[str, Tensor]:
        _, f2, f3 = self.backbone(occ.float())
        x = self.shared(self.fuse(torch.cat([self.up3(f3), f2], 1)))
        return {k: h(x) for k, h in self.heads.items()}


def regression_map(out: dict[str, Tensor]) -> Tensor:
    """Head outputs stacked as ``[B, 8, H, W]`` in the order of :func:`build_targets`' ``reg``."""
    return torch.cat([out["offset"], out["z"], out["size"], out["rot"]], 1)


