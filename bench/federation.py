"""The federation section of ``make bench``: genogate's coordinator and nodes beside the floors, in one run.

A real federation on 127.0.0.1: ``sites`` node processes and a coordinator process, all over mTLS with
certificates from a development CA, an approved study (proposed by a registered researcher, approved by a
two-member committee, so the nodes check a committee-signed grant on every query) and the SDK client. The
nodes all read one shared DuckDB store (read-only, symlinked into each node's directory), each with its own
ledger, audit log and in-memory copy of the calls: only disk is shared, the work is not.

Every query is distinct (its own query id and a filter clause of its own, ``tests.terms.filler``) so no node
answers from its same-question cache or replays a stored release. Each genogate figure is measured
interleaved (round robin, one call each) with its floor from ``bench.relay_floor``: one client -> a minimal
gRPC relay -> N echo servers over the same mTLS, with request and reply sizes like genogate's.

Results: a dict (also written as JSON) that ``markdown`` turns into the BENCHMARKS.md section.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.cpu import cpu_seconds
from bench.relay_floor import ONE_VARIANT, THOUSAND_VARIANTS, Floor, Sizes, interleaved, percentile, throughput
from genogate import envelope
from genogate.client import Client
from genogate.coordclient import CoordinatorClient
from genogate.filter import parse_filter
from genogate.kinds.allele_frequency import AlleleFrequency
from genogate.kinds.case_control import CaseControl
from genogate.kinds.cohort_count import CohortCount
from genogate.nodeclient import ClientTLS, NodeClient
from genogate.query import Kind, Query, Variant
from genogate.signing import Signer
from genogate.studies import NodeInfo, ReviewDecision, Study, StudyProposal, StudyState
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, write_profile
from tests.processes import Proc, start_server
from tests.terms import filler

ROOT = Path(__file__).resolve().parents[1]
CASE = "HP:0001250"  # the synthetic cohort's case phenotype (SynthSpec.case_phenotype)
AF_1 = "single-variant AF"
COHORT = "cohort count"
CASE_CONTROL = "case/control, 1 variant"
AF_1000 = "1,000-variant AF vector"
CASES = (AF_1, COHORT, CASE_CONTROL, AF_1000)
COORD_AUDIT = "coordinator audit.sqlite"
NODE_LEDGER = "node ledger.sqlite"


@dataclass(frozen=True)
class Plan:
    """How big a run is. ``quick()`` fits ``make bench-quick`` (under 3 minutes on 2 cores); ``smallest()`` is
    the test's."""

    samples: int = 10_000
    variants: int = 20_000
    seed: int = 11
    sites: tuple[int, ...] = (1, 3, 10, 32)
    case_sites: int = 3
    n: int = 200  # interleaved calls per small case (each of genogate and its floors)
    n_vector: int = 40  # the same for the 1,000-variant vector
    n_sites: int = 100  # per site count in the latency-against-sites scan
    threads: tuple[int, ...] = (8, 32)
    throughput_s: float = 8.0
    cpu_queries: int = 100
    cli_repeats: int = 20
    profile_s: float = 15.0
    epsilon: float = 0.1
    cases: tuple[str, ...] = CASES  # the test's sampled variant asks fewer

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            samples=1_000,
            variants=2_000,
            sites=(1, 3),
            n=40,
            n_vector=3,
            n_sites=30,
            throughput_s=2.0,
            cpu_queries=30,
            cli_repeats=5,
            profile_s=5.0,
        )

    @classmethod
    def smallest(cls) -> Plan:
        return cls(
            samples=300,
            variants=1_200,
            sites=(1,),
            case_sites=1,
            n=3,
            n_vector=2,
            n_sites=3,
            threads=(2,),
            throughput_s=0.5,
            cpu_queries=3,
            cli_repeats=1,
            profile_s=1.0,
        )


# Federation ----------------------------------------------------------------------------------------------------


