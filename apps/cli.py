"""The ``maskworks`` command: train, eval, predict, demo, bench, masks."""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import import_module
from pathlib import Path

from maskworks.apps.entries import collect

# name -> "module:function(argv) -> int", gathered from the modules of maskworks.apps.entries (each
# domain registers its own there). Each entry parses its own arguments: `maskworks eval NAME --help`.
EVALS: dict[str, str] = collect("EVALS")
PREDICTS: dict[str, str] = collect("PREDICTS")
BENCHES: dict[str, str] = collect("BENCHES")

DESCRIPTION = """\
maskworks: masked-autoencoder pre-training for label-scarce domains, and apps that serve it.

  maskworks train image-mae-cxr --preset smoke      train a recipe (see `maskworks train --list`)
  maskworks eval image-mae --weights RUN/model.safetensors
  maskworks predict image-mae IMG.png --weights W --out DIR
  maskworks demo                                     the Gradio app on http://127.0.0.1:7860
  maskworks bench mae-step                           our MAE step vs Hugging Face ViTMAE
  maskworks masks --out masks/                       every masking strategy over a chest X-ray
"""


def _call(entry: str, argv: list[str]) -> int:
    mod, fn = entry.split(":")
    return int(getattr(import_module(mod), fn)(argv) or 0)


def _dispatch(kind: str, table: dict[str, str], args: argparse.Namespace) -> int:
    if args.name is None or args.name not in table:
        from difflib import get_close_matches

        known = ", ".join(sorted(table))
        close = get_close_matches(args.name or "", list(table), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        msg = f"maskworks {kind}: choose one of: {known}" if args.name is None else \
            f"maskworks {kind}: unknown {args.name!r};{hint} choose one of: {known}"
        print(msg, file=sys.stderr)
        return 2
    return _call(table[args.name], args.rest)


def cmd_train(args: argparse.Namespace) -> int:
    from maskworks.apps.recipes import find_recipe, list_recipes
    from maskworks.core.training import apply_overrides, fit, load_recipe
    from maskworks.core.training.config import RecipeError, parse_yaml

    if args.list or not args.recipe:
        print("recipes:\n  " + "\n  ".join(list_recipes()))
        return 0
    out = Path(args.out) if args.out else Path("runs") / (args.recipe.replace("/", "-") + (f"-{args.preset}" if args.preset else ""))
    try:
        if args.resume and (out / "config.yaml").is_file():
            cfg = apply_overrides(parse_yaml((out / "config.yaml").read_text()), args.set)
        else:
            cfg = load_recipe(find_recipe(args.recipe), args.preset, args.set)
        if args.devices:
            cfg = apply_overrides(cfg, {"trainer.devices": args.devices})
    except RecipeError as e:
        print(f"maskworks train: {e}", file=sys.stderr)
        return 2
    summary = fit(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from maskworks.apps.demo import launch

    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth must be USER:PASSWORD (or set $MASKWORKS_AUTH)")
        auth = (user, password)
    launch(host=args.host, port=args.port, share=False, auth=auth, device=args.device)
    return 0


def cmd_masks(args: argparse.Namespace) -> int:
    from maskworks.apps.mask_gallery import draw_all

    paths = draw_all(args.image, Path(args.out), seed=args.seed)
    print("\n".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskworks", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a recipe (YAML), resumable", description=
                       "Train a recipe. Recipes are YAML files; --preset picks a named variant (e.g. "
                       "'smoke', under a minute on CPU); --set overrides any key. The resolved config, "
                       "logs (CSV, TensorBoard), checkpoints (safetensors) and final weights go to --out.")
    t.add_argument("recipe", nargs="?", help="recipe name (e.g. image-mae-cxr, medical/spark-cxr) or a .yaml path")
    t.add_argument("--preset", help="named preset inside the recipe, e.g. smoke")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set trainer.max_steps=500 (repeatable)")
    t.add_argument("--out", help="run folder (default runs/<recipe>[-<preset>])")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (same result as never stopping)")
    t.add_argument("--devices", type=int, help="number of processes/GPUs for data-parallel training")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--list", action="store_true", help="list the available recipes")
    t.set_defaults(func=cmd_train)

    for kind, table, text in [("eval", EVALS, "evaluate a model or run a study on a data folder"),
                              ("predict", PREDICTS, "run a trained model on files, write results to a folder"),
                              ("bench", BENCHES, "benchmarks: ratios against a peer measured in the same run")]:
        sp = sub.add_parser(kind, help=text, description=f"{text}. Entries: {', '.join(sorted(table))}. "
                            f"`maskworks {kind} NAME --help` explains one.", add_help=True)
        sp.add_argument("name", nargs="?", help=f"one of: {', '.join(sorted(table))}")
        sp.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of that entry")
        sp.set_defaults(func=lambda a, k=kind, tb=table: _dispatch(k, tb, a))

    d = sub.add_parser("demo", help="start the Gradio app", description=
                       "Start the maskworks Gradio app (masking strategies, and the domain tabs). Binds "
                       "127.0.0.1 unless --host says otherwise; uses the GPU when present.")
    d.add_argument("--host", default=os.environ.get("MASKWORKS_HOST", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1, or $MASKWORKS_HOST; 0.0.0.0 exposes the app to your network)")
    d.add_argument("--port", type=int, default=int(os.environ.get("MASKWORKS_PORT", "7860")),
                   help="port (default 7860, or $MASKWORKS_PORT)")
    d.add_argument("--auth", default=os.environ.get("MASKWORKS_AUTH"), metavar="USER:PASSWORD",
                   help="ask for this user name and password before serving anything (default: $MASKWORKS_AUTH, else none; "
                   "set it whenever --host exposes the app beyond this machine)")
    d.add_argument("--device", help="cpu or cuda for every model (default: cuda when present); each tab says which it used")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("masks", help="draw every masking strategy over an image", description=
                       "Draw each masking strategy's mask over a real chest X-ray (or --image) into one "
                       "figure and one PNG per strategy.")
    m.add_argument("--image", help="a PNG/JPEG (default: the shipped 224 px chest X-ray)")
    m.add_argument("--out", default="masks", help="output folder")
    m.add_argument("--seed", type=int, default=0, help="seed of every random mask (default 0: the README's pictures)")
    m.set_defaults(func=cmd_masks)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (OSError, ValueError) as e:  # a missing file, a bad recipe, value or input: every input error is one
        if os.environ.get("MASKWORKS_DEBUG") == "1":
            raise
        where = " ".join(x for x in (args.command, getattr(args, "name", None) or getattr(args, "recipe", None)) if x)
        print(f"maskworks {where}: {e}\n(MASKWORKS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
