import math

import pytest
import torch

from maskworks.core.masking import (
    NTU25_PARTS, BlockMasking, BodyPartMasking, ColorNoiseMasking, GridBlockMasking, HardPatchMasking,
    PointBlockMasking, RadialSectorMasking, RandomMasking, RunningCellMasking, TubeMasking,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def components(mask2d: torch.Tensor) -> int:
    """Number of 4-connected components of True cells (flood fill)."""
    m = mask2d.clone().tolist()
    h, w = len(m), len(m[0])
    count = 0
    for i in range(h):
        for j in range(w):
            if m[i][j]:
                count += 1
                stack = [(i, j)]
                m[i][j] = False
                while stack:
                    a, b = stack.pop()
                    for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        x, y = a + da, b + db
                        if 0 <= x < h and 0 <= y < w and m[x][y]:
                            m[x][y] = False
                            stack.append((x, y))
    return count


@pytest.mark.parametrize("strategy,grid", [
    (RandomMasking(0.75), (14, 14)), (BlockMasking(0.4), (14, 14)), (GridBlockMasking(0.6, 2), (14, 14)),
    (ColorNoiseMasking(0.75, "band"), (14, 14)), (TubeMasking(0.9), (8, 14, 14)),
    (RunningCellMasking(0.5), (8, 14, 14)), (GridBlockMasking(0.75, 4), (8, 8, 8)),
])
def test_seeded_determinism_and_exact_ratio(strategy, grid):
    a = strategy(4, grid, generator=gen(1))
    b = strategy(4, grid, generator=gen(1))
    c = strategy(4, grid, generator=gen(2))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)
    n = math.prod(grid)
    counts = a.flat.sum(1)
    assert (counts == counts[0]).all()
    assert abs(a.ratio - strategy.ratio) <= 1 / n * math.prod(getattr(strategy, "block", 1) if isinstance(
        getattr(strategy, "block", 1), tuple) else [getattr(strategy, "block", 1)] * len(grid)) + 0.02


def test_random_masking_is_uniform_over_positions():
    m = RandomMasking(0.75)(4000, (4, 4), generator=gen())
    freq = m.mask.float().mean(0)
    assert torch.allclose(freq, torch.full_like(freq, 0.75), atol=0.03)


def test_grid_block_masks_whole_blocks():
    m = GridBlockMasking(0.6, block=2)(8, (14, 14), generator=gen())
    blocks = m.mask.reshape(8, 7, 2, 7, 2).permute(0, 1, 3, 2, 4).reshape(8, 49, 4)
    assert (blocks.all(-1) | ~blocks.any(-1)).all()  # each 2x2 block all masked or all visible
    assert (m.flat.sum(1) == 4 * (49 - int(49 * 0.4))).all()


