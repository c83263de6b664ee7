"""bench_fps on one small real cloud (skips where open3d cannot be imported)."""
from __future__ import annotations

import pytest

from maskworks.data import data_path
from maskworks.domains.points.bench import bench_fps


def test_bench_fps_small() -> None:
    try:
        import open3d  # noqa: F401
    except ImportError as e:  # open3d-cpu wheels also need system libusb-1.0
        pytest.skip(f"open3d unavailable: {e}")
    out = bench_fps(repeats=1, num_samples=64, clouds=[str(data_path("3d", "pcl_scans", "milk.pcd"))])
    row = out["clouds"][0]
    assert row["num_points"] == 13_704 and out["num_samples"] == 64
    assert row["ratio_ours_over_open3d"] > 0 and out["median_ratio"] == row["ratio_ours_over_open3d"]
    # same start point, same greedy rule: both pick the same samples, hence the same coverage
    assert row["shared_sample_fraction"] == 1.0
    assert row["coverage_radius_ours"] == pytest.approx(row["coverage_radius_open3d"], rel=1e-6)


def test_bench_fps_reports_missing_open3d(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake(name: str, *a, **k):  # type: ignore[no-untyped-def]
        if name == "open3d":
            raise ImportError("libusb-1.0.so.0: cannot open shared object file")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RuntimeError, match="open3d is needed.*libusb"):
        bench_fps(repeats=1)
