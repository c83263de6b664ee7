"""``maskworks demo``: one Gradio app, one tab per tool. Domains add tabs in ``apps/entries/<domain>.py``.

Each tab is ``title: "module:build_tab"``; ``build_tab()`` creates its components inside the
open ``gr.Tab``. A tab whose extra is not installed shows how to install it instead of failing.
"""
from __future__ import annotations

import importlib
import os

from maskworks.apps.entries import collect

TABS: list[tuple[str, str]] = list(collect("TABS").items())

MAX_UPLOAD = "25mb"
FOOTER = ("maskworks is research software: its outputs are **for research use, not for diagnosis**. "
          "Models here were trained on small public data sets; see the README for what they learned.")


def build_demo():
    import gradio as gr

    with gr.Blocks(title="maskworks", analytics_enabled=False) as demo:
        gr.Markdown("# maskworks\nMasked-autoencoder pre-training where labels are scarce.")
        for title, entry in TABS:
            with gr.Tab(title):
                mod, fn = entry.split(":")
                try:
                    build = getattr(importlib.import_module(mod), fn)
                except ImportError as e:
                    gr.Markdown(f"This tab needs an optional dependency that is not installed ({e.name}). "
                                "Install it with `pip install -e .[all]` and restart.")
                    continue
                build()
        gr.Markdown(FOOTER)
    return demo


def serve(demo, host: str, port: int, max_upload: str = MAX_UPLOAD, block: bool = True, share: bool = False):
    """Serve a Gradio app the maskworks way: loopback unless told otherwise, requests queued (one
    model call at a time), uploads capped, errors shown to the user."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_upload,
                       prevent_thread_lock=not block, show_error=True, quiet=True)


def launch_tab(title: str, build_tab, host: str = "127.0.0.1", port: int = 7860, max_upload: str = MAX_UPLOAD,
               block: bool = True):
    """One tab on its own page (each app module's ``launch``)."""
    import gradio as gr

    with gr.Blocks(title=f"maskworks {title}", analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}")
        build_tab()
    return serve(demo, host, port, max_upload, block)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True):
    """Serve the whole demo (every tab). Binds 127.0.0.1 unless told otherwise; caps uploads at 25 MB."""
    return serve(build_demo(), host, port, MAX_UPLOAD, block, share)
