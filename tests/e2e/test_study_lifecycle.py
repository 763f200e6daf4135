"""Studies end to end with real processes on loopback and real mTLS: a coordinator and two nodes.

A researcher proposes, the committee previews and approves (2 of 3), the researcher queries each node
directly with the grant, the committee revokes, and the nodes, having fetched the signed revocation list
themselves, refuse. Every refusal carries its status and reason and charges nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate import risk
from genogate.convert import grant_terms_of
from genogate.coordclient import CoordinatorClient
from genogate.errors import GenogateError, PermissionDenied, Reason, ResourceExhausted, Unauthenticated
from genogate.filter import parse_filter
from genogate.kinds.cohort_count import CohortCount
from genogate.kinds.genotype_counts import GenotypeCounts
from genogate.nodeclient import ClientTLS, NodeClient, envelope, signed
from genogate.query import Kind, Variant
from genogate.results import ReleaseBody
from genogate.signing import Signer
from genogate.studies import NodeInfo, ReviewDecision, Study, StudyGrant, StudyProposal, StudyState
from genogate.tls import fingerprint_sha256
from genogate.wire.v1 import common_pb2 as pb
from node.ingest import ingest
from tests.conftest import SUBSET, require_shared, write_subset_sheet
from tests.nodes import client_tls, make_ca, make_coordinator, make_node
from tests.processes import Proc, start_coordinator, start_node
from tests.terms import filler

SITES = ("site-a", "site-b")


@dataclass
class Federation:
    coordinator: Proc
    nodes: dict[str, Proc]
    operator: ClientTLS
    alice_tls: ClientTLS
    alice: Signer
    bob: Signer
    committee: list[Signer]
    committee_key: Signer  # the coordinator's grant-signing key, read from its directory (to forge test grants)
    coord_tls: ClientTLS  # a certificate of the coordinator's common name ("coord"), as the coordinator calls nodes

    def coord(self, tls: ClientTLS | None = None) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.address, tls or self.operator)

    def node(self, site: str, tls: ClientTLS | None = None) -> NodeClient:
        return NodeClient(self.nodes[site].address, tls or self.alice_tls, timeout_s=10)


def _signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    require_shared()
    root = tmp_path_factory.mktemp("lifecycle")
    ca = make_ca(root / "ca")
    committee = [_signer() for _ in range(3)]
    members = [(f"member{i}", m.public_raw) for i, m in enumerate(committee)]
    cdir = make_coordinator(root, ca, operators=("operator",), members=members)
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_coordinator(cdir / "coordinator.toml", operator, log=root / "coord.log")
    procs: dict[str, Proc] = {}
    try:
        sheet = write_subset_sheet(root / "sheet.tsv")
        for site in SITES:
            # The node also calls the coordinator (revocations): its certificate allows client authentication.
            node = make_node(root / site, site, ca, client=True)
            ingest(node.store, [SUBSET / "1KG_phase3_subset_chr22.vcf.gz"], sheet)
            env = {
                "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key.public_raw.hex(),
                "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
                "GENOGATE_NODE_GRANTS__REVOCATION_REFRESH_SECONDS": "0.2",
                "GENOGATE_NODE_GRANTS__REVOCATION_MAX_STALENESS_SECONDS": "30",
                "GENOGATE_NODE_POLICY__ALLOWED_PURPOSES": "GRU,HMB,DS",
                "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",
                # This module approves many studies for one researcher: room above the default caps.
                "GENOGATE_NODE_POLICY__EPSILON_PER_RESEARCHER_CAP": "1000",
                "GENOGATE_NODE_POLICY__EPSILON_PER_NODE_CAP": "100000",
            }
            if site == "site-b":  # a site whose floor on ε per query is above the coordinator's (0.001)
                env["GENOGATE_NODE_POLICY__EPSILON_PER_QUERY_MIN"] = "0.01"
            procs[site] = start_node(node.config, operator, log=root / f"{site}.log", env=env)
        federation = Federation(
            coordinator,
            procs,
            operator,
            client_tls(ca, "alice", root / "clients"),
            _signer(),
            _signer(),
            committee,
            committee_key,
            client_tls(ca, "coord", root / "clients"),
        )
        with federation.coord() as c:  # the operator registers the sites and the researchers
            for site in SITES:
                cert = (root / site / "tls" / "node.pem").read_bytes()
                c.register_node(
                    NodeInfo(
                        name=site,
                        endpoint=procs[site].address,
                        cert_sha256=fingerprint_sha256(cert),
                        genome_build="GRCh37",
                    )
                )
            c.register_researcher("alice", "a university", federation.alice.public_raw)
            c.register_researcher("bob", "another university", federation.bob.public_raw)
        yield federation
    finally:
        for p in procs.values():
            p.stop()
        coordinator.stop()


def _proposal(
    fed: Federation,
    *,
    purpose: str = "HMB",
    sites: tuple[str, ...] = SITES,
    kinds: tuple[Kind, ...] = (Kind.COHORT_COUNT,),
    per_site_breakdown: bool = True,
) -> StudyProposal:
    """A proposal; with the per-site breakdown by default, so that the researcher may query each node directly."""
    return StudyProposal(
        title=f"study {purpose} {sites} {time.monotonic_ns()}",
        purpose=purpose,
        kinds=kinds,
        sites=sites,
        epsilon_total_per_site=2.0,
        epsilon_per_query_cap=0.5,
        duration_days=30,
        researcher_key_fingerprint=fed.alice.key_id,
        per_site_breakdown=per_site_breakdown,
    )


def _approved(fed: Federation, proposal: StudyProposal) -> Study:
    with fed.coord() as c:
        study = c.propose(proposal, fed.alice)
        assert study.state == StudyState.PROPOSED
        study = c.review(study, ReviewDecision.APPROVE, "ok", fed.committee[0])
        assert study.state == StudyState.PROPOSED  # 1 of 2
        study = c.review(study, ReviewDecision.APPROVE, "ok", fed.committee[1])
    assert study.state == StudyState.APPROVED and study.grant is not None and study.grant.payload
    return study


def _ask(
    fed: Federation,
    site: str,
    study: Study,
    query: object = None,
    *,
    by: Signer | None = None,
    grant: StudyGrant | None = None,
    epsilon: float = 0.25,
    **env_fields: object,
) -> ReleaseBody:
    env = envelope(query or CohortCount(parse_filter("sex=F")), study_id=study.study_id, epsilon=epsilon)  # type: ignore[arg-type]
    for k, v in env_fields.items():
        setattr(env, k, v)
    payload, sig = signed(env, by or fed.alice)
    with fed.node(site) as n:
        return n.send(payload, sig, grant or study.grant)[1]


def _spent(fed: Federation, site: str, study: Study) -> float:
    with fed.node(site, fed.coord_tls) as n:  # under a grant, a node gives budgets to the coordinator only
        return n.budget(study.study_id, study.grant).epsilon_spent


def test_without_the_breakdown_a_node_answers_the_coordinators_certificate_only(fed: Federation) -> None:
    """Real mTLS certificates of two names, the same signed bytes: the researcher's own certificate is refused
    (it could read the site's own value), the coordinator's is answered; budgets go to the coordinator only."""
    study = _approved(fed, _proposal(fed, per_site_breakdown=False))
    site = SITES[0]
    env = envelope(CohortCount(parse_filter("sex=M")), study_id=study.study_id, epsilon=0.25)
    payload, sig = signed(env, fed.alice)
    with fed.node(site) as n, pytest.raises(GenogateError) as refused:
        n.send(payload, sig, study.grant)
    assert refused.value.reason is Reason.NOT_AUTHORIZED
    assert _spent(fed, site, study) == 0.0
    with fed.node(site, fed.coord_tls) as n:
        _, body = n.send(payload, sig, study.grant)
    assert body.epsilon_charged == 0.25 and _spent(fed, site, study) == 0.25
    with fed.node(site) as n, pytest.raises(GenogateError) as budget:
        n.budget(study.study_id, study.grant)
    assert budget.value.reason is Reason.NOT_AUTHORIZED


def test_full_lifecycle_propose_preview_approve_query_revoke(fed: Federation) -> None:
    with fed.coord() as c:
        preview = c.preview_study(_proposal(fed))
        assert [s.site for s in preview.sites] == list(SITES) and all(s.registered for s in preview.sites)
    study = _approved(fed, _proposal(fed))
    for site in SITES:
        body = _ask(fed, site, study)
        assert body.site == site and body.result.count.estimate > 0
        assert _spent(fed, site, study) == 0.25
    with fed.coord() as c:
        revoked = c.review(study, ReviewDecision.REVOKE, "consent concern", fed.committee[2])
    assert revoked.state == StudyState.REVOKED
    deadline = time.monotonic() + 15
    while True:  # the nodes fetch the signed list themselves every 0.2 s
        try:
            _ask(fed, "site-a", study, CohortCount(parse_filter("sex=M")))
        except PermissionDenied as exc:
            assert exc.reason is Reason.GRANT_REVOKED
            break
        assert time.monotonic() < deadline, "site-a never refused the revoked study"
        time.sleep(0.2)


def _forge(fed: Federation, study: Study, *, key: Signer | None = None, **terms: object) -> StudyGrant:
    assert study.grant is not None
    body = pb.GrantBody.FromString(study.grant.payload)
    for k, v in terms.items():
        if isinstance(v, list):
            del getattr(body, k)[:]
            getattr(body, k).extend(v)
        else:
            setattr(body, k, v)
    payload = body.SerializeToString(deterministic=True)
    signer = key or fed.committee_key
    return StudyGrant(
        payload=payload,
        committee_signature=signer.sign("genogate.v1.GrantBody", payload),
        committee_key_id=signer.key_id,
    )


@pytest.mark.parametrize(
    ("case", "error", "reason"),
    [
        ("forged grant signature", Unauthenticated, Reason.BAD_SIGNATURE),
        ("grant for another site", PermissionDenied, Reason.GRANT_WRONG_SITE),
        ("expired grant", PermissionDenied, Reason.GRANT_EXPIRED),
        ("kind not in the grant", PermissionDenied, Reason.KIND_NOT_GRANTED),
        ("purpose the node refuses", PermissionDenied, Reason.PURPOSE_REFUSED),
        ("signed by another researcher", Unauthenticated, Reason.BAD_SIGNATURE),
        ("replayed nonce", Unauthenticated, Reason.REPLAYED_NONCE),
        ("stale timestamp", Unauthenticated, Reason.STALE_TIMESTAMP),
        ("untrusted committee key", PermissionDenied, Reason.UNTRUSTED_COMMITTEE),
    ],
)
def test_refusals_have_status_and_reason_and_charge_nothing(
    fed: Federation, case: str, error: type, reason: Reason
) -> None:
    study = _approved(fed, _proposal(fed, purpose="POA" if case == "purpose the node refuses" else "HMB"))
    grant, kw, query = study.grant, {}, None
    match case:
        case "forged grant signature":
            good = _forge(fed, study, epsilon_total=99.0)
            grant = StudyGrant(
                payload=good.payload,
                committee_signature=_signer().sign("genogate.v1.GrantBody", good.payload),
                committee_key_id=fed.committee_key.key_id,
            )
        case "grant for another site":
            grant = _forge(fed, study, sites=["site-b"])
        case "expired grant":
            now_ms = int(time.time() * 1000)  # the grant was issued just now: start its window earlier too
            grant = _forge(fed, study, not_before_unix_ms=now_ms - 60_000, not_after_unix_ms=now_ms - 1)
        case "kind not in the grant":
            query = GenotypeCounts(Variant("22", 16050075, "A", "G"))
        case "signed by another researcher":
            kw = {"by": fed.bob}
        case "replayed nonce":
            first = envelope(CohortCount(), study_id=study.study_id, epsilon=0.25)
            _ask(fed, "site-a", study, CohortCount(), nonce=first.nonce)
            spent_before = _spent(fed, "site-a", study)
            with pytest.raises(error) as info:
                _ask(fed, "site-a", study, CohortCount(parse_filter("sex=M")), nonce=first.nonce)
            assert info.value.reason is reason and _spent(fed, "site-a", study) == spent_before
            return
        case "stale timestamp":
            kw = {"timestamp_unix_ms": int(time.time() * 1000) - 3_600_000}
        case "untrusted committee key":
            grant = _forge(fed, study, key=_signer())
    with pytest.raises(error) as info:
        _ask(fed, "site-a", study, query, grant=grant, **kw)  # type: ignore[arg-type]
    assert info.value.reason is reason, info.value
    # The message names what was asked and what is allowed (the study, the grant's sites), never data.
    assert info.value.message and "22-" not in info.value.message
    if case == "grant for another site":
        assert info.value.message.endswith(f"this is site-a; the grant of study {study.study_id} names site-b")
    assert _spent(fed, "site-a", study) == 0.0


def test_a_valid_grant_cannot_spend_past_its_budget_at_a_node(fed: Federation) -> None:
    """Whoever holds a valid grant (a compromised coordinator, say) and drives a node directly is stopped by
    the node's own ledger: 2.0 at 0.5 per query is four distinct queries."""
    study = _approved(fed, _proposal(fed))
    for i in range(4):
        _ask(fed, "site-b", study, CohortCount(parse_filter(filler(i))), epsilon=0.5)
    with pytest.raises(ResourceExhausted) as info:
        _ask(fed, "site-b", study, CohortCount(parse_filter(filler(9))), epsilon=0.5)
    assert info.value.reason is Reason.BUDGET_EXHAUSTED
    assert _spent(fed, "site-b", study) == 2.0


def _alice_cli(fed: Federation, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The researcher CLI's command and environment, with a profile of alice's certificate in ``tmp_path``."""
    import os
    import sys

    from genogate.tls import write_secret
    from tests.processes import ROOT

    for name, data in (("ca.pem", fed.alice_tls.ca), ("alice.pem", fed.alice_tls.cert)):
        (tmp_path / name).write_bytes(data)
    write_secret(tmp_path / "alice.key", fed.alice_tls.key)
    (tmp_path / "profile.toml").write_text(
        f'[profile]\nname = "alice"\ncoordinator = "{fed.coordinator.address}"\nca_cert = "ca.pem"\n'
        'cert = "alice.pem"\nkey = "alice.key"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENOGATE_PROFILE": str(tmp_path / "profile.toml")}
    return [sys.executable, "-m", "genogate.cli"], env


def test_the_cli_lists_and_shows_studies_from_the_real_coordinator(fed: Federation, tmp_path: Path) -> None:
    import json
    import subprocess

    study = _approved(fed, _proposal(fed))
    run, env = _alice_cli(fed, tmp_path)
    shown = json.loads(
        subprocess.run(
            [*run, "study", "show", study.study_id, "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )
    assert json.dumps(shown).count(study.study_id) >= 1 and shown["study"]["state"] == "approved"
    table = subprocess.run(
        [*run, "study", "list"], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert study.study_id in table
    missing = subprocess.run([*run, "study", "show", "S-nope"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("genogate: error:")


# Issue 13: the committee's view, the ε floor before fan-out, bounded work before authentication --------------


def _peak_rss_kb(proc: Proc) -> int:
    for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_the_preview_shows_each_sites_floor_commitments_and_the_risk(fed: Federation) -> None:
    from decimal import Decimal

    _approved(fed, _proposal(fed))  # alice has at least one approved study at both sites
    with fed.coord() as c:
        approved = c.list_studies(StudyState.APPROVED, fed.alice.key_id)
        preview = c.preview_study(_proposal(fed))
    committed = {
        site: float(
            sum(
                Decimal(repr(grant_terms_of(s.grant).epsilon_total))
                for s in approved
                if s.grant is not None and site in grant_terms_of(s.grant).sites
            )
        )
        for site in SITES
    }
    by_site = {s.site: s for s in preview.sites}
    for site in SITES:
        s = by_site[site]
        assert s.reachable and s.registered
        assert s.researcher_epsilon_committed == committed[site] > 0
        assert s.researcher_epsilon_spent >= 0  # the node's own figure, asked through one of alice's studies
        assert s.epsilon_total_cap == 4.0  # the nodes' own per-study cap (the default), not the proposal's 2
    assert (by_site["site-a"].epsilon_per_query_min, by_site["site-b"].epsilon_per_query_min) == (0.001, 0.01)
    assert preview.risk is not None and preview.risk.epsilon == 2.0 and preview.risk == preview.grant_body.risk
    assert "at most" in preview.risk.statement
    measured = risk.measured_point(2.0)  # the attack suite's point beside the bound
    assert measured is not None and preview.risk.measured_true_positive_rate == measured.true_positive_rate


def test_a_query_below_a_sites_floor_is_refused_before_any_site_is_charged(fed: Federation) -> None:
    """ε = 0.005 is above the coordinator's floor and site-a's, below site-b's (0.01): the query is refused
    before fan-out, so site-a charges nothing either (a tiny ε must not charge every site and return nothing)."""
    from genogate.client import Client
    from genogate.errors import InvalidArgument

    study = _approved(fed, _proposal(fed))
    with Client(fed.coordinator.address, fed.alice_tls, fed.alice, timeout_s=60) as gg:
        with pytest.raises(InvalidArgument) as info:
            gg.cohort_count(study.study_id, where="sex=F", epsilon=0.005)
        assert info.value.reason == Reason.INVALID_EPSILON
        assert "site-b 0.01" in info.value.message and "nothing was asked or charged" in info.value.message
        with pytest.raises(InvalidArgument):  # below the coordinator's own floor, to one site alone
            gg.cohort_count(study.study_id, where="sex=F", epsilon=0.0005, sites=["site-a"])
        assert [_spent(fed, site, study) for site in SITES] == [0.0, 0.0]
        answered = gg.cohort_count(study.study_id, where="sex=F", epsilon=0.005, sites=["site-a"])
        assert "charged: site-a ε 0.005" in answered.charge_note and "charged: site-a" in str(answered)
    assert [_spent(fed, site, study) for site in SITES] == [0.005, 0.0]


def test_a_million_variant_envelope_costs_the_coordinator_and_a_node_little(fed: Federation) -> None:
    """A 1,000,000-variant envelope signed by a key that is not the study's (any certificate holder can send
    one): refused, typed, and neither server's peak RSS grows by more than 100 MB (it took 4.75 s of CPU at
    the coordinator, 13 s and +360 MB at a node before)."""
    from genogate.errors import InvalidArgument

    study = _approved(fed, _proposal(fed, kinds=(Kind.ALLELE_FREQUENCY,)))
    env = envelope(CohortCount(parse_filter("sex=F")), study_id=study.study_id, epsilon=0.1)
    env.query.Clear()
    env.query.allele_frequency.variants.extend(
        pb.Variant(chrom="22", pos=16_050_000 + i, ref="A", alt="G") for i in range(1_000_000)
    )
    payload, sig = signed(env, fed.bob)
    assert len(payload) > 10 * 2**20
    before = {"coordinator": _peak_rss_kb(fed.coordinator), "site-a": _peak_rss_kb(fed.nodes["site-a"])}
    with fed.coord(fed.alice_tls) as c, pytest.raises(InvalidArgument) as info:
        c.run_query(pb.SignedQuery(payload=payload, researcher_signature=sig))
    assert info.value.reason == Reason.INVALID_QUERY  # not TOO_MANY_VARIANTS: nothing was decoded
    with fed.node("site-a") as n, pytest.raises(InvalidArgument) as at_node:
        n.send(payload, sig, study.grant)
    assert at_node.value.reason == Reason.INVALID_QUERY
    for name, proc in (("coordinator", fed.coordinator), ("site-a", fed.nodes["site-a"])):
        assert _peak_rss_kb(proc) - before[name] < 100 * 1024, name
    assert _spent(fed, "site-a", study) == 0.0


def test_study_show_and_preview_print_the_risk_in_words(fed: Federation, tmp_path: Path) -> None:
    import subprocess

    study = _approved(fed, _proposal(fed))
    run, env = _alice_cli(fed, tmp_path)
    shown = subprocess.run(
        [*run, "study", "show", study.study_id], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "membership risk" in shown and "With ε = 2 and δ = 1e-05 spent at one site" in shown
    preview = subprocess.run(
        [
            *run,
            "study",
            "preview",
            "--title",
            "t",
            "--purpose",
            "HMB",
            "--kinds",
            "cohort_count",
            "--sites",
            "site-a,site-b",
            "--epsilon-total",
            "0.1",
            "--epsilon-cap",
            "0.05",
            "--days",
            "30",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "can flag at most 5.5% of members" in preview
    assert "RESEARCHER CAP" in preview and "EPSILON MIN" in preview


# Issue 15: messages with numbers, through the real coordinator, nodes and the researcher's CLI --------------


def test_the_cli_says_the_stored_epsilon_of_a_repeat_and_the_numbers_of_a_budget_refusal(
    fed: Federation, tmp_path: Path
) -> None:
    """A repeated question asked at ε 0.1 prints "answered from the stored release at ε 0.5" (the ε its noise
    was drawn at), in the table and the JSON, without the per-site breakdown (the coordinator's own field); a
    query past the budget prints each site's refusal with ε asked, left and the cap, in the normal output; a
    typo in --sites is refused before fan-out naming the study's sites. Nothing here depends on the data."""
    import json
    import subprocess

    from genogate.tls import new_identity_key, write_secret

    run, env = _alice_cli(fed, tmp_path)
    write_secret(tmp_path / "carol.ed25519", new_identity_key())
    carol = Signer.from_pem_file(tmp_path / "carol.ed25519")
    with fed.coord() as c:
        c.register_researcher("carol", "a third university", carol.public_raw)
    with (tmp_path / "profile.toml").open("a") as profile:
        profile.write('signing_key = "carol.ed25519"\n')
    proposal = StudyProposal(
        title=f"messages {time.monotonic_ns()}",
        purpose="HMB",
        kinds=(Kind.COHORT_COUNT,),
        sites=SITES,
        epsilon_total_per_site=2.0,
        epsilon_per_query_cap=0.5,
        duration_days=30,
        researcher_key_fingerprint=carol.key_id,
        per_site_breakdown=False,
    )
    with fed.coord() as c:
        study = c.propose(proposal, carol)
        for member in fed.committee[:2]:
            study = c.review(study, ReviewDecision.APPROVE, "ok", member)
    assert study.state == StudyState.APPROVED

    def query(where: str, epsilon: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run, "query", "cohort-count", "--study", study.study_id, "--where", where, "--epsilon", epsilon, *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = query("sex=F", "0.5")
    assert first.returncode == 0, first.stderr
    assert "epsilon 0.5 per site" in first.stdout.splitlines()[0]
    again = query("sex=F", "0.1")  # the same question at another ε: the stored release, at no cost
    assert again.returncode == 0, again.stderr
    head = again.stdout.splitlines()[0]
    assert "answered from the stored release at ε 0.5 per site; nothing charged" in head, again.stdout
    assert "epsilon 0.1" not in again.stdout and "ε 0.1" not in again.stdout
    assert again.stdout.count("answered from the stored release at ε 0.5") == 1 + len(SITES)  # head, each site
    doc = json.loads(query("sex=F", "0.2", "--json").stdout)
    assert (doc["from_store"], doc["stored_epsilon"], doc["epsilon"]) == (True, 0.5, 0.2)
    assert [(s["from_store"], s["stored_epsilon"], s["epsilon_charged"]) for s in doc["sites"]] == [
        (True, 0.5, 0.0)
    ] * len(SITES)

    for i, epsilon in enumerate(("0.5", "0.5", "0.2")):  # 1.7 of 2 spent at each site: 0.3 left
        assert query(f"sex=M or {filler(i)}", epsilon).returncode == 0
    refused = query("sex=M and age>=1", "0.5")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    for site in SITES:  # the reason in words with its numbers, in the normal output, not only with --json
        line = next(x for x in refused.stdout.splitlines() if x.startswith(f"  {site}: "))
        assert "the study's privacy budget at this site is exhausted" in line, refused.stdout
        assert "the query asks ε 0.5; the study has ε 0.3 left of its cap of ε 2 at this site (ε 1.7 spent" in line
    assert "BUDGET_EXHAUSTED" in refused.stdout
    assert [_spent(fed, site, study) for site in SITES] == [1.7, 1.7]

    typo = query("sex=F", "0.1", "--sites", "site-a,site-x")
    assert typo.returncode == 1 and typo.stderr.startswith("genogate: error:"), typo.stderr
    assert "not a registered site: site-x; the study's sites are site-a, site-b" in typo.stderr
    missing = query("sex=F", "0.1", "--study", "S-000000000000")
    assert missing.returncode == 1 and "no study 'S-000000000000'" in missing.stderr, missing.stderr
