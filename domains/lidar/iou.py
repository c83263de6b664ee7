"""Rotated-box IoU on CPU (numpy, vectorised over all box pairs): bird's-eye view and 3-D.

Boxes are LiDAR boxes ``[x, y, z_center, l, w, h, heading]`` (see :mod:`.boxes`). The BEV overlap of
two rotated rectangles is a convex polygon whose vertices are (a) corners of one box inside the
other and (b) edge-edge crossings; we gather all 24 candidates per pair, sort the valid ones by
angle about their mean and take the shoelace area. No per-pair Python loop, so the KITTI evaluation
and NMS stay fast without a CUDA IoU kernel. 3-D IoU = BEV intersection x height overlap (boxes
only rotate about z, so this is exact).
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """Counter-clockwise BEV corners ``[M, 4, 2]`` of boxes ``[M, >=7]``."""
    b = _as_boxes(boxes)
    hl, hw = b[:, 3] / 2, b[:, 4] / 2
    local = np.stack([np.stack([hl, hw], -1), np.stack([-hl, hw], -1),
                      np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1)], 1)  # [M, 4, 2] CCW
    c, s = np.cos(b[:, 6])[:, None], np.sin(b[:, 6])[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y], -1) + b[:, None, :2]


def _inside(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """``pts`` ``[P, K, 2]`` inside CCW convex ``poly`` ``[P, 4, 2]`` (boundary inclusive) -> ``[P, K]``."""
    e = np.roll(poly, -1, axis=1) - poly  # [P, 4, 2]
    rel = pts[:, :, None, :] - poly[:, None, :, :]  # [P, K, 4, 2]
    cross = e[:, None, :, 0] * rel[..., 1] - e[:, None, :, 1] * rel[..., 0]
    return (cross >= -1e-7).all(-1)


def polygon_intersection_area(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Overlap area ``[P]`` of CCW convex quadrilaterals ``pa``, ``pb`` ``[P, 4, 2]`` (pairwise rows)."""
    p = len(pa)
    if p == 0:
        return np.zeros(0)
    a_in_b = _inside(pa, pb)
    b_in_a = _inside(pb, pa)
    # edge-edge crossings: a_i + t ra_i = b_j + u rb_j
    ra = np.roll(pa, -1, 1) - pa
    rb = np.roll(pb, -1, 1) - pb
    a0, b0 = pa[:, :, None, :], pb[:, None, :, :]
    r, s = ra[:, :, None, :], rb[:, None, :, :]
    den = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [P, 4, 4]
    qp = b0 - a0
    ok = np.abs(den) > _EPS
    safe = np.where(ok, den, 1.0)
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    hit = ok & (t >= -1e-9) & (t <= 1 + 1e-9) & (u >= -1e-9) & (u <= 1 + 1e-9)
    cross = (a0 + t[..., None] * r).reshape(p, 16, 2)
    pts = np.concatenate([pa, pb, cross], 1)  # [P, 24, 2]
    valid = np.concatenate([a_in_b, b_in_a, hit.reshape(p, 16)], 1)
    n = valid.sum(1)
    centre = (pts * valid[..., None]).sum(1) / np.maximum(n, 1)[:, None]
    ang = np.arctan2(pts[..., 1] - centre[:, None, 1], pts[..., 0] - centre[:, None, 0])
    ang = np.where(valid, ang, np.inf)
    order = np.argsort(ang, axis=1, kind="stable")
    srt = np.take_along_axis(pts, order[..., None], 1)
    vs = np.take_along_axis(valid, order, 1)
    srt = np.where(vs[..., None], srt, srt[:, :1])  # pad with the first vertex: zero-area edges
    nxt = np.roll(srt, -1, 1)
    area = 0.5 * (srt[..., 0] * nxt[..., 1] - srt[..., 1] * nxt[..., 0]).sum(1)
    return np.where(n >= 3, np.abs(area), 0.0)


def _pairwise(a: np.ndarray, b: np.ndarray, chunk: int) -> np.ndarray:
    ca, cb = bev_corners(a), bev_corners(b)
    out = np.zeros((len(ca), len(cb)))
    if len(ca) == 0 or len(cb) == 0:
        return out
    # cheap circumscribed-circle rejection: most pairs in a scene are far apart
    ra = 0.5 * np.hypot(a[:, 3], a[:, 4])
    rb = 0.5 * np.hypot(b[:, 3], b[:, 4])
    d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    ii, jj = np.nonzero(d <= ra[:, None] + rb[None, :] + 1e-6)
    for s in range(0, len(ii), chunk):
        i, j = ii[s:s + chunk], jj[s:s + chunk]
        out[i, j] = polygon_intersection_area(ca[i], cb[j])
    return out


def _as_boxes(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or (len(x) and x.shape[1] < 7):
        raise ValueError(f"boxes must be [M, 7] (x, y, z, l, w, h, heading), got {list(x.shape)}")
    return x.reshape(len(x), -1) if len(x) else np.zeros((0, 7))


def bev_intersection(a: np.ndarray, b: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """BEV overlap areas ``[M, N]`` (m^2) of boxes ``a`` ``[M, 7]`` and ``b`` ``[N, 7]``."""
    return _pairwise(_as_boxes(a), _as_boxes(b), chunk)


def bev_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bird's-eye-view IoU ``[M, N]`` of rotated boxes."""
    a, b = _as_boxes(a), _as_boxes(b)
    inter = _pairwise(a, b, 4096)
    union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None] - inter
    return inter / np.maximum(union, _EPS)


def iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3-D IoU ``[M, N]`` of boxes rotated about z (BEV intersection x vertical overlap)."""
    a, b = _as_boxes(a), _as_boxes(b)
    inter = _pairwise(a, b, 4096)
    top = np.minimum(a[:, None, 2] + a[:, None, 5] / 2, b[None, :, 2] + b[None, :, 5] / 2)
    bot = np.maximum(a[:, None, 2] - a[:, None, 5] / 2, b[None, :, 2] - b[None, :, 5] / 2)
    inter = inter * np.maximum(top - bot, 0.0)
    va, vb = a[:, 3] * a[:, 4] * a[:, 5], b[:, 3] * b[:, 4] * b[:, 5]
    return inter / np.maximum(va[:, None] + vb[None] - inter, _EPS)


def nms_bev(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.1) -> np.ndarray:
    """Greedy rotated BEV NMS; indices kept, highest score first."""
    boxes, scores = _as_boxes(boxes), np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    iou = bev_iou(boxes[order], boxes[order])
    keep = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1:] &= iou[i, i + 1:] <= iou_threshold
    return order[keep]
