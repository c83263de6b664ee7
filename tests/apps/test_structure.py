"""The project's shape, checked: every entry and every recipe's task loads, names are registered once,
imports point one way (apps -> domains -> core, no domain -> domain), no source file over 500 lines."""
from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import pytest

from maskworks.apps.entries import KINDS, DuplicateEntryError, collect
from maskworks.apps.recipes import find_recipe, list_recipes
from maskworks.core.training import load_recipe, load_task

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"core": "maskworks.core", "domains": "maskworks.domains", "apps": "maskworks.apps"}


@pytest.mark.parametrize("kind", KINDS)
def test_every_entry_imports_and_is_callable(kind):
    table = collect(kind)
    assert table
    for name, entry in table.items():
        mod, fn = entry.split(":")
        assert callable(getattr(importlib.import_module(mod), fn)), (kind, name, entry)


def test_every_recipe_and_preset_names_a_task_that_loads_and_accepts_it():
    names = list_recipes()
    assert len(names) >= 10
    for name in names:
        path = find_recipe(name)
        presets = [None, *sorted(_presets(path))]
        for preset in presets:
            cfg = load_recipe(path, preset)
            task = load_task(cfg)
            task.check_recipe()  # no section it would ignore, its own sections type-check


def _presets(path: Path) -> list[str]:
    from maskworks.core.training.config import parse_yaml

    return list((parse_yaml(path.read_text()) or {}).get("presets") or {})


def test_a_name_registered_twice_is_an_error(monkeypatch):
    import maskworks.apps.entries as entries

    fake = types.ModuleType("maskworks.apps.entries.zz_fake")
    fake.TABS = {"Masking strategies": "x:y"}  # the core's first tab
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    real = entries.pkgutil.iter_modules

    def with_fake(path):
        yield from real(path)
        yield types.SimpleNamespace(name="zz_fake")

    monkeypatch.setattr(entries.pkgutil, "iter_modules", with_fake)
    with pytest.raises(DuplicateEntryError, match="'Masking strategies'.*core.py.*zz_fake.py"):
        collect("TABS")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out.append((".".join([pkg, *parts]), f))
    return out


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            found |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = pkg.rsplit(".", n.level - 1)[0] if n.level > 1 else pkg
                base = f"{up}.{base}" if base else up
            found.add(base)
    return {m for m in found if m.startswith("maskworks.")}


def test_imports_point_one_way():
    bad = []
    for name, path in _modules():
        for m in _imports(name, path):
            if name.startswith("maskworks.core") and m.startswith(("maskworks.domains", "maskworks.apps")):
                bad.append(f"{name} imports {m} (core must not know domains or apps)")
            if name.startswith("maskworks.domains."):
                mine = name.split(".")[2]
                if m.startswith("maskworks.apps"):
                    bad.append(f"{name} imports {m} (domains are libraries; apps own the interfaces)")
                if m.startswith("maskworks.domains.") and m.split(".")[2] != mine:
                    bad.append(f"{name} imports {m} (a domain never imports another; share through core)")
    assert not bad, "\n".join(bad)


def test_domains_hold_no_command_line_or_ui():
    offenders = [str(p.relative_to(ROOT)) for _, p in _modules() if "domains" in p.parts
                 and any(s in p.read_text() for s in ("import argparse", "import gradio", "ArgumentParser("))]
    assert not offenders, offenders


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for _, p in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
