"""A small dense 3-D ResNet for CT/MR volumes (strides 4, 8, 16, 32), SparK-able like timm CNNs.

Plain ``nn.Conv3d``/norm layers, so :func:`~maskworks.domains.medical.spark.sparse.sparsify` converts it
and the pre-trained ``state_dict`` loads back into this dense class for fine-tuning. ``feature_info``
follows timm's format so the SparK code treats 2-D and 3-D backbones alike.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor, nn


def _norm(kind: str) -> Callable[[int], nn.Module]:
    if kind == "batch":
        return nn.BatchNorm3d
    if kind == "instance":
        return lambda c: nn.InstanceNorm3d(c, affine=True)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}")


class BasicBlock3d(nn.Module):
    """ResNet basic block with 3x3x3 convs; a strided 1x1x1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.act = nn.ReLU(inplace=False)
        self.downsample = (nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False), norm(cout))
                           if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.downsample(x))


class ResNet3d(nn.Module):
    """Stem (stride-2 conv + stride-2 max-pool), then four stages at strides 4, 8, 16, 32.

    ``forward`` returns the stride-32 map ``[B, widths[-1], D/32, H/32, W/32]``.
    """

    def __init__(self, in_chans: int = 1, widths: Sequence[int] = (32, 64, 128, 256),
                 depths: Sequence[int] = (1, 1, 1, 1), norm: str = "instance") -> None:
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"ResNet3d needs 4 widths and 4 depths, got {widths} and {depths}")
        make_norm = _norm(norm)
        self.conv1 = nn.Conv3d(in_chans, widths[0], 3, 2, 1, bias=False)
        self.bn1 = make_norm(widths[0])
        self.act1 = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        cin = widths[0]
        self.feature_info: list[dict[str, object]] = []
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = [BasicBlock3d(cin if j == 0 else w, w, (1 if i == 0 else 2) if j == 0 else 1, make_norm)
                      for j in range(d)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append({"module": f"layer{i + 1}", "num_chs": w, "reduction": 4 * 2 ** i})
            cin = w
        self.num_features = cin

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
