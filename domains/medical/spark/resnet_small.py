"""ResNet-18/34 adapted to small images (MedMNIST's 28 px), SparK-able like timm CNNs.

ImageNet ResNets divide the input by 4 before their first stage (7x7 stride-2 stem + max-pool),
which leaves a 28 px image 1x1 at the last stage. The small-image variant (He et al.'s CIFAR
ResNet, MedMNIST's "ResNet-18 (28)") uses a 3x3 stride-1 stem and no max-pool: the stages run at
strides 1, 2, 4, 8, so a 32 px input gives 32, 16, 8 and 4 px maps and SparK masks a 4x4 grid of
8 px cells. ``width`` scales every stage (64 = the standard network, 11.2 M parameters; 16 = a
quarter width, 0.7 M, ~16x fewer FLOPs, what one CPU core trains in hours).

Names understood by :func:`~maskworks.domains.medical.spark.spark.timm_backbone`:
``resnet18_28px``, ``resnet34_28px`` and ``..._w16`` / ``..._w32`` for a narrower network.
Parameter names follow timm's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ...).
"""
from __future__ import annotations

import re
from typing import Sequence

from torch import Tensor, nn

SMALL_RESNET = re.compile(r"^resnet(18|34)_28px(?:_w(\d+))?$")
DEPTHS = {"18": (2, 2, 2, 2), "34": (3, 4, 6, 3)}


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or strided 1x1 conv-BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)
        nn.init.zeros_(self.bn2.weight)  # zero-init the last BN of each residual branch (as timm)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(x)) + shortcut)


class SmallResNet(nn.Module):
    """3x3 stride-1 stem, no max-pool, 4 stages of basic blocks at strides 1, 2, 4, 8.

    ``forward`` returns the last stage's map ``[B, 8 * width, H / 8, W / 8]`` (no pooling, no
    head: the same contract as ``timm.create_model(..., num_classes=0, global_pool="")``).
    """

    def __init__(self, in_chans: int = 1, width: int = 64, depths: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        cin = width
        self.feature_info = []
        for i, n in enumerate(depths):
            cout, stride = width * 2 ** i, 1 if i == 0 else 2
            blocks = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": cout, "reduction": 2 ** i, "module": f"layer{i + 1}"})
            cin = cout
        self.num_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def small_resnet(name: str, in_chans: int = 1) -> SmallResNet | None:
    """The network a ``resnet18_28px[_wN]`` name stands for, or None for any other name."""
    m = SMALL_RESNET.match(name)
    if m is None:
        return None
    width = int(m.group(2) or 64)
    if width < 8 or width % 8:
        raise ValueError(f"backbone {name!r}: width must be a multiple of 8, at least 8")
    return SmallResNet(in_chans, width, DEPTHS[m.group(1)])