@dataclass
class Federation:
    root: Path
    coordinator: Proc
    nodes: list[Proc]
    names: list[str]
    tls: ClientTLS  # the researcher's
    signer: Signer
    study: Study
    profile: Path
    variants: list[Variant]
    _direct: NodeClient | None = None

    def client(self) -> Client:
        return Client(self.coordinator.address, self.tls, self.signer, timeout_s=120, attempts=1)

    def direct(self) -> NodeClient:
        """The researcher's own client of the first node (the study grants the per-site breakdown)."""
        if self._direct is None:
            self._direct = NodeClient(self.nodes[0].address, self.tls, timeout_s=120)
        return self._direct

    def stop(self) -> None:
        if self._direct is not None:
            self._direct.close()
        for p in self.nodes:
            p.stop()
        self.coordinator.stop()


def store_for(work: Path, samples: int, variants: int, seed: int) -> Path:
    """A synthetic store written straight from the generator (``genogate-node synth``), reused when present."""
    out = work / f"fedstore_{samples}x{variants}_s{seed}"
    store = out / "store.duckdb"
    if store.exists():
        return store
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "node.cli", "synth", "--samples", str(samples), "--variants", str(variants)]
        + ["--seed", str(seed), "--out", str(out), "--store", str(store)],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return store


def _node_env(committee: Signer, coordinator: str) -> dict[str, str]:
    # Caps large enough for thousands of distinct queries; everything else (logging, ledger, grants, noise) as
    # a node runs by default.
    return {
        "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee.public_raw.hex(),
        "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator,
        "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",  # tests.nodes.make_coordinator's name
        "GENOGATE_NODE_POLICY__EPSILON_PER_STUDY_CAP": "1000000",
        "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "1000000",
        "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "1000000",
        "GENOGATE_NODE_POLICY__RATE_LIMIT_PER_STUDY_PER_MINUTE": "100000000",
        "GENOGATE_NODE_POLICY__DELTA_PER_STUDY_CAP": "0.5",
    }


