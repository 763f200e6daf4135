"""The ``genogate`` command line, profiles, the table formatter and the coordinator client's signing.

The client side is exercised against a small in-process fake coordinator (mutual TLS, signature checks);
the end-to-end tests against the real coordinator live with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import stat
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import cli, table, tls
from genogate.convert import review_body_of, study_from_pb
from genogate.coordclient import CoordinatorClient, sign_proposal, sign_review
from genogate.errors import ConfigError, NotFound, Unauthenticated, UsageError
from genogate.profile import load_profile, profile_path, resolve
from genogate.query import Kind
from genogate.rpc import boundary
from genogate.signing import Signer, key_id, verify
from genogate.studies import ReviewBody, ReviewDecision, StudyProposal, StudyState
from genogate.wire.v1 import common_pb2 as pb
from genogate.wire.v1 import coordinator_pb2 as cpb
from genogate.wire.v1 import coordinator_pb2_grpc

# Profiles -------------------------------------------------------------------------------------------------


def _write_profile(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


GOOD = """\
[profile]
name = "alice"
coordinator = "127.0.0.1:7443"
ca_cert = "tls/ca.pem"
cert = "tls/alice.pem"
key = "/abs/alice.key"
signing_key = "alice.ed25519"
"""


def test_profile_paths_resolve_against_the_profile_directory(tmp_path: Path) -> None:
    path = _write_profile(tmp_path / "conf" / "p.toml", GOOD)
    profile = load_profile(path, env={})
    s = profile.settings
    assert s.coordinator == "127.0.0.1:7443" and s.name == "alice"
    assert s.ca_cert == tmp_path / "conf" / "tls" / "ca.pem"
    assert s.cert == tmp_path / "conf" / "tls" / "alice.pem"
    assert s.key == Path("/abs/alice.key")
    assert s.signing_key == tmp_path / "conf" / "alice.ed25519"


def test_profile_selected_by_flag_then_environment(tmp_path: Path) -> None:
    flag = _write_profile(tmp_path / "flag.toml", GOOD)
    env_file = _write_profile(tmp_path / "env.toml", GOOD.replace("127.0.0.1:7443", "coord.example:9000"))
    env = {"GENOGATE_PROFILE": str(env_file)}
    assert profile_path(flag, env) == flag
    assert profile_path(None, env) == env_file
    assert resolve(None, env).coordinator == "coord.example:9000"
    assert resolve(flag, env).coordinator == "127.0.0.1:7443"
    with pytest.raises(ConfigError, match="GENOGATE_PROFILE"):
        profile_path(None, {})


def test_profile_environment_overrides_and_ignores_other_genogate_variables(tmp_path: Path) -> None:
    path = _write_profile(tmp_path / "p.toml", GOOD)
    env = {
        "GENOGATE_PROFILE": str(path),
        "GENOGATE_PROFILE__COORDINATOR": "other.example:1234",
        "GENOGATE_NODE_SERVER__LISTEN": "0.0.0.0:1",  # a node's setting: not the profile's business
    }
    assert resolve(None, env).coordinator == "other.example:1234"


def test_profile_reports_every_problem_at_once(tmp_path: Path) -> None:
    path = _write_profile(
        tmp_path / "p.toml",
        '[profile]\ncoordinator = "no-port"\nca_cert = 3\ncertt = "x.pem"\nkey = "k.pem"\n[extra]\n',
    )
    with pytest.raises(ConfigError) as info:
        load_profile(path, env={"GENOGATE_PROFILE__NAEM": "x"})
    text = str(info.value)
    assert "HOST:PORT" in text  # bad coordinator
    assert "[profile] ca_cert: expected a path" in text
    assert "unknown key 'certt'" in text and "did you mean cert" in text
    assert "[profile] cert: required" in text
    assert "unknown section [extra]" in text
    assert "GENOGATE_PROFILE__NAEM" in text
    assert "6 problems" in text


def test_profile_files_are_read_only_when_needed(tmp_path: Path) -> None:
    profile = load_profile(_write_profile(tmp_path / "p.toml", GOOD.replace('signing_key = "alice.ed25519"\n', "")))
    with pytest.raises(ConfigError) as info:
        profile.client_tls()
    assert "ca_cert" in str(info.value) and "cert" in str(info.value) and "key" in str(info.value)
    with pytest.raises(ConfigError, match="signing_key is not set"):
        profile.signer()


def test_cli_without_a_profile_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GENOGATE_PROFILE", raising=False)
    assert cli.main(["nodes", "list"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("genogate: error: no profile") and err.count("\n") == 1


# keys new -------------------------------------------------------------------------------------------------


def test_keys_new_writes_0600_and_prints_the_key_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "me.ed25519"
    assert cli.main(["keys", "new", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(out.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert printed["public_key"] == raw.hex()
    assert printed["fingerprint"] == key_id(raw) == Signer.from_pem_file(out).key_id

    # Table output names the same fingerprint; an existing file is never overwritten.
    other = tmp_path / "other.ed25519"
    assert cli.main(["keys", "new", "--out", str(other)]) == 0
    text = capsys.readouterr().out
    assert f"fingerprint: {Signer.from_pem_file(other).key_id}" in text
    before = out.read_bytes()
    assert cli.main(["keys", "new", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


# Help and argument errors ---------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))


ALL_COMMANDS = [
    ("keys", "new"),
    ("study", "propose"),
    ("study", "preview"),
    ("study", "list"),
    ("study", "show"),
    ("study", "approve"),
    ("study", "reject"),
    ("study", "revoke"),
    ("nodes", "register"),
    ("nodes", "list"),
    ("nodes", "update"),
    ("nodes", "remove"),
    ("researchers", "register"),
    ("query", "cohort-count"),
    ("query", "allele-frequency"),
    ("query", "genotype-counts"),
    ("query", "case-control"),
    ("query", "carrier-count"),
]


def test_every_command_is_listed() -> None:
    leaves = {c for c in _commands(cli._parser()) if len(c) == 2}
    assert leaves == set(ALL_COMMANDS)


@pytest.mark.parametrize(
    "command", [(), ("keys",), ("study",), ("nodes",), ("researchers",), ("query",), ("budget",), *ALL_COMMANDS]
)
def test_help_of_every_command(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: genogate")
    if len(command) == 2:
        assert "--json" in out
        # keys new works offline: it lists no option that would do nothing there
        assert ("--profile" in out and "--timeout" in out) == (command != ("keys", "new"))


PROPOSAL_ARGS = [
    "--title",
    "T",
    "--purpose",
    "HMB",
    "--kinds",
    "cohort_count,allele_frequency",
    "--sites",
    "a,b",
    "--epsilon-total",
    "4",
    "--epsilon-cap",
    "0.5",
    "--days",
    "30",
]


def _with(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["study"],
        ["study", "frobnicate"],
        ["study", "propose", *_with(PROPOSAL_ARGS, "--kinds", "cohort_count,nonsense")],
        ["study", "propose", *_with(PROPOSAL_ARGS, "--epsilon-total", "-1")],
        ["study", "propose", *_with(PROPOSAL_ARGS, "--epsilon-cap", "nan")],
        ["study", "preview", *_with(PROPOSAL_ARGS, "--days", "0")],
        ["study", "preview", *_with(PROPOSAL_ARGS, "--sites", " , ")],
        ["study", "propose", *PROPOSAL_ARGS[2:]],  # no --title
        ["study", "list", "--state", "pending"],
        ["study", "show"],
        ["study", "approve"],
        ["nodes", "register", "--name", "a", "--endpoint", "no-port", "--cert", "x.pem"],
        ["nodes", "register", "--name", "a", "--endpoint", "h:1", "--cert", "x.pem", "--build", "hg19"],
        ["nodes", "register", "--name", "a", "--endpoint", "h:1"],  # no pin
        ["nodes", "register", "--name", "a", "--endpoint", "h:1", "--cert", "x.pem", "--ca", "ca.pem"],  # two pins
        ["nodes", "update", "--endpoint", "h:1"],  # no name
        ["nodes", "update", "a", "--endpoint", "no-port"],
        ["nodes", "update", "a", "--cert", "x.pem", "--ca", "ca.pem"],
        ["nodes", "remove"],
        ["researchers", "register", "--name", "a", "--affiliation", "b", "--public-key", "zz"],
        ["researchers", "register", "--name", "a", "--affiliation", "b", "--public-key", "ab" * 31],
        ["keys", "new"],
        ["--timeout", "0", "nodes", "list"],
    ],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: genogate" in capsys.readouterr().err


# Table formatter ------------------------------------------------------------------------------------------


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    text = table.table(("NAME", "COUNT", "EPS", "OK"), [("alpha", 5, 0.5, True), ("b", 12345, None, False)])
    lines = text.splitlines()
    assert lines == [
        "NAME   COUNT  EPS  OK",
        "alpha      5  0.5  yes",
        "b      12345    -  no",
    ]
    assert all(line == line.rstrip() for line in lines)
    with pytest.raises(ValueError):
        table.table(("A", "B"), [(1,)])


def test_kv_and_timestamps() -> None:
    assert table.kv([("a", 1), ("long key", "")]).splitlines() == ["a:        1", "long key: -"]
    assert table.when(0) == "-"
    assert table.when(86_400_000) == "1970-01-02 00:00:00Z"
    assert table.state_label(StudyState.APPROVED) == "approved"
    assert table.kinds_text([Kind.COHORT_COUNT, Kind.CARRIER_COUNT]) == "cohort_count,carrier_count"
    assert table.kinds_text([Kind.COHORT_COUNT, 0, 99]) == "cohort_count,unspecified,99"  # as the wire names them
    assert [table.decision_label(d) for d in (ReviewDecision.APPROVE, ReviewDecision.REVOKE, 0, 7)] == [
        "approve",
        "revoke",
        "unspecified",
        "7",
    ]


# Signing helpers ------------------------------------------------------------------------------------------


def _signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def _proposal(**terms: Any) -> StudyProposal:
    fields: dict[str, Any] = {
        "title": "T",
        "purpose": "",
        "kinds": (),
        "sites": (),
        "epsilon_total_per_site": 0.0,
        "epsilon_per_query_cap": 0.0,
        "duration_days": 0,
        "researcher_key_fingerprint": "",
    }
    return StudyProposal(**(fields | terms))


def test_sign_proposal_fills_and_checks_the_researcher_key() -> None:
    signer = _signer()
    signed = sign_proposal(_proposal(), signer)
    verify(signer.public_raw, "genogate.v1.StudyProposal", signed.payload, signed.researcher_signature)
    assert cpb.StudyProposal.FromString(signed.payload).researcher_key_fingerprint == signer.key_id
    assert signed.payload == cpb.StudyProposal(title="T", researcher_key_fingerprint=signer.key_id).SerializeToString(
        deterministic=True
    )
    with pytest.raises(UsageError, match="names researcher key"):
        sign_proposal(_proposal(researcher_key_fingerprint="00" * 32), signer)


def test_sign_review_covers_the_proposal_hash_and_refuses_a_mismatch() -> None:
    signer = _signer()
    payload = cpb.StudyProposal(title="T").SerializeToString()
    study = study_from_pb(
        cpb.Study(
            study_id="s1",
            signed_proposal=cpb.SignedProposal(payload=payload),
            proposal_sha256=hashlib.sha256(payload).digest(),
            state=cpb.STUDY_STATE_PROPOSED,
        )
    )
    review = sign_review(study, ReviewDecision.APPROVE, "ok", signer, now_ms=123)
    verify(signer.public_raw, "genogate.v1.ReviewBody", review.payload, review.reviewer_signature)
    body = cpb.ReviewBody.FromString(review.payload)
    assert (body.study_id, body.proposal_sha256, body.decision, body.comment, body.reviewed_unix_ms) == (
        "s1",
        hashlib.sha256(payload).digest(),
        cpb.REVIEW_DECISION_APPROVE,
        "ok",
        123,
    )
    assert review.reviewer_key_id == signer.key_id
    assert review_body_of(review) == ReviewBody(
        "s1", hashlib.sha256(payload).digest(), ReviewDecision.APPROVE, "ok", 123
    )
    study = dataclasses.replace(study, proposal_sha256=b"\x00" * 32)
    with pytest.raises(Unauthenticated):
        sign_review(study, ReviewDecision.APPROVE, "", signer)
    with pytest.raises(UsageError):
        sign_review(study, 0, "", signer)  # type: ignore[arg-type]


# Against a fake coordinator -------------------------------------------------------------------------------


class FakeCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Just enough of the coordinator to check what the client sends: it verifies every signature."""

    def __init__(self) -> None:
        self.researchers: dict[str, bytes] = {}
        self.reviewers: dict[str, bytes] = {}
        self.studies: dict[str, cpb.Study] = {}
        self.nodes: list[cpb.NodeInfo] = []
        self.epoch = 0

    @boundary
    def RegisterResearcher(self, request: Any, context: Any) -> cpb.RegisterResearcherResponse:
        fp = key_id(request.public_key)
        self.researchers[fp] = request.public_key
        r = cpb.Researcher(name=request.name, affiliation=request.affiliation, public_key=request.public_key)
        r.key_fingerprint = fp
        return cpb.RegisterResearcherResponse(researcher=r)

    @boundary
    def ProposeStudy(self, request: Any, context: Any) -> cpb.ProposeStudyResponse:
        signed = request.proposal
        proposal = cpb.StudyProposal.FromString(signed.payload)
        key = self.researchers.get(proposal.researcher_key_fingerprint)
        if key is None:
            raise Unauthenticated("unknown researcher")
        verify(key, "genogate.v1.StudyProposal", signed.payload, signed.researcher_signature)
        study = cpb.Study(
            study_id=f"s{len(self.studies) + 1}",
            proposal=proposal,
            signed_proposal=signed,
            proposal_sha256=hashlib.sha256(signed.payload).digest(),
            state=cpb.STUDY_STATE_PROPOSED,
            approvals_required=1,
            created_unix_ms=1_700_000_000_000,
        )
        self.studies[study.study_id] = study
        return cpb.ProposeStudyResponse(study=study)

    @boundary
    def PreviewStudy(self, request: Any, context: Any) -> cpb.PreviewStudyResponse:
        p = request.proposal
        sites = [cpb.SitePreview(site=s, registered=s == "a") for s in p.sites]
        return cpb.PreviewStudyResponse(
            grant_body=pb.GrantBody(purpose=p.purpose, kinds=p.kinds, sites=p.sites, epsilon_total=1.0),
            sites=sites,
            problems=[f"site {s.site!r} is not registered" for s in sites if not s.registered],
        )

    def _study(self, study_id: str) -> cpb.Study:
        if study_id not in self.studies:
            raise NotFound(f"study {study_id}", message="no such study")
        return self.studies[study_id]

    @boundary
    def GetStudy(self, request: Any, context: Any) -> cpb.GetStudyResponse:
        return cpb.GetStudyResponse(study=self._study(request.study_id))

    @boundary
    def ListStudies(self, request: Any, context: Any) -> cpb.ListStudiesResponse:
        found = [s for s in self.studies.values() if request.state in (0, s.state)]
        return cpb.ListStudiesResponse(studies=found)

    def _review(self, review: cpb.Review) -> tuple[cpb.Study, cpb.ReviewBody]:
        verify(
            self.reviewers[review.reviewer_key_id], "genogate.v1.ReviewBody", review.payload, review.reviewer_signature
        )
        body = cpb.ReviewBody.FromString(review.payload)
        study = self._study(body.study_id)
        assert body.proposal_sha256 == study.proposal_sha256
        study.reviews.append(review)
        return study, body

    @boundary
    def ReviewStudy(self, request: Any, context: Any) -> cpb.ReviewStudyResponse:
        study, body = self._review(request.review)
        study.state = (
            cpb.STUDY_STATE_APPROVED if body.decision == cpb.REVIEW_DECISION_APPROVE else cpb.STUDY_STATE_REJECTED
        )
        return cpb.ReviewStudyResponse(study=study)

    @boundary
    def RevokeStudy(self, request: Any, context: Any) -> cpb.RevokeStudyResponse:
        study, body = self._review(request.review)
        assert body.decision == cpb.REVIEW_DECISION_REVOKE
        study.state = cpb.STUDY_STATE_REVOKED
        self.epoch += 1
        return cpb.RevokeStudyResponse(study=study, revocation_epoch=self.epoch)

    @boundary
    def RegisterNode(self, request: Any, context: Any) -> cpb.RegisterNodeResponse:
        self.nodes.append(request.node)
        return cpb.RegisterNodeResponse(node=request.node)

    @boundary
    def ListNodes(self, request: Any, context: Any) -> cpb.ListNodesResponse:
        return cpb.ListNodesResponse(nodes=self.nodes)


