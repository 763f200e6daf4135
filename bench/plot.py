"""The federation section's figure: p50 latency of a single-variant query against the number of sites, for
genogate and its floors (``bench.federation``'s latency-against-sites scan). matplotlib comes with the
``attacks`` extra (``make bench`` installs it); without it there is no figure and ``latency_vs_sites`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

LINES = (
    ("genogate", "genogate (coordinator + nodes)", "C0", "o"),
    ("floor_asyncio", "floor: asyncio relay + echo servers", "C1", "s"),
    ("floor_futures", "floor: futures relay + echo servers", "C2", "^"),
)


def latency_vs_sites(rows: Mapping[str, Mapping[str, Any]], out: Path, title: str) -> Path | None:
    """Write ``out`` (PNG) from ``rows`` ({sites: {who: {"p50_ms", "p99_ms"}}}); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sites = sorted(int(k) for k in rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for key, label, colour, marker in LINES:
        if not all(key in rows[str(k)] for k in sites):
            continue
        p50 = [rows[str(k)][key]["p50_ms"] for k in sites]
        p99 = [rows[str(k)][key]["p99_ms"] for k in sites]
        ax.plot(sites, p50, marker=marker, color=colour, lw=1.4, label=f"{label}, p50")
        ax.plot(sites, p99, color=colour, lw=0.8, ls=":", label=f"{label}, p99")
    ax.set_xlabel("sites asked")
    ax.set_ylabel("latency, ms")
    ax.set_xticks(sites)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
