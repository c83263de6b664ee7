"""Recipes are YAML files; presets and ``--set key=value`` overrides are applied on top."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterable

import yaml


class RecipeError(ValueError):
    """A recipe or an override that cannot be used, with what to change."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-3`` is a float as in YAML 1.2 (YAML 1.1 wants ``1.0e-3`` and
    would hand a learning rate written ``1e-3`` to the trainer as a string)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """YAML as recipes read it (safe; exponent floats without a dot are floats)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _set_dotted(cfg: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise RecipeError(f"{source}: cannot set {key!r}: {p!r} is not a section")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def apply_overrides(cfg: dict, overrides: Iterable[str] | dict, source: str = "--set") -> dict:
    """Return a copy of ``cfg`` with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    out = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else []
    if not isinstance(overrides, dict):
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise RecipeError(f"{source} {item!r}: expected key=value, e.g. trainer.max_steps=100")
            k, v = item.split("=", 1)
            parsed.append((k.strip(), parse_yaml(v)))
        items = parsed
    for k, v in items:
        _set_dotted(out, k, v, source)
    return out


def check_settings(section: str, given: dict | None, defaults: dict[str, Any],
                   free: Iterable[str] = ()) -> dict[str, Any]:
    """``given`` over ``defaults``, refused with the key's name when a key is unknown or a number is not a
    number (whole numbers where the default is one; ``None`` defaults and keys in ``free`` are not checked)."""
    given = dict(given or {})
    if not isinstance(given, dict):
        raise RecipeError(f"{section} must be a section of key: value settings, got {given!r}")
    unknown = set(given) - set(defaults)
    if unknown:
        raise RecipeError(f"unknown {section} settings {sorted(unknown)}; known: {sorted(defaults)}")
    out = {**defaults, **given}
    for key, default in defaults.items():
        value = out[key]
        if key in free or value is None or isinstance(default, bool) or not isinstance(default, (int, float)):
            continue
        whole = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise RecipeError(f"{section}.{key} must be {'a whole number' if whole else 'a number'}, got {value!r} "
                              f"(e.g. --set {section}.{key}={default})")
    return out


def load_recipe(path: str | Path, preset: str | None = None, overrides: Iterable[str] = ()) -> dict:
    """Load a recipe, apply a named preset (its ``presets:`` section), then ``--set`` overrides."""
    path = Path(path)
    try:
        cfg = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise RecipeError(f"recipe {path} must be a mapping with a 'task:' entry")
    presets = cfg.pop("presets", {}) or {}
    cfg.setdefault("recipe", {})["source"] = str(path)
    if preset:
        if preset not in presets:
            raise RecipeError(f"recipe {path.name} has no preset {preset!r}; presets: {sorted(presets) or 'none'}")
        cfg = apply_overrides(cfg, presets[preset], source=f"preset {preset}")
        cfg["recipe"]["preset"] = preset
    return apply_overrides(cfg, overrides)


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config (YAML) so every run records exactly what it ran."""
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False))