def start(
    work: Path, store: Path, sites: int, *, profile: dict[str, Path] | None = None, tag: str = "fed"
) -> Federation:
    """Build and start a federation of ``sites`` nodes over ``store``. ``profile``: run the coordinator
    (key ``"coordinator"``) and/or the first node (``"node"``) under ``bench.profiled``, writing there."""
    root = work / tag
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    profile = profile or {}
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_server(
        "coordinator.cli",
        cdir / "coordinator.toml",
        operator,
        log=root / "coordinator.log",
        env={"GENOGATE_COORDINATOR_FANOUT__SITE_TIMEOUT_MS": "60000"},
        wrapper=_wrapper(profile.get("coordinator")),
    )
    names = [f"site-{i:02d}" for i in range(sites)]
    nodes: dict[str, Proc] = {}
    errors: list[BaseException] = []
    env = _node_env(committee_key, coordinator.address)

    def one(i: int, name: str) -> None:
        try:
            node = make_node(root / name, name, ca, client=True)
            node.store.symlink_to(store.resolve())
            wrap = _wrapper(profile.get("node") if i == 0 else None)
            nodes[name] = start_server(
                "node.cli", node.config, operator, log=root / f"{name}.log", env=env, timeout=300, wrapper=wrap
            )
        except BaseException as exc:  # noqa: BLE001 - raised below once every start has finished
            errors.append(exc)

    try:
        # Two at a time: each node loads its copy of the calls at start, and the machine has two cores.
        pairs = list(enumerate(names))
        for b in range(0, len(pairs), 2):
            threads = [threading.Thread(target=one, args=pair) for pair in pairs[b : b + 2]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        signer_path = root / "alice.ed25519"
        write_secret(signer_path, new_identity_key())
        alice = Signer.from_pem_file(signer_path)
        tls = client_tls(ca, "alice", root / "clients")
        study = _approve(coordinator.address, operator, nodes, names, root, alice, committee)
        prof = write_profile(root / "alice.toml", "alice", coordinator.address, ca, root / "clients", signer_path)
    except BaseException:
        for p in nodes.values():
            p.stop()
        coordinator.stop()
        raise
    return Federation(root, coordinator, [nodes[n] for n in names], names, tls, alice, study, prof, _variants(store))


def _wrapper(out: Path | None) -> tuple[str, ...]:
    return () if out is None else ("-m", "bench.profiled", str(out), "--")


def _approve(
    address: str,
    operator: ClientTLS,
    nodes: dict[str, Proc],
    names: list[str],
    root: Path,
    alice: Signer,
    committee: list[Signer],
) -> Study:
    with CoordinatorClient(address, operator) as c:
        for name in names:
            cert = (root / name / "tls" / "node.pem").read_bytes()
            c.register_node(
                NodeInfo(name=name, endpoint=nodes[name].address, cert_sha256=fingerprint_sha256(cert), genome_build="")
            )
        c.register_researcher("alice", "a benchmark", alice.public_raw)
        proposal = StudyProposal(
            title="federation benchmark",
            purpose="HMB",
            kinds=(Kind.COHORT_COUNT, Kind.ALLELE_FREQUENCY, Kind.CASE_CONTROL),
            sites=tuple(names),
            epsilon_total_per_site=1_000_000,
            epsilon_per_query_cap=1,
            duration_days=30,
            researcher_key_fingerprint=alice.key_id,
            per_site_breakdown=True,  # so the researcher may also ask one node directly (the vector's target)
        )
        study = c.propose(proposal, alice)
        for member in committee:
            study = c.review(study, ReviewDecision.APPROVE, "benchmark", member)
    if study.state != StudyState.APPROVED:
        raise RuntimeError(f"the benchmark study was not approved: {study.state}")
    return study


def _variants(store: Path) -> list[Variant]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute("SELECT chrom, pos, ref, alt FROM variants ORDER BY vid").fetchall()
    finally:
        con.close()
    return [Variant(c, p, r, a) for c, p, r, a in rows]


# Queries -------------------------------------------------------------------------------------------------------

_COUNTER = itertools.count(1)  # one sequence for the whole run: every question differs from every other
_LOCK = threading.Lock()


def _next() -> int:
    with _LOCK:
        return next(_COUNTER)


def question(case: str, variants: Sequence[Variant], i: int) -> Query:
    """The ``i``-th distinct question of ``case`` (a filter clause of its own that selects nobody)."""
    extra = filler(i)
    if case == AF_1:
        return AlleleFrequency((variants[i % len(variants)],), filter=parse_filter(f"age>=0 or {extra}"))
    if case == COHORT:
        return CohortCount(parse_filter(f"age>={i % 90} or {extra}"))
    if case == CASE_CONTROL:
        return CaseControl(
            (variants[i % len(variants)],),
            parse_filter(f"phenotype={CASE} or {extra}"),
            parse_filter(f"not phenotype={CASE}"),
        )
    if case == AF_1000:
        start = (i * 7) % (len(variants) - 1000)
        return AlleleFrequency(tuple(variants[start : start + 1000]), filter=parse_filter(f"age>={i % 90} or {extra}"))
    raise ValueError(case)


def federated(fed: Federation, client: Client, case: str, sites: int, epsilon: float) -> Callable[[], None]:
    """One distinct federated query per call through the coordinator to the first ``sites`` sites; raises
    unless every asked site answered."""
    chosen = tuple(fed.names[:sites])

    def call() -> None:
        result = client.run(fed.study.study_id, question(case, fed.variants, _next()), epsilon=epsilon, sites=chosen)
        if len(result.answered) != sites:
            raise RuntimeError(f"{case}: {len(result.answered)} of {sites} sites answered")

    return call


def direct(fed: Federation, case: str, epsilon: float) -> Callable[[], None]:
    """One distinct query per call to the first node directly (the node's own client API, the same grant)."""
    node = fed.direct()
    grant = fed.study.grant

    def call() -> None:
        env = envelope.build(question(case, fed.variants, _next()), study_id=fed.study.study_id, epsilon=epsilon)
        payload, signature = envelope.sign(env, fed.signer)
        node.send(payload, signature, grant)

    return call


# Measurements --------------------------------------------------------------------------------------------------


def _ms(xs: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(xs) * 1e3, "p99_ms": percentile(xs, 0.99) * 1e3}


def _warm(*calls: Callable[[], None], n: int = 3) -> None:
    for _ in range(n):
        for c in calls:
            c()


@contextlib.contextmanager
def floors(work: Path, sites: int, *sizes: tuple[Sizes, str]) -> Iterator[list[Floor]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(Floor(work, sites, s, relay=relay)) for s, relay in sizes]  # type: ignore[arg-type]


def measure_cases(fed: Federation, work: Path, plan: Plan) -> dict[str, Any]:
    """The four cases at ``plan.case_sites`` sites, each interleaved with the asyncio and futures relay floors
    (request and reply sizes of one variant or of 1,000); the vector also with one node asked directly. Each
    case also gives the growth per query of the coordinator's audit log (its federated queries) and of the
    first node's ledger (federated and direct queries both write a release there), under ``"audit"``."""
    out: dict[str, Any] = {"sites": plan.case_sites, "audit": {}}
    k = plan.case_sites
    with (
        fed.client() as client,
        floors(
            work / "floor-cases", k, (ONE_VARIANT, "asyncio"), (ONE_VARIANT, "futures"), (THOUSAND_VARIANTS, "asyncio")
        ) as (fa, ff, fv),
    ):
        for case in plan.cases:
            before = _audit_bytes(fed)
            g = federated(fed, client, case, k, plan.epsilon)
            if case == AF_1000:
                d = direct(fed, case, plan.epsilon)
                _warm(g, d, fv.call, n=1)
                gl, dl, fl = interleaved([g, d, fv.call], plan.n_vector)
                out[case] = {"genogate": _ms(gl), "direct": _ms(dl), "floor_asyncio": _ms(fl)}
                asked, at_node = 1 + plan.n_vector, 2 * (1 + plan.n_vector)
            else:
                _warm(g, fa.call, ff.call)
                gl, al, fl = interleaved([g, fa.call, ff.call], plan.n)
                out[case] = {"genogate": _ms(gl), "floor_asyncio": _ms(al), "floor_futures": _ms(fl)}
                asked = at_node = 3 + plan.n
            after = _audit_bytes(fed)
            out["audit"][case] = {
                COORD_AUDIT: (after[COORD_AUDIT] - before[COORD_AUDIT]) / asked,
                NODE_LEDGER: (after[NODE_LEDGER] - before[NODE_LEDGER]) / at_node,
            }
    return out


def measure_sites(fed: Federation, work: Path, plan: Plan) -> dict[str, Any]:
    """Single-variant AF against the number of sites asked, interleaved with both floors at as many echo servers."""
    rows: dict[str, Any] = {}
    with fed.client() as client:
        for k in plan.sites:
            g = federated(fed, client, AF_1, k, plan.epsilon)
            with floors(work / f"floor-{k}", k, (ONE_VARIANT, "asyncio"), (ONE_VARIANT, "futures")) as (fa, ff):
                _warm(g, fa.call, ff.call)
                gl, al, fl = interleaved([g, fa.call, ff.call], plan.n_sites)
            rows[str(k)] = {"genogate": _ms(gl), "floor_asyncio": _ms(al), "floor_futures": _ms(fl)}
    return {
        "rows": rows,
        "increment_ms": {who: _slope(rows, who) for who in ("genogate", "floor_asyncio", "floor_futures")},
    }


def _slope(rows: dict[str, Any], who: str) -> float | None:
    """Least-squares ms of p50 per extra site over the scan (None with fewer than two site counts)."""
    xs = [int(k) for k in rows]
    if len(xs) < 2:
        return None
    ys = [rows[k][who]["p50_ms"] for k in rows]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return float(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs))


