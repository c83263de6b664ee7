"""HU windows, per-slice min-max, slicing/patching, and the MONAI transform wrappers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskworks.data import data_path
from maskworks.domains.medical.imaging.windows import (
    HU_WINDOWS,
    apply_window,
    per_slice_minmax,
    volume_to_patches,
    volume_to_slices,
    window_bounds,
)


@pytest.mark.parametrize("name", sorted(HU_WINDOWS))
def test_window_edges_map_to_zero_and_one(name: str) -> None:
    center, width = HU_WINDOWS[name]
    lo, hi = center - width / 2, center + width / 2
    x = torch.tensor([lo - 500, lo, center, hi, hi + 500])
    np.testing.assert_allclose(apply_window(x, name).numpy(), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(apply_window(x.numpy(), (center, width)), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)


def test_window_presets_and_errors() -> None:
    assert window_bounds("lung") == (-1350.0, 150.0)
    assert window_bounds("Soft tissue") == (-160.0, 240.0)
    assert window_bounds("brain") == (0.0, 80.0)
    with pytest.raises(ValueError, match="presets"):
        window_bounds("liver-ish")
    with pytest.raises(ValueError, match="width"):
        window_bounds((40, 0))


def test_per_slice_minmax_is_per_slice() -> None:
    vol = torch.zeros(1, 2, 2, 2)
    vol[0, 0] = torch.tensor([[1.0, 3.0], [5.0, 9.0]])
    vol[0, 1] = 7.0  # constant slice -> zeros, not NaN
    out = per_slice_minmax(vol)
    np.testing.assert_allclose(out[0, 0].numpy(), [[0.0, 0.25], [0.5, 1.0]])
    assert torch.equal(out[0, 1], torch.zeros(2, 2))
    np.testing.assert_allclose(per_slice_minmax(vol.numpy())[0, 0], [[0.0, 0.25], [0.5, 1.0]])


def test_volume_to_slices_and_patches() -> None:
    vol = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 4, 6, 8)
    slices = volume_to_slices(vol)
    assert slices.shape == (4, 2, 6, 8) and torch.equal(slices[3, 1], vol[1, 3])
    patches = volume_to_patches(vol, (2, 3, 4))
    assert patches.shape == (2 * 2 * 2, 2, 2, 3, 4)
    # last patch = far corner block, row-major over (d, h, w)
    assert torch.equal(patches[-1], vol[:, 2:4, 3:6, 4:8])
    assert torch.equal(patches[1], vol[:, 0:2, 0:3, 4:8])
    with pytest.raises(ValueError, match="larger than the volume"):
        volume_to_patches(vol, (8, 3, 4))


def test_monai_compose_pipeline_on_real_ct() -> None:
    from monai.data import MetaTensor
    from monai.transforms import Compose

    from maskworks.domains.medical.imaging.transforms import (
        HUWindow,
        HUWindowd,
        LoadMedicalImage,
        LoadMedicalImaged,
        PerSliceMinMaxd,
        VolumeToPatches,
    )

    path = data_path("medical", "dicom", "CT_small.dcm")
    pipeline = Compose([LoadMedicalImaged("image"), HUWindowd("image", ["lung", "soft_tissue", "bone"])])
    out = pipeline({"image": str(path)})["image"]
    hu = LoadMedicalImage()(path)
    assert isinstance(hu, MetaTensor) and hu.shape == (1, 128, 128)
    assert float(hu.min()) == -896.0 and float(hu.max()) == 1167.0
    assert hu.meta["modality"] == "CT" and float(hu.affine[0, 0]) == pytest.approx(0.661468)
    assert out.shape == (3, 128, 128)
    torch.testing.assert_close(out[1].as_tensor(), ((hu[0] + 160.0) / 400.0).clamp(0, 1).as_tensor())
    assert torch.equal(HUWindow("bone")(hu.numpy()), apply_window(torch.from_numpy(hu.numpy()), "bone"))
    vol = Compose([LoadMedicalImaged("v"), PerSliceMinMaxd("v")])({"v": data_path(
        "medical", "nifti", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")})["v"]
    assert vol.shape == (1, 189, 233, 197) and float(vol[0, 94].max()) == 1.0 and float(vol[0, 94].min()) == 0.0
    assert VolumeToPatches((64, 64, 64))(vol).shape == (2 * 3 * 3, 1, 64, 64, 64)
    with pytest.raises(TypeError, match="LoadMedicalImage first"):
        HUWindow("lung")(str(path))
    with pytest.raises(ValueError, match="presets"):
        HUWindow(["lung", "nonsense"])
