"""Fixtures for app tests: a real ``maskworks demo`` server and headless Chromium (Playwright)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MASKWORKS_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("MASKWORKS_ARTIFACTS", "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def demo_url():
    """``maskworks demo`` on a free loopback port, for the whole session."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "maskworks.apps.cli", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian chromium is not installed (make setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, demo_url):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    pg.goto(demo_url)
    pg.wait_for_selector("text=maskworks")
    yield pg
    ctx.close()


def save_screenshot(page, name: str, docs: str | None = None) -> Path:
    """Full-page PNG under test-artifacts/; with ``docs`` (e.g. ``"3d/detection_app.png"``) and
    ``MASKWORKS_UPDATE_DOCS=1`` (``make screenshots``) also copied to that picture under the checkout's
    docs/ (the README shows it). Off by default, so that a test run leaves the checkout unchanged."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    update = docs and os.environ.get("MASKWORKS_UPDATE_DOCS") == "1"
    target = Path(__file__).resolve().parents[2] / "docs" / docs if update else None
    if target is not None and target.parent.is_dir():
        shutil.copy(path, target)
    return path


@pytest.fixture
def screenshot():
    """``screenshot(page, name, docs=None)`` saves a full-page PNG under test-artifacts/ (and to docs/``docs``)
    and returns its path."""
    return save_screenshot
