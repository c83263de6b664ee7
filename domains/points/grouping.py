"""Farthest-point sampling, k-nearest neighbours and Point-MAE patch grouping.

FPS has two backends with the same result (the greedy farthest point, ties to the lowest index, from index 0
by default as Point-MAE's pointnet2_ops CUDA kernels start): plain torch (any device; batched) and open3d's C++
``farthest_point_down_sample`` (CPU; 2-4x faster there than the torch loop, ``maskworks bench fps``).
``backend="auto"`` takes open3d for CPU tensors when it is installed, torch otherwise. open3d hands back the
sampled points in the cloud's own order, not in the order they were picked; ``ordered=True`` restores the
pick order (a greedy pass over the samples alone: the point picked at step k is also the farthest among the
remaining samples; S² work for S samples).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _as_batched(xyz: Tensor, name: str = "xyz") -> tuple[Tensor, bool]:
    if xyz.dim() == 2:
        xyz = xyz.unsqueeze(0)
        squeeze = True
    else:
        squeeze = False
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{name} must be [N, 3] or [B, N, 3], got {list(xyz.shape)}")
    if not xyz.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {xyz.dtype}")
    return xyz, squeeze


def _open3d():
    try:
        import open3d as o3d  # noqa: PLC0415 - optional, heavy
    except ImportError:
        return None
    return o3d


def _fps_open3d(o3d, xyz: Tensor, num_samples: int, far: Tensor, ordered: bool) -> Tensor:
    """open3d's FPS per cloud; it returns points, not indices, so each point carries its index in its normal."""
    import numpy as np

    out = []
    for cloud, start in zip(xyz.detach().double().numpy(), far.tolist()):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud))
        carrier = np.zeros((len(cloud), 3))
        carrier[:, 0] = np.arange(len(cloud))
        pc.normals = o3d.utility.Vector3dVector(carrier)
        down = pc.farthest_point_down_sample(num_samples, int(start))
        idx = np.asarray(down.normals)[:, 0].astype(np.int64)  # ascending: the cloud's order
        if len(idx) < num_samples:  # open3d stops at repeated points (all left at distance 0); torch goes on
            out.append(farthest_point_sample(torch.from_numpy(cloud), num_samples, start_idx=int(start), backend="torch"))
            continue
        out.append(torch.from_numpy(_pick_order(cloud, idx, int(start)) if ordered else idx))
    return torch.stack(out)


def _pick_order(cloud, idx, start: int):
    """The samples ``idx`` (a greedy FPS set) in the order FPS picked them."""
    import numpy as np

    pts = cloud[idx]
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    cur = int(np.flatnonzero(idx == start)[0])
    min_d2 = d2[cur].copy()
    min_d2[cur] = -1.0  # picked: never again (-1 survives every minimum with a distance)
    order = [cur]
    for _ in range(len(idx) - 1):
        cur = int(min_d2.argmax())  # ties: lowest index, as the greedy pass over the whole cloud
        order.append(cur)
        np.minimum(min_d2, d2[cur], out=min_d2)
        min_d2[cur] = -1.0
    return idx[np.asarray(order)]


def farthest_point_sample(xyz: Tensor, num_samples: int, *, start_idx: int | Tensor | None = None,
                          generator: torch.Generator | None = None, backend: str = "auto",
                          ordered: bool = False) -> Tensor:
    """Indices [B, S] (or [S] for [N, 3] input) of ``num_samples`` farthest points.

    Greedy FPS: each step takes the point farthest from all chosen ones (ties: lowest index).
    The first point is ``start_idx`` (int or [B] tensor) if given, else a random index drawn
    with ``generator`` if given, else 0. ``backend``: ``"torch"`` (loops over samples, vectorised over
    batch and points; any device; pick order), ``"open3d"`` (CPU, one cloud at a time; the cloud's order, or
    pick order with ``ordered``) or ``"auto"`` (open3d on CPU when installed). The sets are the same.
    """
    if backend not in ("auto", "torch", "open3d"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'open3d', got {backend!r}")
    xyz, squeeze = _as_batched(xyz)
    b, n, _ = xyz.shape
    if not 0 < num_samples <= n:
        raise ValueError(f"num_samples must be in [1, {n}] for clouds of {n} points, got {num_samples}")
    device = xyz.device
    if start_idx is not None:
        far = torch.as_tensor(start_idx, dtype=torch.long, device=device).expand(b).clone()
    elif generator is not None:
        far = torch.randint(n, (b,), generator=generator, device=generator.device).to(device)
    else:
        far = torch.zeros(b, dtype=torch.long, device=device)
    if ((far < 0) | (far >= n)).any():
        raise ValueError(f"start_idx must be in [0, {n}), got {far.tolist()}")
    o3d = _open3d() if backend != "torch" and device.type == "cpu" else None
    if backend == "open3d" and o3d is None:
        raise RuntimeError("backend='open3d' needs open3d on the CPU (pip install maskworks[points])")
    if o3d is not None:
        out = _fps_open3d(o3d, xyz, num_samples, far, ordered)
        return out[0] if squeeze else out
    # Separate coordinate planes keep every step to contiguous [B, N] element-wise ops.
    x, y, z = (xyz[..., i].contiguous() for i in range(3))
    flat = xyz.reshape(b * n, 3)
    offsets = torch.arange(b, device=device) * n
    min_d2 = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=device)
    d2 = torch.empty_like(min_d2)
    tmp = torch.empty_like(min_d2)
    chosen = []
    for _ in range(num_samples):
        chosen.append(far)
        c = flat.index_select(0, far + offsets)  # [B, 3] current sample of each cloud
        torch.sub(x, c[:, 0:1], out=tmp)
        torch.mul(tmp, tmp, out=d2)
        torch.sub(y, c[:, 1:2], out=tmp)
        d2.addcmul_(tmp, tmp)
        torch.sub(z, c[:, 2:3], out=tmp)
        d2.addcmul_(tmp, tmp)
        torch.minimum(min_d2, d2, out=min_d2)
        far = min_d2.argmax(dim=1)
    out = torch.stack(chosen, dim=1)
    return out[0] if squeeze else out


