"""Pre-training data: model inputs, augmentation against exact rotations, the recipe's smoke run."""
import math

import numpy as np
import torch

from maskworks.domains.nerf.grid import RadianceGrid
from maskworks.domains.nerf.pretrain import augment, cube_box, downsample, model_input


def test_model_input_zeroes_colour_of_empty_space_and_pads():
    rgb = np.full((8, 4, 4, 3), 0.5, np.float32)
    alpha = np.zeros((8, 4, 4), np.float32)
    alpha[2:6] = 0.8
    g = RadianceGrid.from_alpha(rgb, alpha, [0, 0, 0], [2, 1, 1])
    x, valid = model_input(g, 8)
    assert x.shape == (4, 8, 8, 8) and valid.sum() == 8 * 4 * 4
    assert (x[:3, :2] == 0).all() and np.allclose(x[:3, 3, 3, 3], 0.5) and np.isclose(x[3, 3, 3, 3], 0.8, atol=1e-5)
    lo, hi = cube_box(g, 8)
    assert np.allclose(lo, [0, -0.5, -0.5]) and np.allclose(hi, [2, 1.5, 1.5])


def test_augment_identity_and_quarter_turn():
    torch.manual_seed(0)
    x = torch.rand(1, 4, 16, 16, 16)
    valid = torch.ones(1, 1, 16, 16, 16)
    still = torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.5]])  # angle 0, scale 1, no shift
    a, v = augment(x, valid, still, 8, scale=(0.5, 1.5), crop=0.1)
    want, _ = downsample(x, valid, 8)
    assert torch.allclose(a, want, atol=1e-5) and v.all()
    quarter = torch.tensor([[0.25, 0.5, 0.5, 0.5, 0.5]])  # 90 degrees about z
    a, _ = augment(x, valid, quarter, 16, scale=(0.5, 1.5), crop=0.1)
    inner = (slice(None), slice(None), slice(2, 14), slice(2, 14), slice(None))
    err = [(a[inner] - torch.rot90(x, k, dims=(2, 3))[inner]).abs().mean().item() for k in (1, 3)]
    assert min(err) < 1e-4  # exactly a quarter turn (sense depends on the convention), nothing else
    zoom = torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.5]])  # scale 0.5: the grid shrinks, the border is padding
    _, v = augment(x, valid, zoom, 16, scale=(0.5, 1.5), crop=0.1)
    assert not v[0, 0, 0, 0, 0] and v[0, 0, 8, 8, 8] and math.isclose(v.float().mean().item(), 0.125, abs_tol=0.03)


def test_recipe_smoke_trains_and_saves_a_loadable_model(tmp_path):
    from maskworks.apps.recipes import find_recipe
    from maskworks.core.training import fit, load_recipe
    from maskworks.core.training.task import load_trained

    cfg = load_recipe(find_recipe("nerf/nerf-mae"), "smoke", ["trainer.max_steps=2", "trainer.ckpt_every=2"])
    summary = fit(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    task, model = load_trained(tmp_path / "run")
    assert model.input_size == 32 and len(task.build_dataset()) == 8  # every shipped grid, repeat 1


def test_vit_preset_builds_the_core_mae_on_3d_patches():
    from maskworks.apps.recipes import find_recipe
    from maskworks.core.training import load_recipe
    from maskworks.core.training.task import load_task
    from maskworks.domains.nerf.nerf_mae import ViTNeRFMAE

    cfg = load_recipe(find_recipe("nerf/nerf-mae"), "vit", [])
    model = load_task(cfg).build_model()
    assert isinstance(model, ViTNeRFMAE) and model.mae.patch_size == (4, 4, 4) and model.mae.grid == (8, 8, 8)
    assert model.masking.ratio == 0.75
