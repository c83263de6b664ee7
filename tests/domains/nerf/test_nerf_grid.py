"""Grid format: NeRF-MAE's alpha conversions by hand, the rgbsigma .npz both ways, caps before decoding, padding."""
import io
import math
import zipfile

import numpy as np
import pytest

from maskworks.core.io import InputError
from maskworks.domains.nerf.grid import (RadianceGrid, alpha_to_density, density_to_alpha, pad_to_cube, prune, read_grid,
                                         resample, write_grid)


def test_alpha_conversions_match_nerf_mae_by_hand():
    raw = np.array([-np.inf, 0.0, math.log(100.0), math.log(50.0)])
    # NeRF-MAE: 1 - exp(-exp(sigma) / 100)
    want = [0.0, 1 - math.exp(-0.01), 1 - math.exp(-1.0), 1 - math.exp(-0.5)]
    assert np.allclose(density_to_alpha(raw[1:], "trunc_exp"), want[1:], atol=1e-6)
    # ReLU densities: negative -> 0, 100 -> 1 - e^-1
    assert np.allclose(density_to_alpha(np.array([-5.0, 0.0, 100.0]), "relu"), [0.0, 0.0, 1 - math.exp(-1)], atol=1e-6)
    a = np.array([0.0, 0.1, 0.5, 0.99])
    assert np.allclose(density_to_alpha(np.log(np.maximum(alpha_to_density(a), 1e-30)), "trunc_exp"), a, atol=1e-5)
    with pytest.raises(ValueError, match="unknown density activation"):
        density_to_alpha(raw, "softplus")


def _grid(rng, shape=(6, 5, 4)):
    rgb = rng.uniform(0, 1, (*shape, 3)).astype(np.float32)
    sigma = rng.uniform(0, 300, shape).astype(np.float32) * (rng.uniform(size=shape) > 0.5)
    return RadianceGrid(rgb, sigma, [-1, -2, 0], [2, 1, 2])


def test_npz_round_trip_and_nerf_mae_loader_reads_the_same_alpha(tmp_path):
    g = _grid(np.random.default_rng(0))
    p = write_grid(tmp_path / "g.npz", g)
    with np.load(p) as f:  # what NeRF-MAE's loader does with our file
        rgbsigma = f["rgbsigma"]
        assert rgbsigma.shape == (6, 5, 4, 4) and list(f["resolution"]) == [6, 5, 4]
        alpha = np.clip(1.0 - np.exp(-np.exp(rgbsigma[..., -1].astype(np.float64)) / 100.0), 0.0, 1.0)
    assert np.allclose(alpha, g.alpha, atol=1e-6)
    back = read_grid(p)
    assert back.resolution == g.resolution
    assert np.allclose(back.rgb, g.rgb) and np.allclose(back.alpha, g.alpha, atol=1e-6)
    assert np.allclose(back.bbox_min, [-1, -2, 0]) and np.allclose(back.bbox_max, [2, 1, 2])


def test_foreign_layouts_relu_and_uint8(tmp_path):
    rgbsigma = np.zeros((2, 2, 2, 4), np.float32)
    rgbsigma[..., 3] = [[[-3, 0], [50, 100]], [[200, 0], [0, 0]]]
    np.savez(tmp_path / "relu.npz", rgbsigma=rgbsigma, density_activation=np.array("relu"))
    g = read_grid(tmp_path / "relu.npz")
    assert np.isclose(g.alpha[0, 1, 1], 1 - math.exp(-1)) and g.alpha[0, 0, 0] == 0
    assert np.allclose(g.bbox_max - g.bbox_min, [1, 1, 1])  # no box: the unit box
    u8 = np.zeros((2, 2, 2, 4), np.uint8)
    u8[0, 0, 0] = [255, 0, 0, 255]
    np.savez(tmp_path / "u8.npz", rgbsigma=u8)
    g = read_grid(tmp_path / "u8.npz")
    assert np.allclose(g.rgb[0, 0, 0], [1, 0, 0]) and g.alpha[0, 0, 0] > 0.999


def test_caps_and_bad_files_are_refused_before_decoding(tmp_path):
    # a header that claims 1024^3 voxels, with no data behind it: refused from the header
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1024, 1024, 1024, 4)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("rgbsigma.npy", buf.getvalue())
    with pytest.raises(InputError, match="larger than the cap"):
        read_grid(tmp_path / "huge.npz")
    np.savez(tmp_path / "nan.npz", rgbsigma=np.full((2, 2, 2, 4), np.nan, np.float32))
    with pytest.raises(InputError, match="NaN"):
        read_grid(tmp_path / "nan.npz")
    np.savez(tmp_path / "shape.npz", rgbsigma=np.zeros((2, 2, 4), np.float32))
    with pytest.raises(InputError, match=r"expected \[X, Y, Z, 4\]"):
        read_grid(tmp_path / "shape.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="not an .npz") as e:
        read_grid(tmp_path / "text.npz")
    assert e.value.short().startswith("text.npz:")
    np.savez(tmp_path / "other.npz", density=np.zeros(3))
    with pytest.raises(InputError, match="no 'rgbsigma'"):
        read_grid(tmp_path / "other.npz")


def test_pad_to_cube_centres_the_grid_and_marks_it_valid():
    x = np.ones((4, 3, 5, 2), np.float32)
    out, valid = pad_to_cube(x)
    assert out.shape == (4, 5, 5, 5) and valid.sum() == 3 * 5 * 2
    assert valid[1:4, :, 1:3].all() and not valid[0].any() and not valid[:, :, 0].any()
    assert (out[:, ~valid] == 0).all() and (out[:, valid] == 1).all()


def test_resample_keeps_thin_shells_and_prune_empties_space():
    a = np.zeros((8, 8, 8), np.float32)
    a[3] = 0.9  # a one-voxel sheet
    rgb = np.zeros((8, 8, 8, 3), np.float32)
    rgb[3] = [0.2, 0.4, 0.6]
    g = RadianceGrid.from_alpha(rgb, a, [0, 0, 0], [1, 1, 1])
    small = resample(g, 4)
    assert np.allclose(small.alpha[1], 0.45, atol=1e-5) and small.alpha[[0, 2, 3]].max() == 0  # averaged, not lost
    assert np.allclose(small.rgb[1], [0.2, 0.4, 0.6], atol=1e-5)  # colour weighted by alpha
    p = prune(g, 0.5)
    assert (p.sigma[a < 0.5] == 0).all() and np.allclose(p.alpha[3], 0.9, atol=1e-6)


def test_reconstruction_says_when_a_grid_is_unlike_the_training_grids():
    from maskworks.domains.nerf.reconstruct import calibration_notes

    valid = np.ones((8, 8, 8), bool)
    x = np.zeros((4, 8, 8, 8), np.float32)
    assert "Only 0.0%" in calibration_notes(x, valid)[0]
    x[3] = 1.0
    assert "dense scene" in calibration_notes(x, valid)[0]
    x[3] = 0.0
    x[3, :2] = 1.0  # a quarter occupied, like the training grids
    assert calibration_notes(x, valid) == []
