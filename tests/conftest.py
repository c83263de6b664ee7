import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("OMP_NUM_THREADS", "1")


_STARTED: list[float] = []


def pytest_sessionstart(session):
    import time

    _STARTED.append(time.time())


def pytest_terminal_summary(terminalreporter):
    """Print the fuzz corpus tally (files, clear errors, correct results, failures) in the test run's output."""
    import json
    from pathlib import Path

    path = Path(os.environ.get("MASKWORKS_ARTIFACTS", "test-artifacts")) / "fuzz_tally.json"
    if not path.is_file() or path.stat().st_mtime < (_STARTED[0] if _STARTED else 0):
        return
    t = json.loads(path.read_text())
    terminalreporter.write_sep("-", "fuzz corpus")
    terminalreporter.write_line(f"{t['files']} files: {t['clear_errors']} clear errors, {t['results']} correct results, "
                                f"{t['crashes']} crashes, {t['hangs']} hangs, {len(t['problems'])} problems; slowest "
                                f"{t['slowest_s']:.2f} s, most memory {t['most_memory_mb']:.0f} MB (details: {path})")
