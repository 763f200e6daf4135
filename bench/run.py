"""``make bench``: genogate side by side with bcftools and plink2 in one run; writes BENCHMARKS.md.

1. Ingest one synthetic BGZF VCF (default 100k samples x 20k variants on a 20 Mb chr22, ~1,000 variants
   per Mb) with ``genogate-node ingest``, ``bcftools view -Ob`` and ``plink2 --make-pgen``.
2. Exact allele counts of a phenotype-defined cohort over a 1 Mb region: ``plink2 --pfile --keep --chr
   --from-bp --to-bp --freq counts`` against the node's in-process counting and against the
   ``genogate-node freq`` command; the answers are checked to be identical.
3. A biobank-sized store written straight from the generator (default 100k x 1M variants genome-wide):
   build time, size, and the same region question on it, with peak memory.
4. The federation (``bench.federation``): a coordinator and its nodes against the relay floor, interleaved;
   written between the section's markers in BENCHMARKS.md. ``--only federation`` runs just that section;
   ``--quick`` a small version of it (``make bench-quick``, written to bench/work/federation-quick.md unless
   ``--out`` says otherwise).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bench.measure import Run, median_run, run

if TYPE_CHECKING:
    from bench.node_latency import Stats

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CASE = "HP:0001250"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _node(*args: str) -> list[str]:
    return [PY, "-m", "node.cli", *args]


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _synth_vcf(work: Path, samples: int, variants: int, seed: int) -> tuple[Path, Path, float]:
    from node.ingest.synth_files import run as synth_run
    from node.ingest.synth_spec import SynthSpec

    out = work / f"vcf_{samples}x{variants}_s{seed}"
    vcf, sheet = out / "cohort.vcf.gz", out / "samples.tsv"
    if vcf.exists() and sheet.exists():
        return vcf, sheet, float("nan")
    t0 = time.perf_counter()
    spec = SynthSpec(samples=samples, variants=variants, seed=seed, chromosomes=(("chr22", 20_000_000),))
    synth_run(out, spec)
    return vcf, sheet, time.perf_counter() - t0


def _ingest(work: Path, vcf: Path, sheet: Path) -> dict[str, Run]:
    res: dict[str, Run] = {}
    store = work / "ingest" / "store.duckdb"
    shutil.rmtree(store.parent, ignore_errors=True)
    store.parent.mkdir(parents=True)
    res["genogate"] = run(
        _node("ingest", "--store", str(store), "--vcf", str(vcf), "--samples", str(sheet)), env=_env()
    )
    res["bcftools"] = run(["bcftools", "view", "--threads", "0", "-Ob", "-o", str(work / "ingest" / "x.bcf"), str(vcf)])
    res["plink2"] = run(
        [
            "plink2",
            "--vcf",
            str(vcf),
            "--make-pgen",
            "--out",
            str(work / "ingest" / "pg"),
            "--threads",
            "2",
            "--memory",
            "4000",
        ]
    )
    return res


def _keep_file(sheet: Path, path: Path) -> int:
    n = 0
    with open(sheet) as fh, open(path, "w") as out:
        header = fh.readline().rstrip("\n").split("\t")
        col = header.index("phenotypes")
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if CASE in f[col].split(";"):
                out.write(f[0] + "\n")
                n += 1
    return n


def _plink_counts(acount: Path) -> dict[str, tuple[int, int]]:
    out = {}
    with open(acount) as fh:
        header = fh.readline().lstrip("#").rstrip("\n").split("\t")
        for line in fh:
            r = dict(zip(header, line.rstrip("\n").split("\t"), strict=True))
            pos = r.get("POS")
            for alt, ac in zip(r["ALT"].split(","), r["ALT_CTS"].split(","), strict=True):
                out[f"{r['CHROM']}:{pos}:{r['REF']}:{alt}"] = (int(ac), int(r["OBS_CT"]))
    return out


def _region_question(
    work: Path, store: Path, sheet: Path, pfile: Path | None, region: str, repeats: int
) -> dict[str, object]:
    chrom, span = region.split(":")
    start, end = span.split("-")
    keep = work / "keep.txt"
    cohort = _keep_file(sheet, keep)
    res: dict[str, object] = {"cohort": cohort, "region": region}
    engine = run(
        [
            PY,
            "-m",
            "bench.query_engine",
            "--store",
            str(store),
            "--region",
            region,
            "--where",
            f"phenotype={CASE}",
            "--repeats",
            str(repeats),
        ],
        env=_env(),
    )
    eng = json.loads(engine.stdout)
    res["engine"] = eng | {"peak_rss_mib": engine.peak_rss_mib}
    cli = median_run(
        _node("freq", "--store", str(store), "--region", region, "--where", f"phenotype={CASE}"),
        max(3, repeats // 4),
        env=_env(),
    )
    res["cli"] = cli
    if pfile is not None:
        out = work / "plinkq"
        plink = median_run(
            [
                "plink2",
                "--pfile",
                str(pfile),
                "--keep",
                str(keep),
                "--chr",
                chrom,
                "--from-bp",
                start,
                "--to-bp",
                end,
                "--freq",
                "counts",
                "cols=+pos",
                "--out",
                str(out),
                "--threads",
                "2",
                "--memory",
                "4000",
            ],
            max(3, repeats // 4),
        )
        res["plink2"] = plink
        # plink2 writes chr22 as 22: compare without the prefix.
        theirs = {k.removeprefix("chr"): v for k, v in _plink_counts(out.with_suffix(".acount")).items()}
        ours = {k.removeprefix("chr"): tuple(v) for k, v in eng["counts"].items()}
        res["agree"] = theirs == ours
        if theirs != ours:
            diff = [k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k)]
            res["disagreements"] = diff[:5]
    return res


def _big_store(work: Path, samples: int, variants: int, seed: int) -> tuple[Path, Path, Run | None]:
    """The store, its sheet, and how its build went (kept beside it: a reused store reports its own build)."""
    out = work / f"store_{samples}x{variants}_s{seed}"
    store, record = out / "store.duckdb", out / "build.json"
    if store.exists():
        built = json.loads(record.read_text()) if record.exists() else None
        return store, out / "samples.tsv", Run(**built) if built else None
    shutil.rmtree(out, ignore_errors=True)
    r = run(
        _node(
            "synth",
            "--samples",
            str(samples),
            "--variants",
            str(variants),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--store",
            str(store),
        ),
        env=_env(),
    )
    record.write_text(json.dumps({"seconds": r.seconds, "peak_rss_mib": r.peak_rss_mib, "stdout": r.stdout}))
    return store, out / "samples.tsv", r


def _densest_window(store: Path, chrom: str) -> str:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute(
            "SELECT (pos // 1000000) AS mb, count(*) FROM variants WHERE chrom = ? "
            "GROUP BY mb ORDER BY 2 DESC, 1 LIMIT 1",
            [chrom],
        ).fetchall()
    finally:
        con.close()
    mb = int(rows[0][0])
    return f"{chrom}:{mb * 1_000_000 + 1}-{(mb + 1) * 1_000_000}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--variants", type=int, default=20_000)
    p.add_argument("--big-variants", type=int, default=1_000_000, help="0 skips the biobank-sized store")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    p.add_argument("--out", type=Path, default=None, help="default: BENCHMARKS.md (--quick: bench/work/...)")
    p.add_argument("--only", choices=("federation",), help="run only this section")
    p.add_argument("--quick", action="store_true", help="the federation section's quick plan (make bench-quick)")
    p.add_argument("--federation-plan", choices=("full", "quick", "smallest"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    fed_plan = args.federation_plan or ("quick" if args.quick else "full")
    if fed_plan != "full" and args.only != "federation":
        p.error("--quick is the federation section's: use it with --only federation")
    if args.out is None:
        args.out = ROOT / "BENCHMARKS.md" if fed_plan == "full" else args.work / f"federation-{fed_plan}.md"
    if args.only == "federation":
        return _federation(args.work, args.out, fed_plan)
    for tool in ("bcftools", "plink2"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    args.work.mkdir(parents=True, exist_ok=True)

    print(f"[1/6] synthetic VCF {args.samples} x {args.variants} ...", flush=True)
    vcf, sheet, synth_s = _synth_vcf(args.work, args.samples, args.variants, args.seed)
    print("[2/6] ingest: genogate, bcftools view -Ob, plink2 --make-pgen ...", flush=True)
    ingest = _ingest(args.work, vcf, sheet)
    store = args.work / "ingest" / "store.duckdb"
    print("[3/6] 1 Mb region, phenotype cohort: genogate vs plink2 ...", flush=True)
    region = _densest_window(store, "22")  # stores hold canonical contig names
    q = _region_question(args.work, store, sheet, args.work / "ingest" / "pg", region, args.repeats)
    print("[4/6] node query latency and throughput (real processes, mTLS, ledger, OpenDP) vs bare gRPC ...", flush=True)
    from bench.node_latency import run as node_latency

    latency = node_latency(store, args.work / "latency")
    big = None
    if args.big_variants:
        print(f"[5/6] store {args.samples} x {args.big_variants} straight from the generator ...", flush=True)
        bstore, bsheet, build = _big_store(args.work, args.samples, args.big_variants, args.seed)
        bregion = _densest_window(bstore, "1")
        big = (bstore, build, _region_question(args.work, bstore, bsheet, None, bregion, args.repeats))
    report = _report(args, vcf, synth_s, ingest, store, q, big) + _latency_report(args, latency)
    _write_measured(args.out, report)
    print(report)
    print("[6/6] the federation against its floor ...", flush=True)
    return _federation(args.work, args.out, fed_plan)


# BENCHMARKS.md below this line is written by hand (each issue's interleaved A/B and its notes): a full run
# rewrites the measured sections above it and keeps it, and the federation section, as they are.
KEPT = "<!-- make bench rewrites the sections above and keeps everything below this line -->"


def _write_measured(out: Path, report: str) -> None:
    """``report`` (the measured sections) at the top of ``out``, then its federation section (between its
    markers, replaced in place by ``_federation`` afterwards) and everything from ``KEPT`` on, as they were."""
    from bench.federation_report import BEGIN, END

    old = out.read_text() if out.exists() else ""
    start, stop = old.find(BEGIN), old.find(END)
    parts = [report.rstrip("\n")]
    if 0 <= start < stop:
        parts.append(old[start : stop + len(END)])
    parts.append(old[old.find(KEPT) :].rstrip("\n") if KEPT in old else KEPT)
    out.write_text("\n\n".join(parts) + "\n")


def _federation(work: Path, out: Path, plan_name: str) -> int:
    """Run ``bench.federation`` with the named plan; write its JSON beside the work, its plot, and its section
    between the markers in ``out``; print the section."""
    from bench import federation
    from bench.federation_report import markdown, write_section
    from bench.plot import latency_vs_sites

    plan = {"full": federation.Plan, "quick": federation.Plan.quick, "smallest": federation.Plan.smallest}[plan_name]()
    work.mkdir(parents=True, exist_ok=True)
    res = federation.run(work / "federation", plan, tell=lambda s: print(s, flush=True)).to_json()
    suffix = "" if plan_name == "full" else f"-{plan_name}"
    (work / f"federation{suffix}.json").write_text(json.dumps(res, indent=1))
    png = ROOT / "bench" / "federation-latency.png" if plan_name == "full" else work / f"federation-latency{suffix}.png"
    title = f"single-variant AF, {plan.samples:,} x {plan.variants:,} store, ε {plan.epsilon:g}, {plan.n_sites} calls"
    drawn = latency_vs_sites(res["sites"]["rows"], png, title)
    link = os.path.relpath(drawn, out.resolve().parent) if drawn else None
    section = markdown(res, link, quick=plan_name != "full")
    write_section(out, section)
    print(section)
    print(f"federation: section in {out}, results in {work / f'federation{suffix}.json'}", flush=True)
    return 0


def _report(
    args: argparse.Namespace,
    vcf: Path,
    synth_s: float,
    ingest: dict[str, Run],
    store: Path,
    q: dict[str, object],
    big: tuple[Path, Run | None, dict[str, object]] | None,
) -> str:
    mb = vcf.stat().st_size / 2**20
    g = args.samples * args.variants
    L = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {dt.date.today().isoformat()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {_version('bcftools')}, {_version('plink2')}. Ratios are genogate "
        "relative to the peer measured in the same run (>1 means genogate is faster).",
        "",
        f"## Ingest: {args.samples:,} samples x {args.variants:,} variants (BGZF VCF, {mb:,.0f} MiB)",
        "",
        "| tool | seconds | genotypes/s | peak RSS MiB | genogate speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in ingest.items():
        ratio = r.seconds / ingest["genogate"].seconds
        L.append(
            f"| {name} | {r.seconds:.1f} | {g / r.seconds / 1e6:,.1f} M | {r.peak_rss_mib:,.0f} | "
            f"{'—' if name == 'genogate' else f'{ratio:.2f}x'} |"
        )
    L += [
        "",
        f"Store: {_dir_size(store) / 2**20:,.0f} MiB (BCF {_dir_size(args.work / 'ingest' / 'x.bcf') / 2**20:,.0f} MiB,"
        f" pgen {_dir_size(args.work / 'ingest' / 'pg.pgen') / 2**20:,.0f} MiB). "
        f"bcftools runs single-threaded (its default); plink2 with 2 threads; genogate single-threaded."
        + (f" Generating the VCF took {synth_s:.0f} s." if synth_s == synth_s else ""),  # NaN: reused
        "",
    ]
    L += _region_report(f"{args.samples:,}-sample store ({args.variants:,} variants)", q)
    if big is not None:
        bstore, build, bq = big
        L += ["", f"## Biobank-sized store: {args.samples:,} samples x {args.big_variants:,} variants", ""]
        if build is not None:
            L.append(
                f"Written straight from the generator (no VCF) in {build.seconds:,.0f} s, peak RSS "
                f"{build.peak_rss_mib:,.0f} MiB."
            )
        L.append(f"Store size {_dir_size(bstore) / 2**30:,.2f} GiB.")
        L.append("")
        L += _region_report("biobank-sized store (plink2 needs a VCF of this size to compare; not run)", bq)
    return "\n".join(L) + "\n"


def _latency_report(args: argparse.Namespace, latency: Mapping[str, Stats]) -> str:
    L = [
        "",
        f"## Node queries over gRPC: {args.samples:,}-sample store, loopback, mTLS",
        "",
        "Each query is distinct (none is answered from the same-question cache), so every one verifies, charges the "
        "durable ledger (one fsync for the charge; the result goes to the WAL), counts, draws OpenDP noise and "
        "signs its release. The node reads a query's rows from its in-memory copy of the store's calls (this "
        "store's fit in the default `[store] memory_mb`); the rows marked 'read through DuckDB' are the same node "
        "with the copy off, as a node serves a store too big for it. Latency: one client, sequential; each query "
        "is followed by one call to a bare gRPC echo server with the same mTLS (the floor), so every row's floor "
        "is measured at the same moments (this VM's speed drifts by up to 2x within minutes). Throughput: 8 "
        "client threads in the benchmark process (sharing the 2 cores with the node).",
        "",
        "| query | p50 ms | p99 ms | queries/s | bare gRPC p50 meanwhile, ms | p50 / bare gRPC p50 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in latency.items():
        L.append(
            f"| {name} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.qps:,.0f} | {s.floor_p50_ms:.2f} | "
            f"{s.p50_ms / s.floor_p50_ms:.1f}x |"
        )
    one = latency.get("allele frequency, 1 variant")
    if one is not None:
        met = one.p50_ms < 3 and one.qps >= 300
        L += [
            "",
            f"Target (single-variant allele frequency: p50 under 3 ms, at least 300 queries/s): "
            f"{'met' if met else 'NOT met'} in this run ({one.p50_ms:.2f} ms, {one.qps:,.0f} queries/s).",
        ]
    return "\n".join(L) + "\n"


def _region_report(title: str, q: dict[str, object]) -> list[str]:
    eng = q["engine"]
    assert isinstance(eng, dict)
    cli = q["cli"]
    assert isinstance(cli, Run)
    plink = q.get("plink2")
    L = [
        f"## Exact allele counts, {q['cohort']:,}-participant phenotype cohort, 1 Mb region ({q['region']}, "
        f"{eng['variants']:,} alleles): {title}",
        "",
        "| what | median ms | peak RSS MiB | plink2 time / this time |",
        "|---|---:|---:|---:|",
    ]

    def ratio(ms: float) -> str:
        return f"{plink.seconds * 1e3 / ms:.2f}x" if isinstance(plink, Run) else "—"

    L.append(
        f"| genogate node, in-process (what a query costs a running node) | {eng['median_ms']:.1f} | "
        f"{eng['peak_rss_mib']:,.0f} | {ratio(eng['median_ms'])} |"
    )
    L.append(
        f"| genogate-node freq (whole command, Python start-up included) | {cli.seconds * 1e3:.0f} | "
        f"{cli.peak_rss_mib:,.0f} | {ratio(cli.seconds * 1e3)} |"
    )
    if isinstance(plink, Run):
        L.append(
            f"| plink2 --keep --chr --from-bp --to-bp --freq counts | {plink.seconds * 1e3:.0f} | "
            f"{plink.peak_rss_mib:,.0f} | — |"
        )
    L.append("")
    if isinstance(plink, Run):
        L.append("Answers identical to plink2's: " + ("yes" if q.get("agree") else f"NO {q.get('disagreements')}"))
    L.append(f"Opening the store: {eng['open_ms']:.0f} ms (once per node process).")
    return L


def _version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return f"{tool} (missing)"
    return out.splitlines()[0] if out else tool


if __name__ == "__main__":
    raise SystemExit(main())
