"""The federation section of BENCHMARKS.md from ``bench.federation``'s results: the issue's targets as ratios
measured in the same run (met or missed), then each measurement's table. ``write_section`` replaces only the
text between the section's markers, so the rest of the file (other sections, prose) is left as it is."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.federation import AF_1, AF_1000, CASES, COORD_AUDIT, NODE_LEDGER

BEGIN = "<!-- federation:begin -->"
END = "<!-- federation:end -->"


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    ratio: float | None  # None: not measurable in this run (said in ``measured``)
    limit: float
    at_most: bool  # True: ratio <= limit is met; False: ratio >= limit

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio <= self.limit if self.at_most else self.ratio >= self.limit

    def row(self) -> str:
        verdict = {True: "met", False: "**missed**", None: "not measured"}[self.met]
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}x"
        return (
            f"| {self.what} | {self.measured} | {ratio} | {'≤' if self.at_most else '≥'} {self.limit:g}x | {verdict} |"
        )


def targets(r: Mapping[str, Any]) -> list[Target]:
    cases, sites = r["cases"], r["sites"]
    k = cases["sites"]
    af1, vec = cases[AF_1], cases[AF_1000]
    out = [
        Target(
            f"single-variant AF at {_sites(k)}, p50 / asyncio floor p50",
            f"{af1['genogate']['p50_ms']:.1f} / {af1['floor_asyncio']['p50_ms']:.1f} ms",
            af1["genogate"]["p50_ms"] / af1["floor_asyncio"]["p50_ms"],
            2,
            True,
        ),
        Target(
            f"1,000-variant AF vector at {_sites(k)}, p50 / one node asked directly",
            f"{vec['genogate']['p50_ms']:.0f} / {vec['direct']['p50_ms']:.0f} ms",
            vec["genogate"]["p50_ms"] / vec["direct"]["p50_ms"],
            3,
            True,
        ),
    ]
    inc = sites["increment_ms"]
    g, f = inc.get("genogate"), inc.get("floor_asyncio")
    if g is None or f is None:
        out.append(Target("each extra site, p50 increment / the floor's", "one site count only", None, 2, True))
    elif f <= 0:
        out.append(
            Target("each extra site, p50 increment / the floor's", f"+{g:.2f} ms; floor {f:+.2f} ms", None, 2, True)
        )
    else:
        out.append(
            Target("each extra site, p50 increment / the asyncio floor's", f"+{g:.2f} / +{f:.2f} ms", g / f, 2, True)
        )
    for t, row in r["throughput"].items():
        out.append(
            Target(
                f"throughput at {_sites(k)}, {t} client threads / the floor's",
                f"{row['genogate']:.0f} / {row['floor_asyncio']:.0f} q/s",
                row["genogate"] / row["floor_asyncio"],
                0.5,
                False,
            )
        )
    cli = r["cli"].get("genogate query allele-frequency")
    if cli is None:
        out.append(Target("`genogate query ...` wall time / `python -c pass`", _missing(r["cli"]), None, 5, True))
    else:
        out.append(
            Target(
                "`genogate query ...` wall time / `python -c pass`",
                f"{cli['ms']:.0f} / {cli['python_ms']:.0f} ms",
                cli["ratio"],
                5,
                True,
            )
        )
    for case, row in r["audit"].items():
        grow = row[COORD_AUDIT]
        out.append(
            Target(
                f"coordinator audit growth per {case} query / 20 KB",
                f"{grow / 1024:,.1f} KiB",
                grow / 20_480,
                1,
                True,
            )
        )
    return out


def _sites(k: int) -> str:
    return f"{k} site" if k == 1 else f"{k} sites"


def _ms(x: Mapping[str, float]) -> str:
    return f"{x['p50_ms']:.1f} | {x['p99_ms']:.1f}"


def markdown(r: Mapping[str, Any], plot: str | None, *, quick: bool) -> str:
    plan = r["plan"]
    cases, k = r["cases"], r["cases"]["sites"]
    most = max(*plan["sites"], plan["case_sites"])
    L = [
        BEGIN,
        "## Federation: a coordinator and its nodes against the floor" + (" (quick run)" if quick else ""),
        "",
        f"Written by `make bench{'-quick' if quick else ''}` on {dt.date.today().isoformat()} in "
        f"{r['seconds']:.0f} s: {os.cpu_count()} cores, Python {platform.python_version()}. A real federation on "
        f"127.0.0.1: one coordinator process and {most} node processes, every link mutual TLS, an approved study "
        "with a committee-signed grant, queries signed by a registered researcher through the SDK. The nodes "
        f"share one synthetic store ({plan['samples']:,} samples x {plan['variants']:,} variants, opened read-only "
        "by each through a symlink, to save disk); each keeps its own in-memory copy of the calls, ledger, audit "
        "log and keys, so only the file is shared, not the work. A query to k sites asks the first k of them (the "
        "study names all); the others stay up, idle. Every query is distinct (its own id and filter "
        f"clause: no answer from a cache or a stored release), ε {plan['epsilon']:g} per site, everything else "
        "at its defaults (logging, fsyncs, signature and grant checks). Each genogate figure is measured "
        "interleaved, one call at a time round robin, with its floor (`bench.relay_floor`: a client -> a "
        "minimal gRPC relay -> one echo server process per site, the same mTLS and channel options, request "
        "and reply sizes like genogate's real messages), so both see the same moments of this machine's "
        "drifting speed; ratios compare, absolute times drift up to 2x.",
        "",
        "### Targets (issue 16), as ratios measured in this run",
        "",
        "| target | measured | ratio | target | verdict |",
        "|---|---:|---:|---:|---|",
        *(t.row() for t in targets(r)),
        "",
        "The node's own figures (no regression) are in the node section above.",
        "",
        f"### Latency at {_sites(k)} ({plan['n']} calls of each small case, {plan['n_vector']} of the vector)",
        "",
        "| query | genogate p50 ms | p99 ms | asyncio floor p50 | p99 | futures floor p50 | p99 | "
        "one node direct p50 | p99 | genogate / asyncio floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        if case not in cases:
            continue
        c = cases[case]
        fut = _ms(c["floor_futures"]) if "floor_futures" in c else "— | —"
        d = _ms(c["direct"]) if "direct" in c else "— | —"
        ratio = c["genogate"]["p50_ms"] / c["floor_asyncio"]["p50_ms"]
        L.append(f"| {case} | {_ms(c['genogate'])} | {_ms(c['floor_asyncio'])} | {fut} | {d} | {ratio:.1f}x |")
    L += [
        "",
        "The vector's floor carries 1,000 variants' worth of bytes each way; the small cases' floor one variant's.",
        "",
        f"### Single-variant AF against the number of sites ({plan['n_sites']} calls each)",
        "",
        "| sites | genogate p50 ms | p99 ms | asyncio floor p50 | p99 | futures floor p50 | p99 | "
        "genogate / asyncio floor |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, row in r["sites"]["rows"].items():
        ratio = row["genogate"]["p50_ms"] / row["floor_asyncio"]["p50_ms"]
        L.append(
            f"| {s} | {_ms(row['genogate'])} | {_ms(row['floor_asyncio'])} | {_ms(row['floor_futures'])} | "
            f"{ratio:.1f}x |"
        )
    inc = r["sites"]["increment_ms"]
    if inc.get("genogate") is not None:
        L += [
            "",
            "Per extra site (least-squares slope of p50 over the site counts): genogate "
            f"{inc['genogate']:+.2f} ms, asyncio floor {inc['floor_asyncio']:+.2f} ms, futures floor "
            f"{inc['floor_futures']:+.2f} ms.",
        ]
    L += [
        "",
        f"![p50 latency against sites]({plot})"
        if plot
        else "(No plot: matplotlib is not installed; `make bench` installs it.)",
    ]
    L += [
        "",
        f"### Throughput at {_sites(k)} (single-variant AF; client threads in the benchmark process, sharing the "
        f"cores; mean of two {plan['throughput_s']:g} s runs alternating with the floor's)",
        "",
        "| client threads | genogate q/s | asyncio floor q/s | genogate / floor |",
        "|---:|---:|---:|---:|",
    ]
    for t, row in r["throughput"].items():
        gq, fq = row["genogate"], row["floor_asyncio"]
        L.append(f"| {t} | {gq:,.1f} | {fq:,.1f} | {gq / fq:.2f}x |")
    cpu = r["cpu"]
    g, f = cpu["genogate"], cpu["floor_asyncio"]
    gp, fp = g["per_process_ms"], f["per_process_ms"]
    L += [
        "",
        f"### CPU per single-variant AF query at {_sites(k)} (utime+stime deltas over {plan['cpu_queries']} "
        "sequential queries, ms per query)",
        "",
        "| process | genogate | floor |",
        "|---|---:|---:|",
        f"| coordinator / relay | {gp['coordinator'][0]:.2f} | {fp['relay'][0]:.2f} |",
        f"| each node / echo server | {_each(gp['nodes'])} | {_each(fp['echo'])} |",
        f"| client | {gp['client'][0]:.2f} | {fp['client'][0]:.2f} |",
        f"| **total** | **{g['total_ms']:.2f}** | **{f['total_ms']:.2f}** ({_ratio(g['total_ms'], f['total_ms'])}) |",
        "",
        "### Audit and ledger growth per query (logical SQLite size, WAL included, read-only, before and "
        "after each case's latency calls above)",
        "",
        "| query | coordinator audit.sqlite | first node's ledger.sqlite (releases + audit log) |",
        "|---|---:|---:|",
    ]
    for case, row in r["audit"].items():
        L.append(f"| {case} | {_kib(row[COORD_AUDIT])} | {_kib(row[NODE_LEDGER])} |")
    L += [
        "",
        f"### CLI start-up ({plan['cli_repeats']} runs each, interleaved with `python -c pass`; medians; CPU: user + "
        "system time of the command's process, steadier than wall time on a loaded machine; every run reads compiled "
        "bytecode, as an installed package has it, written by one warm-up run)",
        "",
        "| command | wall ms | `python -c pass` wall ms | ratio | CPU ms | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    if "missing" in r["cli"]:
        L.append(f"| — | {_missing(r['cli'])} | | | | |")
    for name, row in r["cli"].items():
        if name == "missing":
            continue
        L.append(
            f"| `{name}` | {row['ms']:.0f} | {row['python_ms']:.0f} | {row['ratio']:.1f}x | {row['cpu_ms']:.0f} | "
            f"{row['cpu_ratio']:.1f}x |"
        )
    L += [
        "",
        "`genogate query` is a real query through the federation, the same question each run (the nodes may "
        "answer later runs from their same-question cache; the figure is about the command's start-up).",
    ]
    prof = r["profile"]
    if "missing" in prof:
        return "\n".join([*L, "", f"### Where the time goes: {_missing(prof)}", "", END]) + "\n"
    L += [
        "",
        f"### Where the time goes: sampling profile under load ({_sites(k)}, 8 client threads of single-variant "
        f"AF for {plan['profile_s']:g} s, {prof['qps']:.0f} q/s under the profiler)",
        "",
        "A separate federation whose coordinator and first node run under `bench.profiled` (samples every few ms "
        "weighted by each thread's CPU time); top functions by self time, as % of the sampled CPU time.",
    ]
    for who, top in prof["top"].items():
        L += ["", f"| {who}: function | self % | inclusive % |", "|---|---:|---:|"]
        L += [f"| `{_short(fn)}` | {s:.1f} | {inc_:.1f} |" for fn, s, inc_ in top]
    L += ["", END]
    return "\n".join(L) + "\n"


def _short(function: str) -> str:
    """A standard-library or site-packages path without its installation prefix."""
    for marker in ("/site-packages/", "/lib/python3"):
        at = function.find(marker)
        if at >= 0:
            rest = function[at + len(marker) :]
            return rest.split("/", 1)[1] if marker == "/lib/python3" else rest
    return function


def _ratio(a: float, b: float) -> str:
    """``a / b`` as a ratio, or a dash when ``b`` is 0 (a few calls can spend less than one 10 ms CPU tick)."""
    return f"{a / b:.1f}x" if b > 0 else "—"


def _missing(part: Mapping[str, Any]) -> str:
    return f"not measured: `{part['missing']}` is not in this checkout"


def _each(xs: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in xs)


def _kib(x: float) -> str:
    return f"{x / 1024:,.1f} KiB"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` (which starts with BEGIN and ends with END) between the markers in ``path``, or at its
    end when it has none yet (a new file holds the section alone)."""
    text = path.read_text() if path.exists() else ""
    start, stop = text.find(BEGIN), text.find(END)
    if start >= 0 and stop > start:
        text = text[:start] + section.rstrip("\n") + text[stop + len(END) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
