"""The volume renderer against closed forms: a uniform cube, a slab, a miss; cameras and distortion."""
import math

import numpy as np
import torch

from maskworks.domains.nerf.grid import RadianceGrid
from maskworks.domains.nerf.render import Camera, _undistort, camera_rays, look_at, psnr, ray_box, render, render_rays


def _cam(eye, size=8, f=40.0):
    return Camera(look_at(eye, (0, 0, 0)), f, f, size / 2, size / 2, size, size)


def test_uniform_cube_transmittance_and_colour_by_hand():
    # a 2 x 2 x 2 box, density 0.7 per unit of its longest side (2), colour (0.8, 0.2, 0.4), white background
    sigma, colour = 0.7, np.array([0.8, 0.2, 0.4])
    g = RadianceGrid(np.broadcast_to(colour, (4, 4, 4, 3)), np.full((4, 4, 4), sigma), [-1, -1, -1], [1, 1, 1])
    img = render(g, _cam((0, 0, 5), size=1, f=1.0), n_samples=64)  # the centre ray: straight through, length 2
    t = math.exp(-sigma * 2 / 2)  # length 2 world = 1 normalised unit
    assert np.allclose(img[0, 0], colour * (1 - t) + 1.0 * t, atol=1e-5)
    # a diagonal ray through the cube crosses sqrt(3) x 2 world units corner to corner (length / scale = sqrt(3))
    o = torch.tensor([[-2.0, -2.0, -2.0]])
    d = torch.tensor([[1.0, 1.0, 1.0]]) / math.sqrt(3)
    vol = torch.from_numpy(np.concatenate([np.moveaxis(g.rgb, -1, 0), g.sigma[None]])).float()
    out = render_rays(vol, g.bbox_min, g.bbox_max, o, d, 256, background=0.0)
    assert math.isclose(float(out["opacity"][0]), 1 - math.exp(-sigma * math.sqrt(3)), rel_tol=1e-4)
    assert np.allclose(out["rgb"][0].numpy(), colour * (1 - math.exp(-sigma * math.sqrt(3))), atol=1e-4)


def test_opaque_slab_hides_what_is_behind_and_misses_show_background():
    sigma = np.zeros((8, 8, 8), np.float32)
    rgb = np.zeros((8, 8, 8, 3), np.float32)
    sigma[:, :, 6:] = 1e4  # opaque red top, blue bottom behind it seen from +z
    rgb[:, :, 6:] = [1, 0, 0]
    sigma[:, :, :2] = 1e4
    rgb[:, :, :2] = [0, 0, 1]
    g = RadianceGrid(rgb, sigma, [0, 0, 0], [1, 1, 1])
    top = render(g, Camera(look_at((0.5, 0.5, 3), (0.5, 0.5, 0.5), up=(0, 1, 0)), 8, 8, 1, 1, 2, 2), n_samples=128)
    assert np.allclose(top, [1, 0, 0], atol=1e-3)
    miss = render(g, Camera(look_at((5, 5, 5), (9, 9, 9)), 8, 8, 1, 1, 2, 2), background=0.25)
    assert np.allclose(miss, 0.25)


def test_render_marches_only_rays_that_hit_and_equals_marching_every_ray():
    # render() skips rays that miss the box and reads a channels-last volume: the picture must not change
    rng = np.random.default_rng(0)
    g = RadianceGrid(rng.random((6, 7, 5, 3)), rng.random((6, 7, 5)) * 20, [-1, -0.5, -1], [1, 1, 0.5])
    cam = _cam((2.0, 1.5, 3.0), size=24, f=30.0)  # the box fills part of the picture
    img = render(g, cam, n_samples=48, background=0.3)
    o, d = camera_rays(cam)
    vol = torch.from_numpy(np.concatenate([np.moveaxis(g.rgb, -1, 0), g.sigma[None]])).float()  # [C, X, Y, Z]
    every = render_rays(vol, g.bbox_min, g.bbox_max, o, d, 48, background=0.3)["rgb"].clamp(0, 1)
    t0, t1 = ray_box(o, d, torch.tensor(g.bbox_min, dtype=torch.float32), torch.tensor(g.bbox_max, dtype=torch.float32))
    assert 0.1 < float((t1 > t0).float().mean()) < 0.9  # both kinds of rays are in the picture
    assert np.allclose(img, every.reshape(24, 24, 3).numpy(), atol=1e-5)


def test_ray_box_entry_exit_and_camera_rays_look_down_minus_z():
    t0, t1 = ray_box(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([-1.0] * 3),
                     torch.tensor([1.0] * 3))
    assert float(t0) == 4.0 and float(t1) == 6.0
    cam = Camera(np.eye(4), 10, 10, 5, 5, 10, 10)
    o, d = camera_rays(cam)
    assert o.shape == (100, 3) and torch.allclose(d.norm(dim=-1), torch.ones(100))
    centre = d.reshape(10, 10, 3)[4:6, 4:6].mean((0, 1))
    assert torch.allclose(centre / centre.norm(), torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    assert d.reshape(10, 10, 3)[0, 0, 1] > 0  # the top row looks up (+y), image rows run down


def test_undistort_inverts_opencv_distortion():
    k = (0.0578, -0.0805, -0.00098, 0.00016)  # the fox's coefficients
    x, y = torch.tensor([0.3, -0.2]), torch.tensor([-0.25, 0.1])
    r2 = x * x + y * y
    rad = 1 + k[0] * r2 + k[1] * r2 * r2
    xd = x * rad + 2 * k[2] * x * y + k[3] * (r2 + 2 * x * x)
    yd = y * rad + k[2] * (r2 + 2 * y * y) + 2 * k[3] * x * y
    xu, yu = _undistort(xd, yd, k)
    assert torch.allclose(xu, x, atol=1e-6) and torch.allclose(yu, y, atol=1e-6)


def test_psnr():
    a = np.zeros((4, 4, 3))
    assert math.isclose(psnr(a, a + 0.1), 20.0, rel_tol=1e-9) and psnr(a, a) == float("inf")
