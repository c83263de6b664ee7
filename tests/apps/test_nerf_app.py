"""The NeRF tab's handler and ``maskworks predict nerf/reconstruct`` on the same file give the same JSON."""
import json

import numpy as np
import pytest


@pytest.mark.slow  # loads the model twice (tab and CLI) and renders six views: ~30 s on one free CPU thread
def test_tab_handler_and_cli_agree(tmp_path):
    from maskworks.apps.cli import main
    from maskworks.apps.tabs import nerf as tab
    from maskworks.data import data_path

    src = data_path("nerf", "meshes", "featuretype_cad.ply")
    md, slices, views, files, j = tab.run(str(src), 0.75, "random", 0)
    assert slices.ndim == 3 and views.ndim == 3 and len(files) == 4  # JSON, reconstruction .npz, two pictures
    assert "nearest visible patch" in md and f"{j['model']['loss']:.4f}" in md
    rc = main(["predict", "nerf/reconstruct", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    cli = json.loads((tmp_path / "out" / "featuretype_cad.json").read_text())
    for key in ("model", "nearest_visible_patch", "views", "masked_patches", "grid_resolution", "occupied_fraction",
                "render_min_alpha"):
        assert cli[key] == j[key], key
    assert j["masked_patches"] == 384
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["featuretype_cad.json", "featuretype_cad.reconstruction.npz", "featuretype_cad.slices.png",
                       "featuretype_cad.views.png", "summary.json"]


def test_shipped_model_beats_the_nearest_visible_patch_on_a_shipped_grid():
    """On the lego grid (a training grid: this checks that the shipped weights are the trained ones)."""
    from maskworks.apps.tabs.nerf import reconstructor
    from maskworks.data import data_path
    from maskworks.domains.nerf.grid import read_grid

    r = reconstructor().predict_grid(read_grid(data_path("nerf", "grids", "lego_160.npz")), "lego", seed=1)
    assert r.model_errors["loss"] < r.baseline_errors["loss"]
    assert np.mean([v["psnr_recon"] for v in r.views]) > np.mean([v["psnr_baseline"] for v in r.views])


def test_bad_inputs_get_one_clear_message(tmp_path):
    import gradio as gr

    from maskworks.apps.tabs import nerf as tab

    (tmp_path / "broken.glb").write_bytes(b"nope")
    with pytest.raises(gr.Error, match=r"broken.glb: not a binary glTF"):
        tab.run(str(tmp_path / "broken.glb"), 0.75, "random", 0)
    with pytest.raises(gr.Error, match="Upload a mesh"):
        tab.run(None, 0.75, "random", 0)


def test_predict_grid_writes_nerf_mae_npz_and_reports_bad_files(tmp_path):
    import trimesh

    from maskworks.apps.cli import main
    from maskworks.domains.nerf.grid import read_grid

    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "ball.obj")
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    rc = main(["predict", "nerf/grid", str(tmp_path / "ball.obj"), str(tmp_path / "bad.ply"), "--out",
               str(tmp_path / "out"), "--resolution", "24", "--no-progress"])
    assert rc == 2  # one bad input, reported, the other done
    g = read_grid(tmp_path / "out" / "ball.grid.npz")
    assert g.resolution == (24, 24, 24) and np.allclose(g.bbox_max - g.bbox_min, 2.2, atol=0.01)  # unit sphere + 5 % margin a side
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["done"] == 1 and "no 'ply' magic" in summary["failed"][0]["error"]