def knn(query: Tensor, ref: Tensor, k: int, *, chunk_elems: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest ``ref`` points of every ``query`` point: (distances, indices), each [B, M, k].

    Exact squared differences (not the ``|a|^2 + |b|^2 - 2ab`` trick, which loses precision on
    far-from-origin LiDAR coordinates), processed in query chunks of at most ``chunk_elems``
    pairwise distances; results are sorted nearest first. Accepts unbatched [M, 3] / [N, 3].
    """
    query, sq = _as_batched(query, "query")
    ref, _ = _as_batched(ref, "ref")
    if query.shape[0] != ref.shape[0]:
        raise ValueError(f"batch sizes differ: query {query.shape[0]} vs ref {ref.shape[0]}")
    b, m, _ = query.shape
    n = ref.shape[1]
    if not 0 < k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    step = max(1, chunk_elems // max(1, b * n))
    dists, idxs = [], []
    for s in range(0, m, step):
        q = query[:, s:s + step]
        d2 = (q[..., 0:1] - ref[..., 0].unsqueeze(1)).square_()  # [B, m', N], one plane at a time
        for c in (1, 2):
            d2.add_((q[..., c:c + 1] - ref[..., c].unsqueeze(1)).square_())
        d, i = torch.topk(d2, k, dim=-1, largest=False, sorted=True)
        dists.append(d.sqrt_())
        idxs.append(i)
    d, i = torch.cat(dists, 1), torch.cat(idxs, 1)
    return (d[0], i[0]) if sq else (d, i)


def gather_points(xyz: Tensor, idx: Tensor) -> Tensor:
    """``xyz`` [B, N, C] indexed by ``idx`` [B, ...] -> [B, ..., C]."""
    b = xyz.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(xyz, 1, flat.unsqueeze(-1).expand(-1, -1, xyz.shape[-1]))
    return out.reshape(*idx.shape, xyz.shape[-1])


def group_points(xyz: Tensor, num_groups: int, group_size: int, *, start_idx: int | Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Point-MAE patching: FPS centres, then the ``group_size`` nearest points of each centre.

    Returns ``(neighborhoods, centers)``: neighbourhoods are centre-relative [B, G, K, 3]
    (the centre itself is among its own neighbours, at offset 0), centres [B, G, 3].
    """
    xyz, squeeze = _as_batched(xyz)
    if group_size > xyz.shape[1]:
        raise ValueError(f"group_size {group_size} exceeds the {xyz.shape[1]} points per cloud")
    center_idx = farthest_point_sample(xyz, num_groups, start_idx=start_idx, generator=generator, ordered=True)
    centers = gather_points(xyz, center_idx)
    _, idx = knn(centers, xyz, group_size)
    neighborhoods = gather_points(xyz, idx) - centers.unsqueeze(2)
    return (neighborhoods[0], centers[0]) if squeeze else (neighborhoods, centers)


def coverage_radius(xyz: Tensor, samples: Tensor) -> Tensor:
    """Max over points of the distance to the nearest sample ([B] or scalar): lower = better spread."""
    d, _ = knn(xyz, samples, 1)
    return d[..., 0].amax(dim=-1)
