"""``maskworks demo``: one Gradio app, one tab per tool, one API endpoint per job. Domains add tabs and
endpoints in ``apps/entries/<domain>.py``.

Each tab is ``title: "module:build_tab"``; ``build_tab()`` creates its components inside the open ``gr.Tab``.
A tab whose extra is not installed shows how to install it instead of failing. Serving: loopback unless told
otherwise, uploads capped, requests queued with a concurrency limit per tab (one slow tab does not hold up the
others), optional password (``--auth``), ``/healthz`` for monitors, GPU when present (``--device``).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os

from maskworks.apps.entries import collect

TABS: list[tuple[str, str]] = list(collect("TABS").items())
APIS: dict[str, str] = collect("APIS")

MAX_UPLOAD = "25mb"
TAB_CONCURRENCY = 1  # model calls per tab at a time: 2 cores, and each model already uses them
API_BATCH = 16       # an endpoint's concurrent requests are handed to its function together when it can batch
FOOTER = ("maskworks is research software: its outputs are **for research use, not for diagnosis**. "
          "Models here were trained on small public data sets; see the README for what they learned.")
log = logging.getLogger("maskworks.demo")


def _load(entry: str):
    mod, fn = entry.split(":")
    return getattr(importlib.import_module(mod), fn)


def _limit_per_tab(demo, before: int, title: str, public: bool = False) -> None:
    """Every event a tab registered shares one queue slot pool of its own (``concurrency_id``); its user
    errors are logged as one line; its UI plumbing stays out of the API docs (the jobs' ``/predict_*``
    endpoints are the documented API)."""
    for fn in list(demo.fns.values())[before:]:
        fn.concurrency_id = f"tab:{title}"
        fn.concurrency_limit = TAB_CONCURRENCY
        if fn.fn is not None and not inspect.isgeneratorfunction(fn.fn) and not inspect.iscoroutinefunction(fn.fn):
            fn.fn = _one_line_user_errors(fn.fn, title)
        if not public and fn.api_visibility == "public":
            fn.api_visibility = "undocumented"


def _one_line_user_errors(f, where: str):
    """A handler whose ``gr.Error`` (a user's bad input, not a bug) is logged as one line, no traceback."""
    import gradio as gr

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except gr.Error as e:
            log.warning("user error in %s: %s", where, e.message)
            e.print_exception = False
            raise

    return wrapped


def api_endpoint(name: str, entry: str):
    """``fn(path, options) -> dict`` as a Gradio function (batched when ``fn`` has a ``batch``): a bad file
    answers ``{"error": ...}`` (logged as one line), so a script's batch of requests never dies on one file."""
    from maskworks.core.io import InputError

    fn = _load(entry)
    batch = getattr(fn, "batch", None)

    def answer(file, result) -> dict:
        if isinstance(result, InputError):
            log.warning("user error on /predict_%s: %s", name, result.short())
            return {"error": result.short()}
        return result

    def call(file, options):
        if not file:
            return {"error": f"/predict_{name}: send a file"}
        try:
            return fn(file, options or {})
        except InputError as e:
            return answer(file, e)

    def call_batch(files, options):
        ready = [i for i, f in enumerate(files) if f]
        res = batch([files[i] for i in ready], [options[i] for i in ready]) if ready else []
        out: list = [{"error": f"/predict_{name}: send a file"}] * len(files)
        for i, r in zip(ready, res):
            out[i] = answer(files[i], r)
        return (out,)

    fn_ = call_batch if batch is not None else call
    fn_.__name__ = f"predict_{name}"
    return fn_, batch is not None


def build_demo():
    import gradio as gr

    with gr.Blocks(title="maskworks", analytics_enabled=False) as demo:
        gr.Markdown("# maskworks\nMasked-autoencoder pre-training where labels are scarce.")
        with gr.Tabs(overflow_behavior="wrap"):  # every tab in view: a menu hides the domains added last
            for title, entry in TABS:
                with gr.Tab(title):
                    before = len(demo.fns)
                    try:
                        build = _load(entry)
                    except ImportError as e:
                        gr.Markdown(f"This tab needs an optional dependency that is not installed ({e.name}). "
                                    "Install it with `pip install -e .[all]` and restart.")
                        continue
                    build()
                    _limit_per_tab(demo, before, title)
        with gr.Column(visible=False):  # the API: one endpoint per job, no UI of its own
            for name, entry in APIS.items():
                file, options, out = gr.File(type="filepath"), gr.JSON(), gr.JSON()
                before = len(demo.fns)
                fn, batched = api_endpoint(name, entry)
                gr.Button().click(fn, [file, options], out, api_name=f"predict_{name}", batch=batched,
                                  max_batch_size=API_BATCH)
                _limit_per_tab(demo, before, f"api:{name}", public=True)
        gr.Markdown(FOOTER)
    return demo


def health(demo) -> dict:
    import torch

    from maskworks.core.device import default_device

    return {"status": "ok", "tabs": [t for t, _ in TABS], "apis": [f"/predict_{n}" for n in APIS],
            "device": str(default_device()), "torch_threads": torch.get_num_threads(),
            "queue": getattr(getattr(demo, "_queue", None), "max_size", None)}


def serve(demo, host: str, port: int, max_upload: str = MAX_UPLOAD, block: bool = True, share: bool = False,
          auth: tuple[str, str] | None = None):
    """Serve a Gradio app the maskworks way: loopback unless told otherwise, requests queued (a limit per
    tab), uploads capped, errors shown to the user (logged as one line), ``/healthz`` answered."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(format="%(asctime)s %(name)s %(message)s", level=logging.WARNING)
    demo.queue(default_concurrency_limit=TAB_CONCURRENCY, max_size=64)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_upload, auth=auth,
                prevent_thread_lock=True, show_error=True, quiet=True)
    app = demo.server_app if hasattr(demo, "server_app") else demo.app
    app.add_api_route("/healthz", lambda: health(demo), methods=["GET"])
    log.warning("maskworks demo on http://%s:%d/ (device %s)", host, port, health(demo)["device"])
    if block:
        demo.block_thread()
    return demo


def launch_tab(title: str, build_tab, host: str = "127.0.0.1", port: int = 7860, max_upload: str = MAX_UPLOAD,
               block: bool = True):
    """One tab on its own page (each app module's ``launch``)."""
    import gradio as gr

    with gr.Blocks(title=f"maskworks {title}", analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}")
        build_tab()
    return serve(demo, host, port, max_upload, block)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True,
           auth: tuple[str, str] | None = None, device: str | None = None):
    """Serve the whole demo (every tab). Binds 127.0.0.1 unless told otherwise; caps uploads at 25 MB;
    ``device`` (cpu / cuda) for every model, default: the GPU when present."""
    if device:
        from maskworks.core.device import ENV, default_device

        default_device(device)  # refuses cuda where there is none, before anything loads
        os.environ[ENV] = device
    return serve(build_demo(), host, port, MAX_UPLOAD, block, share, auth)
