"""Build a strategy from a recipe's ``masking:`` section (YAML names -> classes)."""
from __future__ import annotations

from maskworks.core.masking import strategies as s

STRATEGIES: dict[str, type[s.MaskingStrategy]] = {
    "random": s.RandomMasking,
    "block": s.BlockMasking,
    "grid_block": s.GridBlockMasking,
    "color_noise": s.ColorNoiseMasking,
    "tube": s.TubeMasking,
    "running_cell": s.RunningCellMasking,
    "point_block": s.PointBlockMasking,
    "radial_sector": s.RadialSectorMasking,
    "body_part": s.BodyPartMasking,
    "hard_patch": s.HardPatchMasking,
}


def build_masking(spec: dict | None) -> s.MaskingStrategy:
    """``{"name": "random", "ratio": 0.75, ...}`` -> ``RandomMasking(0.75)``."""
    spec = dict(spec or {"name": "random", "ratio": 0.75})
    name = spec.pop("name", "random")
    if name not in STRATEGIES:
        raise ValueError(f"unknown masking {name!r}; choose one of {sorted(STRATEGIES)}")
    try:
        return STRATEGIES[name](**spec)
    except TypeError as e:
        raise ValueError(f"masking {name!r}: {e}") from None
