"""Options and the batch loop shared by every ``maskworks predict`` entry."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

from maskworks.core.batch import (
    BatchItem,
    JobResult,
    gather_inputs,
    parse_shard,
    run_batch,
)


def add_batch_options(p: argparse.ArgumentParser, what: str = "files") -> None:
    """FILES (files or folders), --out, --shard, --no-resume, --no-progress, --device."""
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                   help=f"{what}; folders are walked recursively and their sub-folders kept in the output names")
    p.add_argument("--out", required=True, help="output folder (created); one <name>.json per input plus its pictures, "
                   "and summary.json listing any failures")
    p.add_argument("--shard", metavar="I/N", help="process only shard I of N (0-based), e.g. 0/4 on the first of four "
                   "machines; under torchrun the shard is the process's rank (default: everything)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="redo inputs whose <name>.json already exists (default: skip them, so a killed run continues)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--device", help="cpu or cuda (default: cuda when present)")


def run_predict(args: argparse.Namespace, suffixes: Sequence[str], predict: Callable[[Path], JobResult], job: str,
                describe: Callable[[BatchItem, JobResult], str] | None = None, dicom_without_suffix: bool = False) -> int:
    """Gather, shard, run and summarise; the exit status is 0 (all done), 2 (bad inputs) or 1 (a crash)."""
    items = gather_inputs(args.inputs, suffixes, dicom_without_suffix=dicom_without_suffix)
    if not items:
        raise FileNotFoundError(f"no input files with {', '.join(suffixes)} in {' '.join(map(str, args.inputs))}")
    rep = run_batch(items, predict, args.out, resume=args.resume, progress=args.progress,
                    shard_spec=parse_shard(args.shard), describe=describe, job=job)
    return rep.exit_code
