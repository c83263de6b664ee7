"""``maskworks bench serve``: concurrent ``gradio_client`` clients against a running demo on loopback.

For each API endpoint (``/predict_<name>``), ``clients`` threads each send ``requests`` requests with a shipped
example; reported per endpoint: errors, latency p50 / p95 / max, throughput, and the server's peak resident
memory (process tree, sampled every 0.1 s) against its idle memory. Bounded: every request has a timeout and
the whole run a deadline, so it always stops by itself.
"""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: shipped example per endpoint (under maskworks.data)
EXAMPLES = {
    "medical_anomaly": ("examples", "anomaly", "pneumonia_val_0060.png"),
    "image_mae": ("examples", "chest_xray_224.png"),
    "lidar_detection": ("3d", "kitti", "training", "velodyne", "000002.bin"),
    "video_videomae": ("video", "kinetics_ucf", "videos", "apply_eye_makeup.avi"),
    "nerf_reconstruct": ("nerf", "grids", "spot.npz"),
    "skeleton_actions": ("skeleton", "cmu", "seq", "07_12.npy"),
    "audiovisual_emotion": ("audiovisual", "ravdess", "audio", "01-01-04-01-01-01-05.wav"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(port: int, threads: int = 2) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "maskworks.apps.cli", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_healthy(url: str, timeout: float = 300.0) -> dict:
    import json

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer /healthz within {timeout:.0f} s")


class MemorySampler:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        import psutil

        self.proc, self.every, self.peak, self._stop = psutil.Process(pid), every, 0, threading.Event()

    def rss(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def __enter__(self) -> "MemorySampler":
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def load_endpoint(url: str, name: str, file: Path, clients: int, requests: int, timeout: float = 120.0) -> dict:
    """``clients`` concurrent clients x ``requests`` calls of ``/predict_<name>`` with ``file``."""
    from gradio_client import Client, handle_file

    # One TLS context for every client: httpx otherwise builds one (loading the CA bundle, ~28 ms of CPU) for
    # each of a request's three HTTP calls, so the load generator would take most of the 2 cores it shares
    # with the server it measures (94 ms of client CPU per request, against 44 ms of server CPU).
    tls = ssl.create_default_context()

    def one_client(_: int) -> list[tuple[float, str | None]]:
        c = Client(url, verbose=False, ssl_verify=tls)
        out = []
        for _ in range(requests):
            t = time.perf_counter()
            try:
                job = c.submit(handle_file(str(file)), {}, api_name=f"/predict_{name}")
                job.result(timeout=timeout)
                out.append((time.perf_counter() - t, None))
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                out.append((time.perf_counter() - t, f"{type(e).__name__}: {str(e)[:120]}"))
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    wall = time.perf_counter() - t0
    lat = np.array([r[0] for r in results])
    errors = [r[1] for r in results if r[1]]
    return {"endpoint": f"/predict_{name}", "clients": clients, "requests": len(results), "errors": len(errors),
            "error_examples": errors[:3], "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
            "max_s": float(lat.max()), "throughput_per_s": len(results) / wall, "wall_s": wall}


def bench_serve(names: list[str], clients: int, requests: int, url: str | None = None, threads: int = 2,
                files: dict[str, Path] | None = None) -> dict:
    from maskworks.data import data_path

    proc = None
    if url is None:
        port = free_port()
        proc = start_demo(port, threads)
        url = f"http://127.0.0.1:{port}/"
    try:
        info = wait_healthy(url)
        names = names or [a.removeprefix("/predict_") for a in info["apis"]]
        files = {**{n: data_path(*p) for n, p in EXAMPLES.items() if n in names}, **(files or {})}
        missing = [n for n in names if n not in files]
        if missing:
            raise ValueError(f"no example file for {missing}: pass --file NAME=PATH")
        for n in names:  # one warm-up call each: models load on first use
            load_endpoint(url, n, files[n], 1, 1)
        rows = []
        for n in names:
            if proc is not None:
                sampler = MemorySampler(proc.pid)
                idle = sampler.rss()
                with sampler:
                    row = load_endpoint(url, n, files[n], clients, requests)
                row.update(idle_mb=idle / 2**20, peak_mb=sampler.peak / 2**20, peak_over_idle=sampler.peak / idle)
            else:
                row = load_endpoint(url, n, files[n], clients, requests)
            rows.append(row)
        return {"url": url, "device": info.get("device"), "server_threads": threads, "results": rows}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
