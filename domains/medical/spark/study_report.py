"""Tables, intervals and figures of the label-fraction study (``study.py``): kept apart so the
study's driver reads as the protocol and these can be reused on any ``runs`` list it wrote."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

LABELS = {"spark": "SparK", "moco": "MoCo v2", "simclr": "SimCLR", "random": "random init"}
METRICS = {"accuracy": "accuracy", "auc": "macro ROC-AUC", "balanced_accuracy": "balanced accuracy"}
STAGES = {"probe": "frozen encoder (linear probe)", "finetune": "after fine-tuning (encoder unfrozen)"}

def t_quantile(n: int) -> float:
    """Two-sided 95 % Student-t quantile for ``n`` samples (``n - 1`` degrees of freedom)."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_ci(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, sample std (ddof 1; 0 for one value) and the 95 % t-interval half width (None for one value)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std,
            "ci95": float(t_quantile(len(v)) * std / math.sqrt(len(v))) if len(v) > 1 else None}


def summarize(runs: list[dict[str, Any]], stage: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {fraction: {<metric>_mean, <metric>_std, <metric>_ci95, ..., seeds}}}``."""
    cells: dict[str, dict[str, list[dict]]] = {}
    for r in runs:
        if stage in r:
            cells.setdefault(r["method"], {}).setdefault(str(r["fraction"]), []).append(r[stage])
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method, fr in cells.items():
        for f, rs in fr.items():
            cell: dict[str, Any] = {}
            for k in METRICS:
                s = mean_ci([r.get(k) for r in rs])
                cell.update({f"{k}_mean": s["mean"], f"{k}_std": s["std"], f"{k}_ci95": s["ci95"]})
            cell["seeds"] = len(rs)
            out.setdefault(method, {})[f] = cell
    return out


def paired_differences(runs: list[dict[str, Any]], stage: str, metric: str, a: str, b: str
                       ) -> dict[str, dict[str, float | None]]:
    """Per fraction: ``a - b`` on ``metric``, paired by seed (the same labelled subset), mean and 95 % CI."""
    by = {(r["method"], str(r["fraction"]), r["seed"]): r[stage][metric] for r in runs if stage in r}
    out = {}
    for (m, f, s), v in by.items():
        if m == a and (b, f, s) in by:
            out.setdefault(f, []).append(v - by[(b, f, s)])
    return {f: {**mean_ci(d), "seeds": len(d)} for f, d in out.items()}


def drops(runs: list[dict[str, Any]], stage: str, metric: str, hi: float, lo: float) -> dict[str, dict[str, Any]]:
    """Per method: metric at fraction ``hi`` minus at ``lo``, paired by seed (nested subsets), mean and CI."""
    by = {(r["method"], float(r["fraction"]), r["seed"]): r[stage][metric] for r in runs if stage in r}
    out: dict[str, list[float]] = {}
    for (m, f, s), v in by.items():
        if f == hi and (m, lo, s) in by:
            out.setdefault(m, []).append(v - by[(m, lo, s)])
    return {m: {**mean_ci(d), "seeds": len(d)} for m, d in out.items()}


def _fmt(cell: dict[str, Any] | None, key: str) -> str:
    if not cell or cell.get(f"{key}_mean") is None:
        return "–"
    ci = cell.get(f"{key}_ci95")
    return f"{cell[f'{key}_mean']:.3f} ± {cell[f'{key}_std']:.3f}" + (f" [±{ci:.3f}]" if ci is not None else "")


def markdown_table(summary: dict, fractions: Sequence[float], n_labelled: dict[str, int], title: str,
                   methods: Sequence[str], metrics_shown: Sequence[str] = ("accuracy", "auc", "balanced_accuracy")) -> str:
    """One row per fraction, one column per method x metric: ``mean ± std [± 95 % CI half width]``."""
    methods = [m for m in methods if m in summary]
    short = {"accuracy": "acc", "auc": "AUC", "balanced_accuracy": "bal. acc"}
    head = "| fraction | labelled | " + " | ".join(f"{LABELS[m]} {short[k]}" for m in methods for k in metrics_shown) + " |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (2 + len(metrics_shown) * len(methods))]
    for f in fractions:
        cells = [_fmt(summary[m].get(str(f)), k) for m in methods for k in metrics_shown]
        lines.append(f"| {f:g} | {n_labelled.get(str(f), '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(summaries: dict, fractions: Sequence[float], n_labelled: dict[str, int], metric: str,
                 methods: Sequence[str]) -> str:
    """One row per fraction, one column per method x stage for one metric (the compact view)."""
    cols = [(s, m) for s in summaries for m in methods if m in summaries[s]]
    head = "| fraction | labelled | " + " | ".join(f"{LABELS[m]} {'probe' if s == 'probe' else 'fine-tune'}"
                                                   for s, m in cols) + " |"
    lines = [head, "|" + "---|" * (2 + len(cols))]
    for f in fractions:
        cells = []
        for s, m in cols:
            c = summaries[s][m].get(str(f))
            cells.append("–" if not c or c[f"{metric}_mean"] is None else
                         f"{c[f'{metric}_mean']:.3f} ± {c[f'{metric}_std']:.3f}")
        lines.append(f"| {f:g} | {n_labelled.get(str(f), '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], fractions: Sequence[float], path: Path, title: str, methods: Sequence[str],
         metrics_shown: Sequence[str] = tuple(METRICS)) -> Path:
    """Metric vs label fraction, one line per method with 95 % CI error bars (± std when one seed;
    methods nudged sideways so their bars do not hide each other); one row per metric, one column
    per stage, shared y range per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics_shown), len(summaries), figsize=(5.4 * len(summaries), 3.4 * len(metrics_shown)),
                             squeeze=False, sharey="row")
    shown = [m for m in methods if any(m in s for s in summaries.values())]
    for col, (stage, summary) in enumerate(summaries.items()):
        for row, k in enumerate(metrics_shown):
            ax = axes[row][col]
            for i, m in enumerate(shown):
                if m not in summary:
                    continue
                fs = [f for f in fractions if str(f) in summary[m] and summary[m][str(f)][f"{k}_mean"] is not None]
                err = [summary[m][str(f)][f"{k}_ci95"] or summary[m][str(f)][f"{k}_std"] or 0.0 for f in fs]
                nudge = 1.06 ** (i - (len(shown) - 1) / 2)
                ax.errorbar([f * nudge for f in fs], [summary[m][str(f)][f"{k}_mean"] for f in fs], yerr=err,
                            marker="o", ms=4, capsize=3, label=LABELS[m])
            ax.set_xscale("log")
            ax.set_xticks(list(fractions), [f"{f:g}" for f in fractions])
            ax.minorticks_off()
            if row == len(metrics_shown) - 1:
                ax.set_xlabel("fraction of training labels")
            if col == 0:
                ax.set_ylabel(f"{METRICS[k]} (eval split)")
            if row == 0:
                ax.set_title(STAGES[stage], fontsize=10)
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean over seeds, bars = 95 % CI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_pretrain(curves: dict[str, list[tuple[int, float]]], batch: int, path: Path, title: str) -> Path | None:
    """Each method's pre-training loss vs images seen (own panel: the losses have different units)."""
    curves = {m: c for m, c in curves.items() if c}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.4), squeeze=False)
    for ax, (m, c) in zip(axes[0], curves.items()):
        s = np.array([p[0] for p in c]) * batch
        v = np.array([p[1] for p in c])
        ax.plot(s, v, lw=0.8, alpha=0.4, label="logged")
        k = max(1, len(v) // 20)
        if len(v) > k:
            smooth = np.convolve(v, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1:], smooth, lw=1.8, label=f"running mean ({k} logs)")
        ax.set_title(f"{LABELS[m]}", fontsize=10)
        ax.set_xlabel("images seen")
        ax.set_ylabel({"spark": "masked-patch MSE (norm. pixels)", "moco": "InfoNCE (queue)",
                       "simclr": "NT-Xent"}.get(m, "loss"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, training loss) of a pre-training run, joining the logs of resumed segments."""
    points: dict[int, float] = {}
    for f in sorted(Path(run_dir, "logs").rglob("metrics.csv")):
        with open(f, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss"):
                    points[int(row["step"])] = float(row["train/loss"])
    return sorted(points.items())


def flatness(curve: list[tuple[int, float]], window: float = 0.1) -> dict[str, float] | None:
    """How flat a loss curve ends: mean loss over the first, the 3/4 and the last ``window`` of
    the steps, and the share of the total drop made during the last quarter of training."""
    if len(curve) < 8:
        return None
    steps = np.array([s for s, _ in curve], dtype=float)
    loss = np.array([v for _, v in curve])
    end = steps[-1]

    def mean_around(lo: float, hi: float) -> float:
        sel = (steps > lo * end) & (steps <= hi * end)
        return float(loss[sel].mean()) if sel.any() else float("nan")

    first, q3, last = mean_around(0, window), mean_around(0.75 - window, 0.75), mean_around(1 - window, 1)
    total = first - last
    return {"loss_start": first, "loss_at_75pct": q3, "loss_end": last,
            "last_quarter_share_of_drop": (q3 - last) / total if total > 0 else float("nan")}


def _write_json(path: Path, obj: Any) -> None:
    """Write atomically (a killed study never leaves half a file that a restart would trust)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)


