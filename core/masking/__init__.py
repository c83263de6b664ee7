"""Masking as data: a strategy scores the tokens of a grid, `mask_from_scores` keeps the top ones.

Every strategy returns a :class:`Mask` (boolean grid plus ``ids_keep``/``ids_mask``/``ids_restore``)
so strategies and models mix freely, as in lightly.
"""
from maskworks.core.masking.mask import Mask, mask_from_scores, no_mask, num_to_keep
from maskworks.core.masking.ops import (
    gather_tokens,
    keep_visible,
    patchify,
    replace_masked,
    restore_tokens,
    unpatchify,
)
from maskworks.core.masking.strategies import (
    NTU25_PARTS,
    BlockMasking,
    BodyPartMasking,
    ColorNoiseMasking,
    GridBlockMasking,
    HardPatchMasking,
    MaskingStrategy,
    PointBlockMasking,
    RadialSectorMasking,
    RandomMasking,
    RunningCellMasking,
    TubeMasking,
)

__all__ = [
    "Mask", "mask_from_scores", "no_mask", "num_to_keep", "MaskingStrategy", "RandomMasking",
    "BlockMasking", "GridBlockMasking", "ColorNoiseMasking", "TubeMasking", "RunningCellMasking",
    "PointBlockMasking", "RadialSectorMasking", "BodyPartMasking", "HardPatchMasking", "NTU25_PARTS",
    "gather_tokens", "keep_visible", "restore_tokens", "replace_masked", "patchify", "unpatchify",
]
