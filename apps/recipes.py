"""Finding recipes by name: ``image-mae-cxr`` (core) or ``medical/spark-cxr`` (a domain's)."""
from __future__ import annotations

from importlib import import_module
from pathlib import Path


def _recipe_dirs() -> dict[str, Path]:
    dirs = {"": Path(import_module("maskworks.core").__file__).parent / "recipes"}
    domains = Path(import_module("maskworks.domains").__file__).parent
    for d in sorted(domains.iterdir()):
        if (d / "recipes").is_dir():
            dirs[d.name] = d / "recipes"
    return dirs


def list_recipes() -> list[str]:
    names = []
    for prefix, folder in _recipe_dirs().items():
        for f in sorted(folder.glob("*.yaml")):
            names.append(f"{prefix}/{f.stem}" if prefix else f.stem)
    return names


def find_recipe(name: str) -> Path:
    """A recipe name or a path to a YAML file -> the file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    prefix, _, stem = name.rpartition("/")
    folder = _recipe_dirs().get(prefix)
    if folder is not None and (folder / f"{stem}.yaml").is_file():
        return folder / f"{stem}.yaml"
    from difflib import get_close_matches

    from maskworks.core.training.config import RecipeError

    close = get_close_matches(name, list_recipes(), n=3, cutoff=0.5)
    hint = f"Did you mean {' or '.join(close)}? " if close else ""
    raise RecipeError(f"no recipe {name!r}. {hint}Available: {', '.join(list_recipes())} (or give a path to a .yaml file)")
