"""MONAI transforms around :mod:`.io` and :mod:`.windows`, so they drop into ``monai.transforms.Compose``.

Array transforms take one image; the ``...d`` dictionary versions act on ``keys`` of a sample dict.
Images are channel-first ``MetaTensor`` s: ``[C, H, W]`` or ``[C, D, H, W]``, with ``meta`` holding
the reader's metadata (spacing, modality, source file).
"""
from __future__ import annotations

import os
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from maskworks.domains.medical.imaging.io import load_medical_image
from maskworks.domains.medical.imaging.windows import (
    apply_window,
    per_slice_minmax,
    volume_to_patches,
    volume_to_slices,
    window_bounds,
)
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

Window = str | tuple[float, float]


def _affine(arr: np.ndarray, meta: dict[str, Any]) -> torch.Tensor:
    """Index-to-world affine for our axis order: NIfTI's permuted to (k, j, i); else spacing only."""
    spatial = arr.ndim - 1
    if "affine" in meta and spatial == 3:
        a = np.asarray(meta["affine"], dtype=np.float64)
        return torch.as_tensor(a[:, [2, 1, 0, 3]])
    affine = torch.eye(spatial + 1, dtype=torch.float64)
    spacing = meta.get("spacing")
    if spacing is not None and len(spacing) == spatial and all(s is not None for s in spacing):
        affine[range(spatial), range(spatial)] = torch.tensor([float(s) for s in spacing], dtype=torch.float64)
    return affine


def _to_tensor(img: Any, name: str) -> torch.Tensor:
    if isinstance(img, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(img))
    if isinstance(img, torch.Tensor):
        return img
    raise TypeError(f"{name} expects a channel-first numpy array or tensor, got {type(img).__name__}; "
                    "load files with LoadMedicalImage first")


class LoadMedicalImage(Transform):
    """Path (DICOM file or series folder, NIfTI, PNG, JPEG) -> channel-first float32 ``MetaTensor``.

    CT in Hounsfield units, MONOCHROME1 inverted; broken files raise ``InputError``.
    """

    def __init__(self, invert_monochrome1: bool = True) -> None:
        self.invert_monochrome1 = invert_monochrome1

    def __call__(self, path: str | os.PathLike[str]) -> MetaTensor:
        arr, meta = load_medical_image(path, invert_monochrome1=self.invert_monochrome1)
        affine = _affine(arr, meta)
        meta = {k: v for k, v in meta.items() if k != "affine" and v is not None}
        return MetaTensor(torch.from_numpy(arr), affine=affine, meta=meta)


class LoadMedicalImaged(MapTransform):
    """Dictionary version of :class:`LoadMedicalImage`: replaces each path under ``keys`` by the image."""

    def __init__(self, keys: KeysCollection, invert_monochrome1: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMedicalImage(invert_monochrome1)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class HUWindow(Transform):
    """Clip-and-scale Hounsfield units to [0, 1] with a window: ``low -> 0``, ``high -> 1``.

    ``window`` is a preset (``lung``, ``mediastinum``, ``soft_tissue``, ``bone``, ``brain``), a
    ``(center, width)`` pair, or a list of those: several windows are stacked along the channel
    axis (a 1-channel CT becomes e.g. lung / soft tissue / bone channels for an RGB backbone).
    """

    def __init__(self, window: Window | Sequence[Window] = "soft_tissue") -> None:
        single = isinstance(window, str) or (
            isinstance(window, (tuple, list)) and len(window) == 2 and all(isinstance(v, (int, float)) for v in window))
        self.windows: list[Window] = [window] if single else list(window)  # type: ignore[list-item]
        if not self.windows:
            raise ValueError("HUWindow needs at least one window")
        for w in self.windows:
            window_bounds(w)  # fail at construction on a bad preset or width

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = _to_tensor(img, type(self).__name__).float()
        outs = [apply_window(t, w) for w in self.windows]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


class HUWindowd(MapTransform):
    """Dictionary version of :class:`HUWindow`."""

    def __init__(self, keys: KeysCollection, window: Window | Sequence[Window] = "soft_tissue",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = HUWindow(window)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class PerSliceMinMax(Transform):
    """Scale every 2-D slice (per channel, per depth index) to [0, 1] on its own min and max."""

    def __init__(self, spatial_dims: int = 2) -> None:
        self.spatial_dims = spatial_dims

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        return per_slice_minmax(_to_tensor(img, type(self).__name__).float(), self.spatial_dims)


class PerSliceMinMaxd(MapTransform):
    """Dictionary version of :class:`PerSliceMinMax`."""

    def __init__(self, keys: KeysCollection, spatial_dims: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = PerSliceMinMax(spatial_dims)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class VolumeToSlices(Transform):
    """``[C, D, H, W]`` -> ``[D, C, H, W]``: feed a volume to a 2-D model slice by slice."""

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        return volume_to_slices(_to_tensor(img, type(self).__name__))


class VolumeToPatches(Transform):
    """``[C, D, H, W]`` -> ``[N, C, d, h, w]`` regular 3-D patches (stride defaults to the size)."""

    def __init__(self, size: Sequence[int], stride: Sequence[int] | None = None) -> None:
        self.size, self.stride = tuple(size), (None if stride is None else tuple(stride))

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        return volume_to_patches(_to_tensor(img, type(self).__name__), self.size, self.stride)