@dataclass
class Fed:
    fake: FakeCoordinator
    profile: Path
    dir: Path
    address: str


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    d = tmp_path_factory.mktemp("fed")
    ca_key, ca_cert = tls.new_ca("test CA", 2)

    def leaf(name: str, *, server: bool) -> tuple[bytes, bytes]:
        key = tls.new_key()
        csr = tls.new_csr(key, name, ["localhost", "127.0.0.1"])
        return key, tls.issue(ca_key, ca_cert, csr, server=server, client=not server, days=2)

    server_key, server_cert = leaf("coordinator", server=True)
    client_key, client_cert = leaf("alice", server=False)
    (d / "tls").mkdir()
    (d / "tls" / "ca.pem").write_bytes(ca_cert)
    (d / "tls" / "alice.pem").write_bytes(client_cert)
    tls.write_secret(d / "tls" / "alice.key", client_key)
    (d / "node.pem").write_bytes(server_cert)
    fake = FakeCoordinator()  # type: ignore[abstract]  # the RPCs the client tests do not use stay unimplemented
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(fake, server)
    creds = grpc.ssl_server_credentials(
        [(server_key, server_cert)], root_certificates=ca_cert, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    assert cli.main(["keys", "new", "--out", str(d / "alice.ed25519")]) == 0
    signer = Signer.from_pem_file(d / "alice.ed25519")
    fake.reviewers[signer.key_id] = signer.public_raw  # alice sits on the committee too, for the test
    profile = _write_profile(
        d / "profile.toml",
        f'[profile]\nname = "alice"\ncoordinator = "127.0.0.1:{port}"\nca_cert = "tls/ca.pem"\n'
        'cert = "tls/alice.pem"\nkey = "tls/alice.key"\nsigning_key = "alice.ed25519"\n',
    )
    try:
        yield Fed(fake, profile, d, f"127.0.0.1:{port}")
    finally:
        server.stop(None)


def _run(fed: Fed, capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    rc = cli.main(["--profile", str(fed.profile), *argv])
    captured = capsys.readouterr()
    assert rc == code, captured.err
    return captured.out if code == 0 else captured.err


def test_cli_round_trip_against_a_fake_coordinator(fed: Fed, capsys: pytest.CaptureFixture[str]) -> None:
    signer = Signer.from_pem_file(fed.dir / "alice.ed25519")
    out = _run(fed, capsys, "researchers", "register", "--name", "Alice", "--affiliation", "Uni", "--public-key",
               signer.public_raw.hex(), "--json")  # fmt: skip
    assert json.loads(out)["researcher"]["key_fingerprint"] == signer.key_id

    out = _run(fed, capsys, "study", "propose", *PROPOSAL_ARGS, "--per-site-breakdown", "--json")
    study = json.loads(out)["study"]
    assert study["state"] == "proposed"
    assert study["proposal"]["researcher_key_fingerprint"] == signer.key_id
    assert study["proposal"]["kinds"] == ["cohort_count", "allele_frequency"]
    assert study["proposal"]["per_site_breakdown"] is True
    sid = study["study_id"]

    out = _run(fed, capsys, "study", "list")
    assert out.splitlines()[0].split() == ["ID", "STATE", "TITLE", "PURPOSE", "SITES", "EPSILON/SITE", "APPROVALS",
                                           "CREATED"]  # fmt: skip
    assert sid in out and "proposed" in out and "0/1" in out
    assert _run(fed, capsys, "study", "list", "--state", "approved") == "no studies\n"

    out = _run(fed, capsys, "--json", "study", "approve", sid, "--comment", "fine")  # --json before the command
    assert json.loads(out)["study"]["state"] == "approved"
    out = _run(fed, capsys, "study", "show", sid)
    assert "state:" in out and "approved" in out and "fine" in out and "1/1" in out

    out = _run(fed, capsys, "study", "revoke", sid, "--comment", "consent withdrawn", "--json")
    revoked = json.loads(out)
    assert revoked["study"]["state"] == "revoked" and revoked["revocation_epoch"] == "1"

    out = _run(fed, capsys, "study", "preview", *PROPOSAL_ARGS)
    assert "site 'b' is not registered" in out and "REACHABLE" in out


def test_cli_nodes_register_pins_the_certificate(fed: Fed, capsys: pytest.CaptureFixture[str]) -> None:
    cert = fed.dir / "node.pem"
    out = _run(fed, capsys, "nodes", "register", "--name", "siteA", "--endpoint", "node-a.example:7001", "--cert",
               str(cert), "--build", "GRCh38", "--json")  # fmt: skip
    assert json.loads(out)["node"]["cert_sha256"] == tls.fingerprint_sha256(cert.read_bytes())
    out = _run(fed, capsys, "nodes", "list")
    assert "siteA" in out and "node-a.example:7001" in out and "GRCh38" in out
    err = _run(fed, capsys, "nodes", "register", "--name", "x", "--endpoint", "h:1", "--cert", str(fed.profile), code=2)
    assert "not a PEM certificate" in err


def test_cli_wire_errors_are_one_line_and_exit_1(fed: Fed, capsys: pytest.CaptureFixture[str]) -> None:
    err = _run(fed, capsys, "study", "show", "nope", code=1)
    assert err == "genogate: error: no such study\n"


def test_cli_unreachable_coordinator_names_it(
    fed: Fed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENOGATE_PROFILE__COORDINATOR", "127.0.0.1:1")
    err = _run(fed, capsys, "--timeout", "5", "nodes", "list", code=1)
    assert err.startswith("genogate: error: cannot connect to the coordinator at 127.0.0.1:1: nothing listens")
    assert err.count("\n") == 1 and "(coordinator 127.0.0.1:1)" not in err  # named once


def test_client_methods_return_the_response_fields(fed: Fed) -> None:
    profile = load_profile(fed.profile, env={})
    with CoordinatorClient(fed.address, profile.client_tls(), timeout_s=10) as client:
        assert isinstance(client.list_nodes(), list)
        with pytest.raises(NotFound) as info:
            client.get_study("missing")
        assert info.value.message == "no such study"