def measure_throughput(fed: Federation, work: Path, plan: Plan) -> dict[str, Any]:
    """Completed queries/s with ``plan.threads`` client threads at ``plan.case_sites`` sites, alternating genogate
    and the asyncio floor twice (A B A B) and taking the mean of each."""
    out: dict[str, Any] = {}
    k = plan.case_sites
    with fed.client() as client, floors(work / "floor-throughput", k, (ONE_VARIANT, "asyncio")) as (fa,):
        g = federated(fed, client, AF_1, k, plan.epsilon)
        for t in plan.threads:
            got: dict[str, list[float]] = {"genogate": [], "floor_asyncio": []}
            for _ in range(2):
                got["genogate"].append(throughput(g, t, plan.throughput_s))
                got["floor_asyncio"].append(throughput(fa.call, t, plan.throughput_s))
            out[str(t)] = {who: statistics.fmean(v) for who, v in got.items()}
    return out


def _cpu(pids: dict[str, list[int]]) -> dict[str, list[float]]:
    return {who: [cpu_seconds(p) for p in ps] for who, ps in pids.items()}


def cpu_per_query(fed: Federation, work: Path, plan: Plan) -> dict[str, Any]:
    """CPU ms per single-variant AF query per process at ``plan.case_sites`` sites (deltas of utime+stime over
    ``plan.cpu_queries`` sequential queries), and the same for the asyncio floor's calls."""
    k = plan.case_sites
    me = os.getpid()
    result: dict[str, Any] = {}
    with fed.client() as client:
        g = federated(fed, client, AF_1, k, plan.epsilon)
        _warm(g)
        pids = {
            "coordinator": [fed.coordinator.popen.pid],
            "nodes": [p.popen.pid for p in fed.nodes[:k]],
            "client": [me],
        }
        result["genogate"] = _cpu_run(g, pids, plan.cpu_queries)
    with floors(work / "floor-cpu", k, (ONE_VARIANT, "asyncio")) as (fa,):
        _warm(fa.call)
        fp = fa.pids()
        result["floor_asyncio"] = _cpu_run(
            fa.call, {"relay": fp["relay"], "echo": fp["echo"], "client": [me]}, plan.cpu_queries
        )
    return result


