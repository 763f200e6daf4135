"""Configuration sections and checks that the node and the coordinator share (their servers, mutual TLS
and logging), declared once so both document and validate them alike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genogate import config

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
"""A node's or coordinator's name (also a directory and certificate name): 1-64 letters, digits, ``_ . -``."""


def check_name(name: str) -> str:
    """A name as ``NAME_RE``, and neither ``.`` nor ``..``."""
    if not NAME_RE.match(name) or name in (".", ".."):
        raise ValueError("a node name is 1-64 letters, digits, '_', '.' or '-'")
    return name


def check_listen(address: str) -> str:
    """``HOST:PORT`` with an IPv6 host in brackets (``[::]:50051``); port 0 picks a free one."""
    host, sep, port = address.rpartition(":")
    ipv6_ok = not (":" in host and not (host.startswith("[") and host.endswith("]")))
    if not sep or not host or not ipv6_ok or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:50051 or [::]:50051, got {address!r}")
    return address


def check_optional_listen(address: str) -> str:
    """Empty (off) or ``HOST:PORT`` as ``check_listen``."""
    return check_listen(address) if address else address


def at_least(minimum: int) -> config.Check:
    def check(value: int) -> int:
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return check


def between(low: int, high: int) -> config.Check:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return check


def non_negative_float(value: float) -> float:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


@dataclass(frozen=True)
class ServerSettings:
    listen: str = field(
        default="127.0.0.1:0",
        metadata={
            "help": "Address the gRPC server listens on, HOST:PORT (IPv6 in brackets, e.g. [::]:50051). Port 0 "
            "picks a free port and writes it to ready_file; give a fixed port for a server others connect to.",
            "check": check_listen,
        },
    )
    ready_file: Path = field(
        default=Path("ready.json"),
        metadata={
            "help": "File the server writes its bound address to once it is serving (for supervisors and tests)."
        },
    )
    max_workers: int = field(
        default=8,
        metadata={"help": "Threads that handle RPCs concurrently.", "check": at_least(1)},
    )
    max_message_mb: int = field(
        default=64,
        metadata={
            "help": "Largest gRPC message accepted or sent, in MiB (results over many variants exceed gRPC's "
            "4 MiB default).",
            "check": between(1, 2047),
        },
    )
    metrics_listen: str = field(
        default="",
        metadata={
            "help": "Address of the Prometheus metrics endpoint (HTTP, path /metrics), HOST:PORT; port 0 picks a "
            "free port (written to ready_file as metrics_address). Empty: no endpoint. It serves counts of queries "
            "and outcomes, epsilon charged and latencies, never data values; keep it on a private network.",
            "check": check_optional_listen,
        },
    )
    grace_seconds: float = field(
        default=5.0,
        metadata={
            "help": "On SIGTERM, seconds to let running calls finish before the server stops.",
            "check": non_negative_float,
        },
    )


@dataclass(frozen=True)
class TlsSettings:
    ca_certs: Path = field(
        metadata={
            "help": "PEM bundle of the certificate authorities whose CLIENT certificates this server accepts "
            "(mutual TLS); callers without such a certificate are refused."
        }
    )
    cert: Path = field(metadata={"help": "This server's certificate (PEM), signed for its name."})
    key: Path = field(metadata={"help": "The private key (PEM) of the server certificate; keep it mode 0600."})


@dataclass(frozen=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"] = field(
        default="info", metadata={"help": "Least severe log level written: debug, info, warning or error."}
    )
    format: Literal["json", "text"] = field(
        default="json", metadata={"help": "Log lines as JSON objects (for collectors) or as plain text."}
    )
