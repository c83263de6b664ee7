"""Any input -> a radiance grid: an ``.npz`` grid, a mesh, or posed images (a zip or a folder with
``transforms.json``, fitted by :mod:`.fit`)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from maskworks.core.io import InputError

from .fit import FitConfig, fit_radiance_grid
from .grid import RadianceGrid, read_grid
from .mesh import MESH_SUFFIXES, grid_from_mesh
from .scenes import TRANSFORMS_NAMES, read_posed_images

SUFFIXES = (".npz", *MESH_SUFFIXES, ".zip")
QUICK_FIT = FitConfig(resolution=48, coarse_steps=100, steps=200, growth=(0.5, 1.0), rays=2048, samples=96)


def is_scene_folder(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in TRANSFORMS_NAMES)


def read_input(path: str | Path, resolution: int = 64, up: str = "y", fit: FitConfig | None = None,
               downscale: int = 1, progress: Callable[[int, int, dict], None] | None = None) -> RadianceGrid:
    """The grid of a file. Meshes are voxelised at ``resolution`` (``up``: their up axis); posed images
    are fitted with ``fit`` (default :data:`QUICK_FIT`, about a minute on a CPU) and the held-out PSNR
    goes into the grid's notes."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file", "check the path")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_grid(path)
    if suffix in MESH_SUFFIXES:
        return grid_from_mesh(path, resolution, up=up)
    if suffix == ".zip" or is_scene_folder(path):
        scene = read_posed_images(path, downscale=downscale)
        res = fit_radiance_grid(scene, fit or QUICK_FIT, progress=progress)
        g = res.grid
        g.notes.append(f"fitted to {res.views_train} views at {res.image_size[0]}x{res.image_size[1]}; held-out PSNR "
                       + (f"{res.heldout_psnr:.2f} dB on {res.views_test} views" if res.heldout_psnr is not None
                          else "not measured (fewer than 10 views)"))
        return g
    raise InputError(path, f"unsupported input {path.suffix!r}",
                     "give a NeRF-MAE grid (.npz), a mesh (.ply, .obj, .glb, .stl, .off) or a zip of transforms.json + images")