def _cpu_run(call: Callable[[], None], pids: dict[str, list[int]], n: int) -> dict[str, Any]:
    before = _cpu(pids)
    for _ in range(n):
        call()
    after = _cpu(pids)
    per = {who: [(a - b) * 1e3 / n for a, b in zip(after[who], before[who], strict=True)] for who in pids}
    return {"per_process_ms": per, "total_ms": sum(sum(v) for v in per.values())}


def _logical_bytes(db: Path) -> int:
    """The size of an SQLite database as its readers see it (WAL frames included), read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()


def _audit_bytes(fed: Federation) -> dict[str, int]:
    return {
        COORD_AUDIT: _logical_bytes(fed.root / "coord" / "audit.sqlite"),
        NODE_LEDGER: _logical_bytes(fed.root / fed.names[0] / "ledger.sqlite"),
    }


def cli_startup(fed: Federation, plan: Plan) -> dict[str, Any]:
    """``genogate query allele-frequency ...`` (a real query through the federation) and ``genogate --help``,
    each against ``python -c pass`` run alternately with it (``bench.startup.against_python``)."""
    from bench.startup import Case, against_python

    env = {**os.environ, "GENOGATE_PROFILE": str(fed.profile)}
    v = fed.variants[0]
    query = ["genogate", "query", "allele-frequency", "--study", fed.study.study_id, "--epsilon", str(plan.epsilon)]
    query += ["--variant", f"{v.chrom}-{v.pos}-{v.ref}-{v.alt}", "--sites", ",".join(fed.names[: plan.case_sites])]
    cases = [Case("genogate query allele-frequency", tuple(query)), Case("genogate --help", ("genogate", "--help"))]
    got = against_python(cases, [Path(sys.executable).parent], plan.cli_repeats, env=env)
    out: dict[str, Any] = {}
    for (_, name), r in got.items():
        out[name] = {
            "ms": r.wall_s * 1e3,
            "python_ms": r.wall_s * 1e3 / r.wall_ratio,
            "ratio": r.wall_ratio,
            "cpu_ms": r.cpu_s * 1e3,
            "cpu_ratio": r.cpu_ratio,
        }
    return out


def profile(work: Path, store: Path, plan: Plan) -> dict[str, Any]:
    """A separate federation of ``plan.case_sites`` nodes whose coordinator and first node run under
    ``bench.profiled``, loaded with 8 client threads of single-variant AF for ``plan.profile_s``; the top functions
    of each (self and inclusive % of the sampled CPU time)."""
    from bench.profiled import summarize

    outs = {"coordinator": work / "profile-coordinator.json", "node": work / "profile-node.json"}
    for p in outs.values():
        p.unlink(missing_ok=True)
    fed = start(work, store, plan.case_sites, profile=outs, tag="fed-profiled")
    profiled = {"coordinator": fed.coordinator.popen, "node": fed.nodes[0].popen}
    try:
        with fed.client() as client:
            g = federated(fed, client, AF_1, plan.case_sites, plan.epsilon)
            _warm(g)
            for proc in profiled.values():
                proc.send_signal(signal.SIGUSR2)  # forget start-up and warm-up: profile the load alone
            qps = throughput(g, 8, plan.profile_s)
            for who, proc in profiled.items():
                outs[who].unlink(missing_ok=True)
                proc.send_signal(signal.SIGUSR1)  # write the profile now, before shutdown is sampled too
        for who in profiled:
            _wait_for(outs[who])
            outs[who].replace(outs[who].with_suffix(".load.json"))
    finally:
        fed.stop()
    return {"qps": qps, "top": {who: summarize(p.with_suffix(".load.json"), top=15) for who, p in outs.items()}}


def _wait_for(path: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the profiler wrote no {path} within {timeout_s:g} s")
        time.sleep(0.05)


def _unless_missing(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``measure(*args)``, or which module it lacks (``bench.startup``, ``bench.profiled`` come from other
    branches of issue 16): the section then says "not measured" and why, instead of failing the whole run."""
    try:
        return measure(*args)
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench.startup", "bench.profiled"):
            raise
        return {"missing": exc.name}


