"""``genogate-demo``: a whole federation on this machine, set up and questioned the way people would.

1. create a development CA, the coordinator (operator ``operator``, committee ``member-1``/``member-2``,
   two approvals per study) and three nodes, each with its own keys and a CA-signed certificate;
2. generate one synthetic cohort (with a planted case/control association) and split its participants into
   the three institutions, each loaded into its node's store;
3. start the coordinator and the nodes as separate processes on loopback (mTLS, ports chosen by the OS);
4. as the operator: register the nodes (their certificates are pinned) and the researcher ``alice``;
5. as alice: propose a study; as the two committee members: approve it, which issues the signed grant;
6. as alice: ask a cohort count, the allele frequencies of the planted variants and a case/control table
   (the ``genogate query`` commands, printed with their output), then show the budget left at each site;
7. stop every process (SIGTERM; each finishes in-flight work) -- or, with ``--up``, leave the federation
   running, print the commands to paste (with a ready-made researcher profile) and stop on Ctrl-C.

Everything lives under one directory; nothing outside it is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from genogate import cliutil

if TYPE_CHECKING:  # imported where used: 'genogate-demo --help' starts nothing
    from genogate.launch import Proc
    from genogate.rpc import ClientTLS

PROG = "genogate-demo"
SITES = ("hospital-a", "biobank-b", "clinic-c")
MEMBERS = ("member-1", "member-2")
RESEARCHER = "alice"
OPERATOR = "operator"
METRICS = {"server.metrics_listen": "127.0.0.1:0"}  # Prometheus endpoints, on ports the OS picks


@dataclass
class Federation:
    """The running demo: its directory, processes and the profiles of the people in it."""

    root: Path
    coordinator: Proc | None = None
    nodes: dict[str, Proc] = field(default_factory=dict)
    study_id: str = ""

    def profile(self, who: str) -> Path:
        return self.root / "people" / f"{who}.toml"

    def stop(self) -> None:
        for proc in [*self.nodes.values(), *([self.coordinator] if self.coordinator else [])]:
            proc.stop()
        self.nodes.clear()
        self.coordinator = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--dir", type=Path, default=Path("demo"), help="working directory, replaced if it exists (default: demo)"
    )
    where.add_argument(
        "--up",
        type=Path,
        metavar="DIR",
        help="set up in DIR (replaced if it exists), run the demo queries, then keep the federation running and "
        "print the commands to ask your own questions; Ctrl-C stops it",
    )
    p.add_argument("--samples", type=int, default=6000, help="participants across the three sites (default: 6000)")
    p.add_argument("--variants", type=int, default=10000, help="variant sites (default: 10000)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default: 7)")
    cliutil.add_json(
        p, "narrate on stderr instead and print one JSON object at the end (status done, the directory, the study)"
    )


DESCRIPTION = """\
Run a whole federation on this machine and question it the way people would:

  1. a development CA, the coordinator and three nodes, each with its own keys and certificate;
  2. one synthetic cohort (with a planted case/control association) split across the three nodes;
  3. the coordinator and the nodes started as separate processes on loopback (mTLS);
  4. the operator registers the nodes and the researcher alice;
  5. alice proposes a study; two committee members approve it (the signed grant);
  6. alice asks a cohort count, allele frequencies and a case/control table, and shows the budget left;
  7. every process stopped -- or, with --up, the federation left running with the commands to paste.