def test_grid_block_3d_blocks():
    m = GridBlockMasking(0.75, block=(2, 2, 2))(3, (8, 8, 8), generator=gen())
    cubes = m.mask.reshape(3, 4, 2, 4, 2, 4, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(3, 64, 8)
    assert (cubes.all(-1) | ~cubes.any(-1)).all()
    assert (m.flat.sum(1) == 8 * 48).all()


def test_grid_block_rejects_indivisible_grid():
    with pytest.raises(ValueError, match="divisible"):
        GridBlockMasking(0.6, 4)(1, (14, 14))


def test_block_masking_is_blockier_than_random():
    b = BlockMasking(0.4)(20, (14, 14), generator=gen())
    r = RandomMasking(0.4)(20, (14, 14), generator=gen())
    cb = sum(components(x) for x in b.mask) / 20
    cr = sum(components(x) for x in r.mask) / 20
    assert cb < cr / 3, (cb, cr)


def neighbour_agreement(mask):
    m = mask.float()
    return float(((m[:, 1:, :] == m[:, :-1, :]).float().mean() + (m[:, :, 1:] == m[:, :, :-1]).float().mean()) / 2)


def test_color_noise_spatial_character():
    kw = dict(generator=gen())
    low = neighbour_agreement(ColorNoiseMasking(0.5, "low")(50, (16, 16), **kw).mask)
    rnd = neighbour_agreement(RandomMasking(0.5)(50, (16, 16), **kw).mask)
    high = neighbour_agreement(ColorNoiseMasking(0.5, "high")(50, (16, 16), **kw).mask)
    assert low > rnd + 0.2 and high < rnd - 0.05, (low, rnd, high)


@pytest.mark.parametrize("kind", ["low", "high", "band", "bandstop"])
def test_color_noise_spectrum_lies_in_the_pass_band(kind):
    from maskworks.core.masking.strategies import _radial_filter

    s = ColorNoiseMasking(0.5, kind).scores(8, (32, 32), generator=gen())
    power = torch.fft.rfft2(s).abs() ** 2
    passband = _radial_filter((32, 32), kind, "cpu").bool()
    assert power[:, ~passband].sum() < 1e-6 * power.sum()


def test_color_noise_aliases_and_bad_kind():
    assert ColorNoiseMasking(0.5, "green").kind == "band"
    with pytest.raises(ValueError, match="low, high, band or bandstop"):
        ColorNoiseMasking(0.5, "pink")


def test_tubes_are_constant_over_time():
    m = TubeMasking(0.9)(3, (8, 14, 14), generator=gen())
    assert (m.mask == m.mask[:, :1]).all()
    assert (m.mask[:, 0].flatten(1).sum(1) == 196 - 19).all()  # int(196 * 0.1) kept per frame


def test_running_cell_pattern():
    m = RunningCellMasking(0.5)(4, (8, 4, 4), generator=gen())
    cells = m.mask.reshape(4, 8, 2, 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(4, 8, 4, 4)
    assert (cells.sum(-1) == 2).all()  # exactly 2 of 4 masked in every cell, every frame
    # the pattern moves: consecutive frames differ, and over 4 frames every place is masked twice
    assert not (m.mask[:, 1:] == m.mask[:, :-1]).all(dim=(2, 3)).any()
    assert (m.mask[:, :4].sum(1) == 2).all()


def test_point_block_masks_nearest_to_a_seed():
    centers = torch.rand(4, 64, 3, generator=gen())
    m = PointBlockMasking(0.4)(4, (64,), generator=gen(3), centers=centers)
    for b in range(4):
        # a seed exists whose distance to every masked centre is <= to every kept centre
        d = torch.cdist(centers[b], centers[b])
        ok = [(d[s][m.mask[b]].max() <= d[s][~m.mask[b]].min()) for s in range(64)]
        assert any(ok)
    assert (m.flat.sum(1) == 64 - int(64 * 0.6)).all()


def test_point_block_ratio_range_draws_one_ratio_per_call():
    c = torch.rand(2, 64, 3)
    ratios = {round(PointBlockMasking((0.25, 0.45))(2, (64,), generator=gen(s), centers=c).ratio, 3) for s in range(10)}
    assert len(ratios) > 3 and all(0.2 <= r <= 0.47 for r in ratios)


def azimuth_deg(p):
    return torch.rad2deg(torch.atan2(p[..., 1], p[..., 0])) % 360


def test_radial_sectors_are_whole_and_at_ratio():
    g = gen()
    r = 5 + 60 * torch.rand(1, 20000, generator=g)
    a = 2 * math.pi * torch.rand(1, 20000, generator=g)
    pts = torch.stack([r * torch.cos(a), r * torch.sin(a), torch.zeros_like(r)], -1)
    s = RadialSectorMasking(0.8, sector_deg=1.0)
    m = s(1, (20000,), generator=gen(1), points=pts)
    assert abs(m.ratio - 0.8) < 1e-3
    sector = s.sector_index(pts)[0]
    mixed = 0
    for k in range(360):
        sel = m.mask[0][sector == k]
        if len(sel) and sel.any() and not sel.all():
            mixed += 1
    assert mixed <= 1  # whole sectors, at most one cut to hit the exact count
    # kept voxels form contiguous 1-degree sectors: every kept point's sector holds only kept points
    kept_sectors = sector[~m.mask[0]].unique()
    assert 60 <= len(kept_sectors) <= 80  # ~20 % of 360


def test_radial_sectors_measured_from_the_sensor():
    pts = torch.tensor([[[11.0, 0.5, 0], [9.0, 0.5, 0]]])  # both at +y of a sensor at (10, 0)
    s = RadialSectorMasking(0.5, sector_deg=90, sensor=(10.0, 0.0, 0.0))
    sec = s.sector_index(pts)[0].tolist()
    assert sec == [0, 1]  # first quadrant vs second quadrant, seen from the sensor


def test_range_aware_keeps_more_far_voxels():
    g = gen()
    r = 2 + 68 * torch.rand(1, 30000, generator=g)
    a = 2 * math.pi * torch.rand(1, 30000, generator=g)
    pts = torch.stack([r * torch.cos(a), r * torch.sin(a), torch.zeros_like(r)], -1)
    s = RadialSectorMasking(0.8, range_aware=True, band_keep=(1.0, 1.5, 3.0))
    kept_far, kept_near = [], []
    for seed in range(5):
        m = s(1, (30000,), generator=gen(seed), points=pts)
        band = s.band_index(pts)[0]
        kept_near.append((~m.mask[0][band == 0]).float().mean())
        kept_far.append((~m.mask[0][band == 2]).float().mean())
    assert sum(kept_far) / 5 > 1.5 * sum(kept_near) / 5


def test_body_parts_masked_whole_and_constant_over_time():
    s = BodyPartMasking(0.4)
    m = s(6, (10, 25), generator=gen())
    assert (m.mask == m.mask[:, :1]).all()
    per = m.mask[:, 0]
    assert (per.sum(1) == 25 - int(25 * 0.6)).all()
    for b in range(6):
        partial = [n for n, js in NTU25_PARTS.items() if 0 < int(per[b, js].sum()) < len(js)]
        assert len(partial) <= 1


def test_body_parts_must_cover_the_joints():
    with pytest.raises(ValueError, match="belong to no part"):
        BodyPartMasking(0.5, parts={"a": [0, 2]})


def test_hard_patches_always_masked_and_share_grows():
    loss_pred = torch.rand(4, 196, generator=gen())
    s = HardPatchMasking(0.75, max_hard=0.5)
    early = s(4, (196,), generator=gen(1), loss_pred=loss_pred, progress=0.0)
    late = s(4, (196,), generator=gen(1), loss_pred=loss_pred, progress=1.0)
    n_mask = 196 - 49
    hardest = loss_pred.topk(int(n_mask * 0.5), dim=1).indices
    assert late.flat.gather(1, hardest).all()
    # early in training the mask ignores the predictor: the hardest are masked only at the base rate
    assert early.flat.gather(1, hardest).float().mean() < 0.9
    assert s.hard_share(0.5) == 0.25