# The run -------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    plan: dict[str, Any]
    store: str
    cases: dict[str, Any] = field(default_factory=dict)
    sites: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    cli: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(work: Path, plan: Plan, *, tell: Callable[[str], None] = print) -> Results:
    t0 = time.monotonic()

    def say(text: str) -> None:
        tell(f"[{time.monotonic() - t0:5.0f} s] {text}")

    work.mkdir(parents=True, exist_ok=True)
    say(f"federation: store {plan.samples:,} x {plan.variants:,} ...")
    store = store_for(work, plan.samples, plan.variants, plan.seed)
    res = Results(asdict(plan), str(store))
    most = max(*plan.sites, plan.case_sites)
    say(f"federation: starting a coordinator and {most} nodes (one shared read-only store) ...")
    fed = start(work, store, most)
    try:
        say(f"federation: four cases at {plan.case_sites} sites, interleaved with the floors ...")
        res.cases = measure_cases(fed, work, plan)
        res.audit = res.cases.pop("audit")
        say(f"federation: latency against {', '.join(map(str, plan.sites))} sites ...")
        res.sites = measure_sites(fed, work, plan)
        say(f"federation: throughput with {', '.join(map(str, plan.threads))} client threads ...")
        res.throughput = measure_throughput(fed, work, plan)
        say("federation: CPU per query per process ...")
        res.cpu = cpu_per_query(fed, work, plan)
        say("federation: CLI start-up against python -c pass ...")
        res.cli = _unless_missing(cli_startup, fed, plan)
    finally:
        fed.stop()
    say("federation: profile of the coordinator and one node under load ...")
    res.profile = _unless_missing(profile, work, store, plan)
    res.seconds = time.monotonic() - t0
    return res
