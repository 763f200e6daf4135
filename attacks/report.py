"""The attacks' outputs: a JSON of every result, ROC curves as PNG (matplotlib, the optional ``attacks``
extra), and the tables written into ``SECURITY.md`` between ``<!-- attacks:begin -->`` and
``<!-- attacks:end -->``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from attacks.stats import clopper_pearson

BEGIN, END = "<!-- attacks:begin -->", "<!-- attacks:end -->"
COMMAND = {
    "membership": 'make attacks ATTACKS_ARGS="--only membership"',
    "differencing": 'make attacks ATTACKS_ARGS="--only differencing"',
    "timing": 'make attacks ATTACKS_ARGS="--only timing"',
    "coverage": 'make attacks ATTACKS_ARGS="--only coverage"',
}
TITLES = {
    "membership": "Membership inference (Beacon LRT, Homer, Sankararaman)",
    "differencing": "Single-target differencing at per-study budgets",
    "timing": "Refused-query timing (held vs absent variants)",
}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, default=_plain) + "\n")


def _plain(o: object) -> object:
    """numpy scalars as Python numbers."""
    item = getattr(o, "item", None)
    if item is None:
        raise TypeError(f"{type(o).__name__} is not JSON serializable")
    return item()


def differencing_points(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The machine-readable differencing curve a committee's risk statement shows beside the bound."""
    rows = [r for r in results if r["attack"] == "differencing"]
    return {
        "what": "single-target differencing attack on genogate: measured TPR at 5% FPR per per-study budget",
        "fpr": 0.05,
        "command": COMMAND["differencing"],
        "points": [
            {
                "epsilon": r["epsilon"],
                "tpr_at_5pct_fpr": r["tpr_at_5pct_fpr"],
                # Binomial over the positives at the 5%-FPR threshold (the threshold's own spread not included).
                "tpr_ci95": list(clopper_pearson(round(r["tpr_at_5pct_fpr"] * r["n_pos"]), r["n_pos"])),
                "auc": r["auc"],
                "bound_tpr_at_5pct_fpr": r["bound_tpr_at_5pct_fpr"],
                "n_pos": r["n_pos"],
                "n_neg": r["n_neg"],
            }
            for r in rows
        ],
    }


def plots(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """One PNG of ROC curves per attack (membership, differencing, timing); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[attacks]'): no plots")
        return []
    written = []
    for attack, title in TITLES.items():
        rows = [r for r in results if r["attack"] == attack]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=110)
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":", label="chance")
        # One colour per setting (or per statistic), one line style per statistic (or per setting).
        colour_key = "statistic" if attack == "membership" else "setting"
        style_key = "setting" if attack == "membership" else "statistic"
        colours = {k: f"C{i % 10}" for i, k in enumerate(dict.fromkeys(r[colour_key] for r in rows))}
        styles = {k: ("-", "--", ":", "-.")[i % 4] for i, k in enumerate(dict.fromkeys(r[style_key] for r in rows))}
        for r in rows:
            label = r["setting"] if attack == "differencing" else f"{r.get('statistic', '')}: {r['setting']}"
            ax.plot(
                r["roc"]["fpr"],
                r["roc"]["tpr"],
                lw=1.3,
                color=colours[r[colour_key]],
                ls=styles[r[style_key]],
                label=f"{label} (AUC {r['auc']:.2f})",
            )
        if attack == "differencing":
            for r in rows:
                eps = float(r["epsilon"])
                x = [i / 200 for i in range(201)]
                ax.plot(x, [min(1.0, math.exp(eps) * v) for v in x], lw=0.6, ls="--", color="0.4")
            ax.plot([], [], lw=0.6, ls="--", color="0.4", label="bound TPR <= e^eps FPR (each budget)")
        ax.axvline(0.05, color="0.8", lw=0.6)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6.5, loc="lower right")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        fig.tight_layout()
        path = out / f"roc_{attack}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def _n(r: dict[str, Any]) -> str:
    return f"{r['n_pos']:,} + {r['n_neg']:,}"


def tables(doc: dict[str, Any], images: dict[str, str]) -> str:
    """The markdown that goes between the markers."""
    results = doc["results"]
    lines = [
        f"Measured by `make attacks` at commit `{doc['commit']}` on {doc['date']} ({doc['mode']} run, seed "
        f"{doc['seed']}; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in doc.get("seconds_by_attack", {}).items())
        + " on a shared 2-core machine). Shipped policy at that commit: "
        + ", ".join(f"{k} {v}" for k, v in doc["policy"].items())
        + ".",
        "",
        "| attack | statistic | setting | ε spent | AUC | TPR at 5% FPR | n (positives + negatives) | reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["attack"] == "coverage":
            continue
        eps = "none (exact)" if r.get("epsilon") is None else f"{r['epsilon']:g}"
        extra = ""
        if r["attack"] == "differencing":
            extra = f" (bound e^ε·5%: {r['bound_tpr_at_5pct_fpr']:.2f})"
        if r["attack"] == "timing":
            extra = f" (median {r['median_ms_held']:.1f} vs {r['median_ms_absent']:.1f} ms)"
        lines.append(
            f"| {r['attack']} | {r.get('statistic', '')} | {r['setting']} | {eps} | {r['auc']:.2f} | "
            f"{r['tpr_at_5pct_fpr']:.2f}{extra} | {_n(r)} | `{COMMAND[r['attack']]}` |"
        )
    cov = [r for r in results if r["attack"] == "coverage"]
    if cov:
        lines += [
            "",
            "| interval coverage | numbers with an interval | covered | 95% CI of the coverage | reproduce |",
            "|---|---|---|---|---|",
        ]
        for r in cov:
            lo, hi = r["coverage_ci95"]
            lines.append(
                f"| {r['setting']} | {r['n']:,} | {r['coverage']:.1%} | [{lo:.1%}, {hi:.1%}] | "
                f"`{COMMAND['coverage']}` |"
            )
    for attack, image in images.items():
        lines += ["", f"![{TITLES[attack]}]({image})"]
    return "\n".join(lines)


def update_security(path: Path, text: str) -> None:
    """Replace what lies between the markers in ``path`` (which must have both)."""
    doc = path.read_text()
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
    path.write_text(doc[: start + len(BEGIN)] + "\n" + text + "\n" + doc[end:])
