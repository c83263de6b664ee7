"""The batch-prediction driver every ``maskworks predict`` uses: names, shards, resume, failures."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from maskworks.core.batch import gather_inputs, parse_shard, run_batch
from maskworks.core.io import InputError


@dataclass
class Echo:
    text: str

    def to_json(self) -> dict:
        return {"length": len(self.text)}

    def write(self, base: Path) -> list[Path]:
        p = base.with_name(base.name + "_copy.txt")
        p.write_text(self.text)
        return [p]


def echo(path: Path) -> Echo:
    text = Path(path).read_text()
    if text == "bad":
        raise InputError(path, "holds 'bad'", "write something else")
    return Echo(text)


def make_tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    for rel, text in {"1.2.840.1.dcm": "x", "1.2.840.2.dcm": "yy", "a/b/1.2.840.1.dcm": "zzz", ".hidden.dcm": "w",
                      "scan.png": "p", "scan.dcm": "d", "notes.txt": "ignored"}.items():
        (root / rel).write_text(text)


def test_names_keep_the_whole_name_and_sub_path(tmp_path):
    make_tree(tmp_path / "in")
    stems = {it.stem for it in gather_inputs([tmp_path / "in"], [".dcm", ".png"])}
    # UIDs are not cut at the first dot; sub-folders kept; no hidden outputs; colliding stems keep extensions
    assert stems == {"1.2.840.1", "1.2.840.2", "a/b/1.2.840.1", "_hidden", "scan.png", "scan.dcm"}


def test_two_shards_equal_one_run_and_resume_skips(tmp_path):
    make_tree(tmp_path / "in")
    items = gather_inputs([tmp_path / "in"], [".dcm", ".png"])
    one = run_batch(items, echo, tmp_path / "one", progress=False, log=lambda s: None, warn=lambda s: None)
    for i in range(2):
        run_batch(items, echo, tmp_path / "two", progress=False, shard_spec=(i, 2), log=lambda s: None, warn=lambda s: None)
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if "summary" not in p.name)
    assert files(tmp_path / "one") == files(tmp_path / "two")
    assert len(one.done) == 6 and one.exit_code == 0
    again = run_batch(items, echo, tmp_path / "one", progress=False, log=lambda s: None, warn=lambda s: None)
    assert len(again.skipped) == 6 and not again.done
    rec = json.loads((tmp_path / "one" / "a" / "b" / "1.2.840.1.json").read_text())
    assert rec["length"] == 3 and rec["outputs"] == ["a/b/1.2.840.1_copy.txt"]


def test_failures_are_reported_and_set_the_exit_code(tmp_path):
    (tmp_path / "good.dcm").write_text("ok")
    (tmp_path / "bad.dcm").write_text("bad")
    items = gather_inputs([tmp_path / "good.dcm", tmp_path / "bad.dcm", tmp_path / "missing.dcm"], [".dcm"])

    def job(p: Path) -> Echo:
        if not p.exists():
            raise RuntimeError("a bug")
        return echo(p)

    rep = run_batch(items, job, tmp_path / "out", progress=False, log=lambda s: None, warn=lambda s: None)
    kinds = sorted(f["kind"] for f in json.loads(rep.summary_path.read_text())["failed"])
    assert kinds == ["crash", "input"] and rep.exit_code == 1 and rep.done == [str(tmp_path / "good.dcm")]


@pytest.mark.parametrize("text", ["1", "2/2", "a/b", "-1/3"])
def test_bad_shard_is_an_input_error(text):
    with pytest.raises(InputError):
        parse_shard(text)
    assert parse_shard("1/4") == (1, 4)
