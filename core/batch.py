"""Batch prediction, the same for every job: walk inputs, shard, skip what is done, never overwrite,
report failures.

Every ``maskworks predict`` entry is argparse over :func:`run_batch`; a job supplies ``predict(path)``
returning a result with ``to_json() -> dict`` and ``write(base: Path) -> list[Path]`` (its pictures
and files, each named ``base`` + a suffix). For each input the driver writes the job's files and then,
last and atomically, ``<stem>.json``: that file's presence is what marks the input done, so a killed
run continues where it stopped. Output names keep the input's whole name (only a known extension is
dropped, and not even that when two inputs would then collide) and its sub-path below the folder it
was found in, so DICOMs named by UID never overwrite each other.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from maskworks.core.io.errors import InputError


class JobResult(Protocol):
    def to_json(self) -> dict: ...

    def write(self, base: Path) -> list[Path]: ...


@dataclass(frozen=True)
class BatchItem:
    path: Path  # the file to read
    stem: str   # output name relative to the output folder, without suffix (posix, may hold sub-folders)


def _strip_suffix(name: str, suffixes: Sequence[str]) -> str:
    low = name.lower()
    for s in sorted(suffixes, key=len, reverse=True):  # longest first: .pcd.bin before .bin, .nii.gz before .gz
        if low.endswith(s.lower()) and len(name) > len(s):
            return name[: -len(s)]
    return name


def _safe(part: str) -> str:
    """A path part that is not hidden and holds no separators."""
    part = part.replace(os.sep, "_").replace("/", "_")
    return "_" + part[1:] if part.startswith(".") else part


def gather_inputs(inputs: Iterable[str | Path], suffixes: Sequence[str] = (), *, dicom_without_suffix: bool = False
                  ) -> list[BatchItem]:
    """Files named directly, and the files below folders (recursively) whose name ends with one of
    ``suffixes`` (every file when ``suffixes`` is empty, or when ``dicom_without_suffix`` and the file
    has no extension, as PACS exports often are). Sorted, so every shard sees the same order."""
    found: list[tuple[Path, str]] = []
    for entry in inputs:
        p = Path(entry)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts[:-1]):
                    continue  # hidden folders (.git, .ipynb_checkpoints)
                low = f.name.lower()
                if not suffixes or low.endswith(tuple(s.lower() for s in suffixes)) or \
                        (dicom_without_suffix and "." not in f.name.strip(".")):
                    found.append((f, rel.as_posix()))
        else:
            found.append((p, p.name))  # a missing file is reported by the job's reader, as one failure
    stems = [_strip_suffix(rel, suffixes) for _, rel in found]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    items = []
    for (f, rel), s in zip(found, stems):
        stem = s if counts[s] == 1 else rel  # scan.png and scan.dcm side by side keep their extensions
        items.append(BatchItem(f, "/".join(_safe(part) for part in stem.split("/"))))
    seen: dict[str, Path] = {}
    out = []
    for it in items:
        if it.stem in seen:  # the same file named twice (a folder and a file in it)
            continue
        seen[it.stem] = it.path
        out.append(it)
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0-based, as torchrun's ranks) -> ``(i, n)``; None -> from torchrun's RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise InputError("--shard", f"{text!r} is not I/N", "give the shard as I/N with 0 <= I < N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise InputError("--shard", f"{text!r} is out of range", "give the shard as I/N with 0 <= I < N, e.g. 0/4")
    return i, n


def shard(items: Sequence[BatchItem], index: int, count: int) -> list[BatchItem]:
    """Every ``count``-th item from ``index`` on: shards are disjoint and together are all items."""
    return list(items[index::count])


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class BatchReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done by an earlier run
    failed: list[dict[str, str]] = field(default_factory=list)
    summary_path: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every input worked; 2 when some were bad input only; 1 when a job crashed."""
        if any(f.get("kind") == "crash" for f in self.failed):
            return 1
        return 2 if self.failed else 0


def run_batch(items: Sequence[BatchItem], predict: Callable[[Path], JobResult], out_dir: str | Path, *,
              resume: bool = True, progress: bool = True, shard_spec: tuple[int, int] = (0, 1),
              describe: Callable[[BatchItem, JobResult], str] | None = None, job: str = "predict",
              log: Callable[[str], Any] = print,
              warn: Callable[[str], Any] = lambda s: print(s, file=sys.stderr)) -> BatchReport:
    """Run ``predict`` on this shard's items; write each result under ``out_dir``; write a summary.

    Bad input (:class:`InputError`) is recorded with its message and the run goes on; any other
    exception is recorded with its traceback (a bug to report) and the run goes on too. Progress and the
    summary go to ``log`` (stdout), each failure as one line to ``warn`` (stderr).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mine = shard(items, *shard_spec)
    report = BatchReport()
    bar = tqdm(mine, desc=job, unit="file", disable=not progress, dynamic_ncols=True)
    for it in bar:
        record = out / f"{it.stem}.json"
        if resume and record.is_file():
            report.skipped.append(str(it.path))
            continue
        record.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = predict(it.path)
            files = result.write(out / it.stem)
            body = {"input": str(it.path), **result.to_json(),
                    "outputs": [str(Path(f).relative_to(out)) for f in files]}
            _atomic_write_text(record, json.dumps(body, indent=2, default=_jsonable))
        except InputError as e:
            report.failed.append({"file": str(it.path), "kind": "input", "error": str(e)})
            warn(f"skipped {e}")
            continue
        except Exception as e:  # noqa: BLE001 - one broken input must not end a million-file run
            report.failed.append({"file": str(it.path), "kind": "crash", "error": f"{type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc()})
            warn(f"FAILED {it.path}: {type(e).__name__}: {e} (traceback in the summary)")
            continue
        report.done.append(str(it.path))
        if describe is not None:
            bar.write(describe(it, result)) if progress else log(describe(it, result))
    i, n = shard_spec
    name = "summary.json" if n == 1 else f"summary.shard-{i}-of-{n}.json"
    report.summary_path = out / name
    _atomic_write_text(report.summary_path, json.dumps(
        {"job": job, "shard": f"{i}/{n}", "inputs": len(mine), "done": len(report.done),
         "skipped_already_done": len(report.skipped), "failed": report.failed}, indent=2))
    log(f"{job}: {len(report.done)} done, {len(report.skipped)} already done, {len(report.failed)} failed "
        f"of {len(mine)} (shard {i}/{n}); summary {report.summary_path}")
    return report


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
