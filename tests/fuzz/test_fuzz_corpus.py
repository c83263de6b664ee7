"""The fuzz corpus (tests/fuzz/corpus.py, made by code) through the jobs every tab and CLI share: each file
gives the project's InputError naming the file, or a correct result; no crash, no case over 5 s, no case
raising the worker's memory by more than the bound. The tally is printed at the end of the test run."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from corpus import make_corpus

TIMEOUT_S = 5.0        # a file the job must refuse is refused within this
RESULT_TIMEOUT_S = 90.0  # a valid file may take a job's real work (NeRF-MAE renders three grids on a CPU)
MEMORY_BOUND_MB = 1500  # rise of the worker's resident memory during one case
WORKER = Path(__file__).with_name("worker.py")
TALLY: dict = {}


class Worker:
    def __init__(self) -> None:
        import psutil

        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, bufsize=1)
        ready = self._read(600)
        assert ready and json.loads(ready)["status"] == "ready", ready
        self.ps = psutil.Process(self.proc.pid)

    def _read(self, timeout: float) -> str | None:
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if r else None

    def run(self, path: Path, job: str, timeout: float = TIMEOUT_S) -> tuple[dict, float, float]:
        """(answer, seconds, peak memory rise in MB); answer ``{"status": "hang"}`` after the timeout."""
        base = self.ps.memory_info().rss
        peak = base
        self.proc.stdin.write(json.dumps({"path": str(path), "job": job}) + "\n")
        self.proc.stdin.flush()
        t0 = time.perf_counter()
        line = None
        while time.perf_counter() - t0 < timeout:
            line = self._read(0.05)
            try:
                peak = max(peak, self.ps.memory_info().rss)
            except Exception:  # noqa: BLE001 - the worker may have died
                break
            if line:
                break
        dt = time.perf_counter() - t0
        if not line:
            return {"status": "hang" if self.proc.poll() is None else "died"}, dt, (peak - base) / 2**20
        return json.loads(line), dt, (peak - base) / 2**20

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.slow  # ~2 min: 300+ files through three models
def test_every_fuzz_file_is_a_clear_error_or_a_correct_result(tmp_path):
    cases = make_corpus(tmp_path / "corpus")
    worker = Worker()
    rows, problems = [], []
    try:
        for c in cases:
            ans, dt, mem = worker.run(c.path, c.job, TIMEOUT_S if c.expect == "error" else RESULT_TIMEOUT_S)
            status = ans["status"]
            rows.append({"file": c.path.name, "job": c.job, "expect": c.expect, "status": status, "seconds": round(dt, 3),
                         "memory_mb": round(mem, 1)})
            if status in ("hang", "died"):
                problems.append(f"{c.what}: {status} after {dt:.1f} s")
                worker.close()
                worker = Worker()
            elif status == "crash":
                problems.append(f"{c.what}: crash {ans['message']}")
            elif status == "input" and c.path.name not in ans["message"]:
                problems.append(f"{c.what}: the error does not name the file: {ans['message']}")
            elif status == "input" and c.expect == "ok":
                problems.append(f"{c.what}: a valid file refused: {ans['message']}")
            elif status == "input" and dt > TIMEOUT_S:
                problems.append(f"{c.what}: refused only after {dt:.1f} s (bound {TIMEOUT_S:.0f} s)")
            elif status == "ok" and c.expect == "error":
                problems.append(f"{c.what}: wrong silent success (a result from a broken file)")
            if mem > MEMORY_BOUND_MB:
                problems.append(f"{c.what}: memory rose {mem:.0f} MB (bound {MEMORY_BOUND_MB} MB)")
    finally:
        worker.close()
    count = Counter(r["status"] for r in rows)
    TALLY.update({"files": len(rows), "clear_errors": count["input"], "results": count["ok"], "crashes": count["crash"],
                  "hangs": count["hang"] + count["died"], "problems": problems,
                  "slowest_s": max(r["seconds"] for r in rows), "most_memory_mb": max(r["memory_mb"] for r in rows)})
    out = Path(os.environ.get("MASKWORKS_ARTIFACTS", "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz_tally.json").write_text(json.dumps({**TALLY, "rows": rows}, indent=2))
    assert not problems, "\n".join(problems)
    assert len(cases) >= 300, f"only {len(cases)} files: the corpus should cover every format with 300 or more"