def build_report(result: dict[str, Any], runs: list[dict[str, Any]], out: Path, pre: dict[str, dict[str, Any]]) -> str:
    """Summaries and paired comparisons (into ``result``), tables and figures from the runs
    finished so far; ``pre`` holds each pre-training's loss curve. Returns the Markdown."""
    proto = result["settings"]
    fractions, methods = result["fractions"], result["methods"]
    stages = ["probe"] + (["finetune"] if proto["finetune_steps"] > 0 else [])
    summary = {s: summarize(runs, s) for s in stages}
    result["summary"] = summary
    hi, lo = max(fractions), min(fractions)
    result["drop"] = {s: {k: drops(runs, s, k, hi, lo) for k in METRICS} for s in stages}
    others = [m for m in methods if m != "spark"]
    result["spark_minus"] = ({s: {k: {m: paired_differences(runs, s, k, "spark", m) for m in others} for k in METRICS}
                              for s in stages} if "spark" in methods else {})
    n_lab = result["n_labelled"]
    done, total = len(runs), len(methods) * len(fractions) * result["seeds"]
    ds = Path(result["data"]).name
    md = [f"# Label-fraction study: {ds}", "",
          f"Data: `{result['data']}`, {result['split']}; train {result['n_train']} {result['train_counts']}, "
          f"eval {result['n_eval']} {result['eval_counts']}.",
          f"Protocol `{proto['name']}`: {proto['size']} px, `{proto['backbone']}`; pre-training "
          f"{proto['pretrain_steps']} steps x batch {proto['pretrain_batch']} = "
          f"{proto['pretrain_steps'] * proto['pretrain_batch']:,} images seen per method; linear probe "
          f"{proto['probe_epochs']} epochs (>= {proto['probe_min_steps']} steps) on cached features; fine-tuning "
          f"{proto['finetune_steps']} steps x batch {proto['batch']}, Adam lr {proto['lr']:g}, flips "
          f"{'on' if proto['flip'] else 'off'}. Cells: mean ± std [± 95 % t-interval half width] over seeds.",
          "", f"Runs finished: {done} of {total}" + ("" if done == total else " (partial table)"), ""]
    for s in stages:
        md += [markdown_table(summary[s], fractions, n_lab, STAGES[s], methods), ""]
    for s in stages:
        d = result["drop"][s]["accuracy"]
        if d:
            md += [f"**Accuracy drop from {hi:g} to {lo:g} of the labels, {STAGES[s]}** (paired by seed):", "",
                   "| method | acc at " + f"{hi:g} | acc at {lo:g} | drop (95 % CI) |", "|---|---|---|---|"]
            for m in methods:
                if m in d and d[m]["mean"] is not None:
                    a, b = summary[s][m][str(hi)], summary[s][m][str(lo)]
                    ci = d[m]["ci95"]
                    md.append(f"| {LABELS[m]} | {a['accuracy_mean']:.3f} | {b['accuracy_mean']:.3f} | "
                              f"{d[m]['mean']:.3f}" + (f" ± {ci:.3f}" if ci is not None else "") + " |")
            md.append("")
    if result["spark_minus"]:
        for s in stages:
            cols = [m for m in others if result["spark_minus"][s]["accuracy"][m]]
            if not cols:
                continue
            md += [f"**SparK minus each method, accuracy, {STAGES[s]}** (paired by seed; 95 % CI; "
                   "an interval that excludes 0 is a difference):", "",
                   "| fraction | " + " | ".join(f"SparK − {LABELS[m]}" for m in cols) + " |", "|" + "---|" * (1 + len(cols))]
            for f in fractions:
                cells = []
                for m in cols:
                    c = result["spark_minus"][s]["accuracy"][m].get(str(f))
                    cells.append("–" if not c or c["mean"] is None else
                                 f"{c['mean']:+.3f}" + (f" [{c['mean'] - c['ci95']:+.3f}, {c['mean'] + c['ci95']:+.3f}]"
                                                        if c["ci95"] is not None else ""))
                md.append(f"| {f:g} | " + " | ".join(cells) + " |")
            md.append("")
    if any(p.get("flatness") for p in pre.values()):
        md += ["**Pre-training losses** (mean over the first / last 10 % of logged steps; share of the total drop "
               "made in the last quarter of training: small = flattened):", "",
               "| method | images seen | loss start | loss at 75 % | loss end | last-quarter share of drop | seconds (finishing session) |",
               "|---|---|---|---|---|---|---|"]
        for m, p in pre.items():
            fl = p.get("flatness")
            if fl:
                md.append(f"| {LABELS[m]} | {p['images_seen']:,} | {fl['loss_start']:.4f} | {fl['loss_at_75pct']:.4f} | "
                          f"{fl['loss_end']:.4f} | {fl['last_quarter_share_of_drop']:.1%} | "
                          f"{p.get('seconds_last_session', '–')} |")
        md.append("")
    title = f"{ds} (train {result['n_train']}, eval {result['n_eval']})"
    plot(summary, fractions, out / "metrics_vs_fraction.png", title, methods)
    plot(summary, fractions, out / "auc_vs_fraction.png", title, methods, ("auc",))
    curves = {m: p["curve"] for m, p in pre.items() if p.get("curve")}
    if curves:
        plot_pretrain(curves, proto["pretrain_batch"], out / "pretrain_loss.png", f"pre-training on {ds}")
    return "\n".join(md)


def _write_outputs(result: dict[str, Any], runs: list[dict[str, Any]], out: Path, pre: dict) -> str:
    """results.md, results.json and the figures from the runs finished so far."""
    result["runs"] = runs
    md = build_report(result, runs, out, pre)
    (out / "results.md").write_text(md + "\n")
    _write_json(out / "results.json", {k: v for k, v in result.items() if k != "markdown"})
    return md