Everything lives under one directory; nothing outside it is touched."""


def run(args: argparse.Namespace) -> int:
    """The demo; with ``--json`` its narration goes to stderr and stdout gets one JSON summary."""
    facts: dict[str, object] = {}
    if not getattr(args, "json", False):
        return _run(args, facts)
    t0 = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):
        code = _run(args, facts)
    root: Path = (args.up or args.dir).resolve()
    cliutil.print_json(
        {"status": "done", "dir": str(root), "sites": list(SITES), **facts, "seconds": round(time.monotonic() - t0, 1)}
    )
    return code


def _run(args: argparse.Namespace, facts: dict[str, object]) -> int:
    root: Path = (args.up or args.dir).resolve()
    t0 = time.monotonic()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    fed = Federation(root)
    try:
        _setup(fed)
        truth = _cohorts(root, args.samples, args.variants, args.seed)
        _start(fed)
        _register(fed)
        _study(fed)
        facts["study_id"] = fed.study_id
        _questions(fed, truth)
        print(f"\nThe demo took {time.monotonic() - t0:.0f} s. Everything is in {root}.")
        if args.up:
            _stay_up(fed, truth)
    finally:
        fed.stop()
    print("Stopped the coordinator and the three nodes.")
    return 0


# Steps ----------------------------------------------------------------------------------------------------


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _cohorts(root: Path, samples: int, variants: int, seed: int) -> dict[str, object]:
    from node.ingest.synth_spec import SynthSpec
    from node.synth_cli import synth_store

    _step(f"2. A synthetic cohort: {samples:,} participants x {variants:,} variant sites, split into three sites")
    spec = SynthSpec(samples=samples, variants=variants, seed=seed)
    for i, site in enumerate(SITES):
        t = time.monotonic()
        paths, summary = synth_store(
            root / site / "store.duckdb", root / "cohort" / site, spec, (i, len(SITES)), progress=True
        )
        print(
            f"   {site:<11} {summary.samples:>6,} participants, {summary.alleles:,} alleles -> "
            f"{site}/store.duckdb ({time.monotonic() - t:.1f} s)"
        )
    truth: dict[str, object] = json.loads(paths["truth"].read_text())
    print(f"   planted: {len(truth['planted_variants'])} variants more common in {truth['case_phenotype']} cases")  # type: ignore[arg-type]
    return truth


def _setup(fed: Federation) -> None:
    from coordinator.admin import add_member, init_coordinator
    from genogate.config import set_values
    from genogate.signing import Signer
    from genogate.tls import new_identity_key, write_secret
    from node.admin import dev_ca_client, dev_ca_init, dev_ca_issue, init_node

    root = fed.root
    _step("1. A development CA, a coordinator, three nodes and four people, each with their own keys")
    with _quiet():
        dev_ca_init(root / "ca")
        coord = root / "coordinator"
        init_coordinator(coord, "coordinator", operators=(OPERATOR,))
        # The coordinator serves researchers and also calls the nodes: its certificate is for both.
        dev_ca_issue(
            root / "ca", coord / "tls/coordinator.csr", coord / "tls/coordinator.pem", server=True, client=True
        )
        shutil.copy(root / "ca/ca.pem", coord / "tls/ca.pem")
        people = root / "people"
        for who in (OPERATOR, RESEARCHER, *MEMBERS):
            dev_ca_client(root / "ca", who, people)
            if who != OPERATOR:
                write_secret(people / f"{who}.ed25519", new_identity_key())
        for member in MEMBERS:
            public = Signer.from_pem_file(people / f"{member}.ed25519").public_raw
            add_member(coord / "coordinator.toml", member, public.hex(), env={})
        for site in SITES:
            d = root / site
            init_node(d, site, "127.0.0.1:0")  # ports the OS picks: three nodes on one machine
            # Server for the coordinator; client when it fetches the committee's revocation list.
            dev_ca_issue(root / "ca", d / "tls/node.csr", d / "tls/node.pem", server=True, client=True)
            shutil.copy(root / "ca/ca.pem", d / "tls/ca.pem")
    set_values(coord / "coordinator.toml", METRICS)
    print(f"   CA            {root / 'ca/ca.pem'}")
    print(f"   coordinator   {coord / 'coordinator.toml'} (committee: {', '.join(MEMBERS)}; 2 approvals per study)")
    for site in SITES:
        print(f"   node          {root / site / 'node.toml'}")
    print(f"   profiles      {people}/{{{','.join((OPERATOR, RESEARCHER, *MEMBERS))}}}.toml (once it runs)")


def _write_profile(fed: Federation, who: str, coordinator: str) -> None:
    signing = f'signing_key = "{who}.ed25519"\n' if who != OPERATOR else ""
    fed.profile(who).write_text(
        f'[profile]\nname = "{who}"\ncoordinator = "{coordinator}"\nca_cert = "../ca/ca.pem"\n'
        f'cert = "{who}.pem"\nkey = "{who}.key"\n{signing}'
    )


def _operator_tls(fed: Federation) -> ClientTLS:
    from genogate.rpc import ClientTLS

    people = fed.root / "people"
    return ClientTLS.from_files(fed.root / "ca/ca.pem", people / f"{OPERATOR}.key", people / f"{OPERATOR}.pem")


def _start(fed: Federation) -> None:
    from genogate.config import set_values
    from genogate.launch import Proc, start_server
    from genogate.signing import Signer

    _step("3. Starting the coordinator and the three nodes (separate processes, loopback, mutual TLS)")
    tls = _operator_tls(fed)
    coord = fed.root / "coordinator"
    fed.coordinator = start_server("coordinator.cli", coord / "coordinator.toml", tls, log=coord / "server.log")
    print(f"   coordinator   {fed.coordinator.address}  (pid {fed.coordinator.popen.pid})")
    for who in (OPERATOR, RESEARCHER, *MEMBERS):
        _write_profile(fed, who, fed.coordinator.address)
    # Each node trusts the committee's grants and fetches revocations from the coordinator just started.
    committee = Signer.from_pem_file(coord / "keys/committee.key").public_raw.hex()
    # The coordinator's certificate name: the only caller a node answers under grants without the breakdown.
    node_settings = {
        "grants.committee_keys": [committee],
        "grants.coordinator": fed.coordinator.address,
        "grants.coordinator_common_name": "coordinator",
        **METRICS,
    }
    for site in SITES:
        set_values(fed.root / site / "node.toml", node_settings)
    starting: dict[str, Proc | BaseException] = {}

    def start(site: str) -> None:
        config = fed.root / site / "node.toml"
        try:
            starting[site] = start_server("node.cli", config, tls, log=config.parent / "server.log")
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after every start has finished
            starting[site] = exc

    threads = [threading.Thread(target=start, args=(site,)) for site in SITES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for site in SITES:
        got = starting[site]
        if isinstance(got, Proc):
            fed.nodes[site] = got
    for site in SITES:
        got = starting[site]
        if isinstance(got, BaseException):
            raise got
        print(f"   {site:<13} {got.address}  (pid {got.popen.pid})")


def _register(fed: Federation) -> None:
    from genogate.coordclient import CoordinatorClient
    from genogate.signing import Signer
    from genogate.studies import NodeInfo
    from genogate.tls import fingerprint_sha256

    _step("4. The operator registers the nodes (pinning their certificates) and the researcher")
    assert fed.coordinator is not None
    with CoordinatorClient(fed.coordinator.address, _operator_tls(fed)) as c:
        for site in SITES:
            cert = (fed.root / site / "tls/node.pem").read_bytes()
            c.register_node(  # no build declared: the coordinator reads it from the node
                NodeInfo(
                    name=site,
                    endpoint=fed.nodes[site].address,
                    cert_sha256=fingerprint_sha256(cert),
                    genome_build="",
                )
            )
            print(f"   $ genogate nodes register --name {site} --endpoint {fed.nodes[site].address} ...")
        alice = Signer.from_pem_file(fed.root / "people" / f"{RESEARCHER}.ed25519")
        c.register_researcher(RESEARCHER, "Demo University", alice.public_raw)
        print(f"   $ genogate researchers register --name {RESEARCHER} --public-key {alice.public_raw.hex()[:16]}...")


def _study(fed: Federation) -> None:
    _step("5. alice proposes a study; two committee members approve it, which issues the signed grant")
    out = _genogate(
        fed,
        RESEARCHER,
        ["study", "propose", "--title", "Epilepsy variants across three sites", "--purpose", "HMB"]
        + ["--kinds", "cohort_count,allele_frequency,genotype_counts,case_control,carrier_count"]
        + ["--sites", ",".join(SITES), "--epsilon-total", "4", "--epsilon-cap", "1", "--days", "30"]
        + ["--per-site-breakdown", "--json"],
        show=False,
    )
    fed.study_id = json.loads(out)["study"]["study_id"]
    print(f"   study {fed.study_id} proposed (state: proposed)")
    for member in MEMBERS:
        _genogate(
            fed,
            member,
            ["study", "approve", fed.study_id, "--comment", "purpose and budget fit"],
            keep=("state:", "approvals:", "grant "),
        )


def _questions(fed: Federation, truth: dict[str, object]) -> None:
    case = str(truth["case_phenotype"])
    variants = [str(v) for v in truth["planted_variants"]]  # type: ignore[attr-defined]
    study = ["--study", fed.study_id]
    _step("6. alice asks; each site adds its own noise and charges its own ledger")
    _genogate(fed, RESEARCHER, ["query", "cohort-count", *study, "--where", f"phenotype={case}", "--epsilon", "0.5"])
    af = ["query", "allele-frequency", *study, "--epsilon", "0.5"]
    for v in variants:
        af += ["--variant", v]
    _genogate(fed, RESEARCHER, af)
    cc = ["query", "case-control", *study, "--cases", f"phenotype={case}", "--controls", f"not phenotype={case}"]
    cc += ["--epsilon", "1"]
    for v in variants[:3]:
        cc += ["--variant", v]
    _genogate(fed, RESEARCHER, cc)
    _genogate(fed, RESEARCHER, ["budget", *study])


def _stay_up(fed: Federation, truth: dict[str, object]) -> None:
    profile = fed.profile(RESEARCHER)
    case = str(truth["case_phenotype"])
    v = str(truth["planted_variants"][0])  # type: ignore[index]
    lines = [
        "",
        "The federation is running. In another terminal:",
        "",
        f"  export GENOGATE_PROFILE={shlex.quote(str(profile))}",
        f"  export STUDY={fed.study_id}          # the README's researcher examples use $STUDY",
        f"  genogate query cohort-count --study \"$STUDY\" --where 'sex=F and phenotype={case}' --epsilon 0.25",
        f"  genogate query allele-frequency --study \"$STUDY\" --variant {v} --where 'ancestry=EUR' --epsilon 0.25",
        f'  genogate query genotype-counts --study "$STUDY" --variant {v} --epsilon 0.25',
        '  genogate budget --study "$STUDY"',
        "  genogate query cohort-count --help        # the filter syntax",
        "",
        "(genogate is .venv/bin/genogate in a checkout.) The operator's view:",
        f"  genogate-coordinator status --config {fed.root / 'coordinator/coordinator.toml'}",
        f"  genogate-node status --config {fed.root / SITES[0] / 'node.toml'}",
        f"  genogate-node audit verify --config {fed.root / SITES[0] / 'node.toml'}",
        "",
        "Press Ctrl-C to stop the federation.",
    ]
    print("\n".join(lines), flush=True)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            for name, proc in [*fed.nodes.items(), ("coordinator", fed.coordinator)]:
                if proc is not None and proc.popen.poll() is not None:
                    print(f"{name} exited ({proc.popen.returncode}); see {proc.log}", file=sys.stderr)
                    stop.set()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("\nStopping...")


# Helpers --------------------------------------------------------------------------------------------------


def _genogate(fed: Federation, who: str, argv: list[str], *, show: bool = True, keep: tuple[str, ...] = ()) -> str:
    """Run one ``genogate`` command as ``who`` (in this process, the same code as the command line); print
    the command and its output (only the lines starting with one of ``keep``, if given) when ``show``;
    return the output. A failing command stops the demo."""
    from genogate.cli import main

    full = ["--profile", str(fed.profile(who)), *argv]
    if show:
        print(f"\n   [{who}] $ genogate {' '.join(shlex.quote(a) for a in argv)}")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(full)
    out = buf.getvalue()
    if show:
        lines = [line for line in out.rstrip("\n").splitlines() if not keep or line.startswith(keep)]
        print("\n".join(f"   {line}" if line else "" for line in lines), flush=True)
    if code != 0:
        raise SystemExit(f"genogate-demo: 'genogate {' '.join(argv)}' failed with exit code {code}")
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Setup helpers print their own next-step notes for operators; the demo says what it did itself."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The ``genogate-demo`` command. Expected problems print one line ``genogate-demo: error: ...`` and exit
    with the error's code (as ``genogate`` does); a stack trace means a bug."""
    args = parser(prog).parse_args(argv)
    return cliutil.run(prog, lambda: run(args), error_exit=1)


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The ``genogate-demo`` argument parser."""
    p = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    return p
