"""FPS, kNN and Point-MAE grouping against brute-force references, on real shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from maskworks.data import data_path
from maskworks.domains.points.grouping import (coverage_radius, farthest_point_sample, gather_points,
                                               group_points, knn)
from maskworks.core.io.points import read_points

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _shape(name: str, n: int = 1024) -> torch.Tensor:
    return torch.from_numpy(read_points(data_path("3d", "shapes", f"{name}_{n}.npy")).xyz)


def _fps_reference(xyz: np.ndarray, s: int, start: int) -> list[int]:
    """Textbook FPS, one point at a time in float64 numpy."""
    chosen = [start]
    d = np.full(len(xyz), np.inf)
    for _ in range(s - 1):
        d = np.minimum(d, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(d)))
    return chosen


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend,ordered", [("torch", False), ("auto", True), ("auto", False)])
def test_fps_equals_bruteforce_batched(device: str, backend: str, ordered: bool) -> None:
    """Both backends pick the textbook set; torch (and open3d with ``ordered``) in pick order, open3d
    otherwise in the cloud's order."""
    clouds = torch.stack([_shape("pyvista_airplane"), _shape("assimp_spider"), _shape("pyvista_ant")]).double()
    starts = torch.tensor([0, 17, 1023])
    idx = farthest_point_sample(clouds.to(device), 64, start_idx=starts.to(device), backend=backend, ordered=ordered).cpu()
    assert idx.shape == (3, 64) and idx.dtype == torch.long
    for b in range(3):
        ref = _fps_reference(clouds[b].numpy(), 64, int(starts[b]))
        picked_in_order = backend == "torch" or ordered or device != "cpu"
        assert idx[b].tolist() == (ref if picked_in_order else sorted(ref))
        assert len(set(idx[b].tolist())) == 64


def test_fps_float32_real_scan_and_defaults() -> None:
    milk = torch.from_numpy(read_points(data_path("3d", "pcl_scans", "milk.pcd")).xyz)
    sub = milk[::7]  # 1,958 real points
    assert farthest_point_sample(sub, 100, backend="torch").tolist() == _fps_reference(sub.double().numpy(), 100, 0)
    assert farthest_point_sample(sub, 100).tolist() == sorted(_fps_reference(sub.double().numpy(), 100, 0))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = farthest_point_sample(sub, 10, generator=g1, backend="torch")
    assert torch.equal(a, farthest_point_sample(sub, 10, generator=g2, backend="torch"))
    assert a.tolist() == _fps_reference(sub.double().numpy(), 10, int(a[0]))
    with pytest.raises(ValueError, match="num_samples must be in"):
        farthest_point_sample(sub, len(sub) + 1)
    with pytest.raises(ValueError, match="start_idx must be in"):
        farthest_point_sample(sub, 4, start_idx=len(sub))


def test_fps_covers_better_than_random() -> None:
    for name in ("pyvista_airplane", "assimp_wuson"):
        xyz = _shape(name, 2048)
        fps_r = coverage_radius(xyz, xyz[farthest_point_sample(xyz, 128)])
        gen = torch.Generator().manual_seed(0)
        rand_r = torch.stack([coverage_radius(xyz, xyz[torch.randperm(2048, generator=gen)[:128]])
                              for _ in range(5)])
        assert fps_r < rand_r.min() * 0.8, (name, float(fps_r), rand_r.tolist())
        # FPS is a 2-approximation of the optimal k-centre radius: no sample pair is closer than fps_r
        samples = xyz[farthest_point_sample(xyz, 128)]
        pair = torch.cdist(samples.double(), samples.double()) + torch.eye(128, dtype=torch.float64) * 1e9
        assert pair.min() >= fps_r.double() - 1e-6


@pytest.mark.parametrize("device", DEVICES)
def test_knn_equals_cdist_sort(device: str) -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.stack([_shape("assimp_spider"), _shape("pyvista_ant")])
    query = ref[:, torch.randperm(1024, generator=gen)[:200]] + 0.01 * torch.randn(2, 200, 3, generator=gen)
    d, i = knn(query.to(device), ref.to(device), 16, chunk_elems=50_000)  # forces several chunks
    full = torch.cdist(query.double(), ref.double(), compute_mode="donot_use_mm_for_euclid_dist")
    d_ref, i_ref = full.sort(dim=-1)
    assert torch.equal(i.cpu(), i_ref[..., :16])
    torch.testing.assert_close(d.cpu().double(), d_ref[..., :16], rtol=1e-5, atol=1e-6)


def test_knn_far_from_origin_lidar_coordinates() -> None:
    """KITTI points 30-70 m away: exact differences keep neighbour order right."""
    from maskworks.core.io.points import read_kitti_bin
    scan = torch.from_numpy(read_kitti_bin(data_path("3d", "kitti", "training", "velodyne", "000001.bin")).xyz)
    far = scan[(scan[:, 0] > 30) & (scan[:, 0] < 70)][:3000].double()
    d, i = knn(far[:300], far, 8)
    d_ref, i_ref = torch.cdist(far[:300], far, compute_mode="donot_use_mm_for_euclid_dist").sort(-1)
    torch.testing.assert_close(d, d_ref[:, :8])
    assert (d[:, 0] == 0).all()  # each query finds itself first


@pytest.mark.parametrize("device", DEVICES)
def test_group_points_matches_point_mae_definition(device: str) -> None:
    xyz = torch.stack([_shape("pyvista_airplane"), _shape("assimp_wuson")]).to(device)
    nb, centers = group_points(xyz, num_groups=32, group_size=16)
    assert nb.shape == (2, 32, 16, 3) and centers.shape == (2, 32, 3)
    xyz, nb, centers = xyz.cpu(), nb.cpu(), centers.cpu()
    for b in range(2):
        c_idx = _fps_reference(xyz[b].double().numpy(), 32, 0)
        assert torch.equal(centers[b], xyz[b, c_idx])
        dist = torch.cdist(centers[b].double(), xyz[b].double(), compute_mode="donot_use_mm_for_euclid_dist")
        nn = dist.sort(-1).indices[:, :16]
        torch.testing.assert_close(nb[b], xyz[b][nn] - centers[b][:, None], rtol=0, atol=0)
    assert (nb[:, :, 0].abs().amax() == 0)  # the centre is its own nearest neighbour
    assert nb.norm(dim=-1).amax() < 0.5  # patches are local on unit-sphere shapes


def test_gather_and_unbatched_inputs() -> None:
    xyz = _shape("pyvista_ant")
    nb, c = group_points(xyz, 8, 4, start_idx=5)
    assert nb.shape == (8, 4, 3) and torch.equal(c[0], xyz[5])
    idx = torch.tensor([[[3, 1], [0, 2]]])
    torch.testing.assert_close(gather_points(xyz[None], idx)[0, 1, 0], xyz[0])
    with pytest.raises(ValueError, match=r"\[N, 3\] or \[B, N, 3\]"):
        farthest_point_sample(torch.zeros(2, 3, 4, 3), 1)
