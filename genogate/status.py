"""``status`` of a node or coordinator, as its operator runs it on the host: is the server up, are its files
readable and intact, what has it done. Reads the server's files read-only (the ready file, the store, the
ledger or state, the audit log, and its signing key only to derive the public key the audit log is checked
against); the coordinator's status also probes its registered nodes over mTLS with its own certificate, as
fan-out does. Never prints data values or key material.

Each check gives a ``Section`` (name, ok, one summary line, detail lines, JSON-ready facts); the command
prints them as aligned text or ``--json`` and exits 0 when every section is ok, 1 otherwise.

``add_commands`` is called by every ``--help`` of the two server command lines: what only the checks use
(gRPC, the audit log, keys) is imported by the checks.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genogate.errors import GenogateError, LocalError
from genogate.words import plural

if TYPE_CHECKING:
    from genogate.audit import Row
    from genogate.settings import ServerSettings, TlsSettings


@dataclass
class Section:
    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def guarded(name: str, check: Callable[[], Section]) -> Section:
    """Run one check; an unreadable or broken file becomes a failed section naming it, not a traceback."""
    try:
        return check()
    except (LocalError, GenogateError, OSError) as exc:
        return Section(name, False, str(exc), facts={"error": str(exc)})


def server(ready_file: Path) -> Section:
    """From the ready file the server writes once serving (and removes on a clean stop): its process is
    alive and its port accepts connections."""
    if not ready_file.is_file():
        return Section("server", False, f"not running (no ready file {ready_file})", facts={"running": False})
    try:
        ready = json.loads(ready_file.read_text())
        address, pid = str(ready["address"]), int(ready["pid"])
    except (ValueError, KeyError, TypeError):
        return Section("server", False, f"{ready_file}: unreadable ready file", facts={"running": False})
    facts: dict[str, Any] = {"address": address, "pid": pid, "metrics_address": ready.get("metrics_address")}
    if not _alive(pid):
        return Section(
            "server",
            False,
            f"not running (process {pid} named in {ready_file} is gone)",
            facts={**facts, "running": False},
        )
    listening = _accepts(address)
    extra = f", metrics at http://{ready['metrics_address']}/metrics" if ready.get("metrics_address") else ""
    summary = f"serving at {address} (pid {pid}){extra}" if listening else f"process {pid} alive, {address} refuses"
    return Section("server", listening, summary, facts={**facts, "running": listening})


def health(
    ready_file: Path, listen: str, tls: TlsSettings, server_name: str, *, timeout_s: float = 3.0
) -> tuple[bool, str]:
    """The probe containers and supervisors run (``health`` command): ask the server's gRPC health service,
    over mutual TLS with the server's own certificate (issued for client use too), whether it is SERVING.
    The address comes from the ready file, else from ``listen`` (a fixed port); a wildcard host is probed
    on loopback. Returns (serving, one line saying what was found)."""
    address = listen
    try:
        address = str(json.loads(ready_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        if listen.endswith(":0"):
            return False, f"not serving: no ready file {ready_file} and no fixed port in [server] listen"
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):  # noqa: S104 - a wildcard listen address, probed on loopback
        host = "127.0.0.1"
    target = f"{host}:{port}"
    import grpc

    from genogate.launch import check_health
    from genogate.rpc import ClientTLS, transport_message

    client = ClientTLS.from_settings(tls)
    try:
        state = check_health(target, client, server_name=server_name, timeout_s=timeout_s)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            peer = client.peer(target, "server", server_name)
            return False, f"not serving: {transport_message(exc.details() or '', peer)}"
        return False, f"not serving: {target}: {exc.code().name.lower()} ({exc.details()})"
    if state != "SERVING":
        return False, f"not serving: {target} reports {state}"
    return True, f"serving: {target}"


def health_command(
    server: ServerSettings, tls: TlsSettings, name: str, timeout_s: float, *, as_json: bool = False
) -> int:
    """``health`` of either service: print what the probe found (``--json``: ``status`` "serving" or
    "not_serving" and the line); exit status 0 if serving, else 1."""
    ok, line = health(server.ready_file, server.listen, tls, name, timeout_s=timeout_s)
    if as_json:
        print(json.dumps({"status": "serving" if ok else "not_serving", "message": line}, indent=2))
    else:
        print(line)
    return 0 if ok else 1


def audit_section(log: Path, signing_key: Path) -> Section:
    """The audit log in ``log`` checked against the public half of the server's ``signing_key``."""
    from genogate import audit
    from genogate.signing import Signer

    return guarded(
        "audit", lambda: audit_log(audit.read_file(log), audit.keys(Signer.from_pem_file(signing_key).public_raw))
    )


def audit_log(entries: Sequence[Row], public_keys: Mapping[str, bytes]) -> Section:
    from genogate import audit

    report = audit.check(entries, public_keys)
    facts = {"entries": report.entries, "head_seq": report.head_seq, "problems": len(report.problems)}
    if report.problems:
        first = report.problems[0]
        return Section(
            "audit",
            False,
            f"BROKEN: {plural(len(report.problems), 'problem')} in {plural(report.entries, 'entry')}",
            [str(first)],
            facts,
        )
    head = f", head #{report.head_seq} {report.head_sha256[:16]}" if report.entries else ""
    return Section(
        "audit", True, f"{plural(report.entries, 'entry')}, hash chain and signatures verify{head}", facts=facts
    )


def emit(title: str, sections: Sequence[Section], *, as_json: bool) -> int:
    ok = all(s.ok for s in sections)
    if as_json:
        doc = {"name": title, "ok": ok, **{s.name: {"ok": s.ok, "summary": s.summary, **s.facts} for s in sections}}
        print(json.dumps(doc, indent=1, default=str))
    else:
        print(title)
        width = max(len(s.name) for s in sections) + 2
        for s in sections:
            mark = "" if s.ok else "  [problem]"
            print(f"  {s.name:<{width}}{s.summary}{mark}")
            for line in s.details:
                print(f"  {'':<{width}}  {line}")
    return 0 if ok else 1


def size(path: Path) -> str:
    n = float(path.stat().st_size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False


def add_commands(sub: Any, service: str, config_help: str, status_description: str) -> None:
    """The ``status`` and ``health`` subcommands of ``service`` ("node" or "coordinator")."""
    st = sub.add_parser(
        "status",
        help="is the server up; its files and audit log at a glance",
        description=status_description + " Exit status 0 when everything is fine, 1 when any part is not.",
    )
    st.add_argument("--config", type=Path, required=True, help=config_help)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    he = sub.add_parser(
        "health",
        help="probe the running server's gRPC health service (for container health checks)",
        description=f"Ask the {service}'s gRPC health service, over mutual TLS with the {service}'s own "
        "certificate (issue it for client use too), whether it is serving. Exit status 0 if it is, 1 if not.",
    )
    he.add_argument("--config", type=Path, required=True, help=config_help)
    he.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="deadline (default: 3)")
    he.add_argument("--json", action="store_true", help="print the result as JSON (status serving or not_serving)")
