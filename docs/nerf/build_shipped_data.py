"""Rebuild data/nerf/ from the shared 3-D subset and the two radiance-field fits (runs/fit, made by
``maskworks eval nerf/fit``; see docs/nerf/README.md). Run from the repository root:

    python docs/nerf/build_shipped_data.py /path/to/shared/data/3d runs/fit
"""
import shutil
import sys
from pathlib import Path

from maskworks.domains.nerf.grid import prune, read_grid, resample, write_grid
from maskworks.domains.nerf.mesh import grid_from_mesh

SHARED, FITS = Path(sys.argv[1]), Path(sys.argv[2])
OUT = Path("data/nerf")
# mesh -> its up axis (featuretype is an STL-born CAD part, z up; the others are y-up graphics files)
MESHES = {"spot.ply": "y", "duck_textured.glb": "y", "featuretype_cad.ply": "z", "cycloidal_cad.ply": "z",
          "stanford_bunny.ply": "y", "armadillo.ply": "y"}
COPIED = ["spot.ply", "duck_textured.glb", "featuretype_cad.ply"]  # small meshes the tab offers as examples
SIDE = 64

(OUT / "grids").mkdir(parents=True, exist_ok=True)
(OUT / "meshes").mkdir(parents=True, exist_ok=True)
for name, up in MESHES.items():
    g = grid_from_mesh(SHARED / "meshes" / name, SIDE, up=up)
    write_grid(OUT / "grids" / f"{Path(name).stem}.npz", g, dtype="float16")
    print(name, g.resolution, g.notes)
for name in COPIED:
    shutil.copy(SHARED / "meshes" / name, OUT / "meshes" / name)
for scene in ("lego_160", "fox_270x480"):
    g = read_grid(FITS / f"{scene}.npz")
    small = prune(resample(g, tuple(max(1, round(SIDE * r / max(g.resolution))) for r in g.resolution)))
    write_grid(OUT / "grids" / f"{scene}.npz", small, dtype="float16")
    print(scene, g.resolution, "->", small.resolution)
