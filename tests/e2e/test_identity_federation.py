"""Variant identity and genome builds across a real federation: a coordinator and three node processes on
loopback with mTLS. site-a holds half of the 1000 Genomes chr22 subset as published (contig ``22``, GRCh37),
site-b the other half rewritten to ``chr22`` (what a UCSC-style pipeline exports), site-c a small GRCh38
cohort. Checked: the build is read from each node's data (registration asks the node); a study mixing
builds is refused; every spelling of one allele gets one answer at both GRCh37 sites (the same stored
releases, no site answering "absent"); an unknown contig and another build are refused, not answered.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from genogate.client import Client
from genogate.coordclient import CoordinatorClient
from genogate.errors import GenogateError, Reason
from genogate.nodeclient import ClientTLS
from genogate.query import Kind
from genogate.signing import Signer
from genogate.studies import ReviewDecision, Study, StudyProposal
from genogate.tls import fingerprint_sha256, new_identity_key, write_secret
from node.ingest import ingest
from tests.conftest import ROOT, SUBSET, require_shared, write_subset_sheet
from tests.nodes import client_tls, make_ca, make_coordinator, make_node, write_profile
from tests.processes import Proc, start_coordinator, start_server

VCF = SUBSET / "1KG_phase3_subset_chr22.vcf.gz"
GRCH38_VCF = """##fileformat=VCFv4.2
##reference=GRCh38
##contig=<ID=chr22,length=50818468>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tQ0\tQ1\tQ2
chr22\t17000000\t.\tA\tG\t.\t.\t.\tGT\t0/1\t0/0\t1/1
"""
GRCH38_SHEET = "sample_id\tsex\tancestry\tconsent\nQ0\tF\tEUR\tGRU\nQ1\tM\tAFR\tGRU\nQ2\tF\tEUR\tGRU\n"


@dataclass
class Fed:
    root: Path
    coordinator: Proc
    nodes: dict[str, Proc]
    operator: ClientTLS
    alice_tls: ClientTLS
    alice: Signer
    committee: list[Signer]
    operator_profile: Path

    def client(self) -> Client:
        return Client(self.coordinator.address, self.alice_tls, self.alice, timeout_s=120)

    def propose(self, sites: list[str], title: str = "identity", **kw: object) -> Study:
        proposal = StudyProposal(
            title=title,
            purpose="HMB",
            kinds=(Kind.ALLELE_FREQUENCY, Kind.GENOTYPE_COUNTS),
            sites=tuple(sites),
            epsilon_total_per_site=50,
            epsilon_per_query_cap=1,
            duration_days=30,
            researcher_key_fingerprint=self.alice.key_id,
            per_site_breakdown=True,
            **kw,  # type: ignore[arg-type]
        )
        with CoordinatorClient(self.coordinator.address, self.operator) as c:
            study = c.propose(proposal, self.alice)
            for member in self.committee:
                study = c.review(study, ReviewDecision.APPROVE, "ok", member)
        return study


def _chr_prefixed(src: Path, out: Path) -> Path:
    """The same VCF with ``chr``-prefixed contig names (records and ##contig lines)."""
    with gzip.open(src, "rt") as fh, gzip.open(out, "wt") as w:
        for line in fh:
            if line.startswith("##contig=<ID="):
                line = line.replace("##contig=<ID=", "##contig=<ID=chr", 1)
            elif not line.startswith("#"):
                line = "chr" + line
            w.write(line)
    return out


def _half(src: Path, samples: list[str], out: Path) -> Path:
    listing = out.with_suffix(".samples")
    listing.write_text("\n".join(samples) + "\n")
    subprocess.run(["bcftools", "view", "-S", str(listing), "-Oz", "-o", str(out), str(src)], check=True)
    return out


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    require_shared()
    root = tmp_path_factory.mktemp("identity")
    ca = make_ca(root / "ca")
    committee = [Signer(Ed25519PrivateKey.generate()) for _ in range(2)]
    cdir = make_coordinator(
        root, ca, operators=("operator",), members=[(f"m{i}", m.public_raw) for i, m in enumerate(committee)]
    )
    committee_key = Signer.from_pem_file(cdir / "keys" / "committee.key")
    operator = client_tls(ca, "operator", root / "clients")
    coordinator = start_coordinator(cdir / "coordinator.toml", operator, log=root / "coord.log")
    sheet = write_subset_sheet(root / "sheet.tsv").read_text().splitlines()
    header, rows = sheet[0], sheet[1:]
    stores = {}
    for site, part in (("site-a", rows[0::2]), ("site-b", rows[1::2])):
        (root / f"{site}.tsv").write_text("\n".join([header, *part]) + "\n")
        vcf = _half(VCF, [r.split("\t")[0] for r in part], root / f"{site}.vcf.gz")
        if site == "site-b":
            vcf = _chr_prefixed(vcf, root / "site-b.chr.vcf.gz")
        stores[site] = (vcf, root / f"{site}.tsv")
    (root / "c.vcf").write_text(GRCH38_VCF)
    (root / "c.tsv").write_text(GRCH38_SHEET)
    stores["site-c"] = (root / "c.vcf", root / "c.tsv")
    procs: dict[str, Proc] = {}
    try:
        for site, (vcf, sheet_path) in stores.items():
            node = make_node(root / site, site, ca, client=True)
            ingest(node.store, [vcf], sheet_path)
            env = {
                "GENOGATE_NODE_GRANTS__COMMITTEE_KEYS": committee_key.public_raw.hex(),
                "GENOGATE_NODE_GRANTS__COORDINATOR": coordinator.address,
                "GENOGATE_NODE_GRANTS__COORDINATOR_COMMON_NAME": "coord",  # make_coordinator's name
                "GENOGATE_NODE_GRANTS__REVOCATION_REFRESH_SECONDS": "1",
                "GENOGATE_NODE_POLICY__MIN_REPORTABLE_COUNT": "0",
            }
            procs[site] = start_server("node.cli", node.config, operator, log=root / f"{site}.log", env=env)
        alice = Signer.from_pem_file(_key(root / "alice.key"))
        profile = root / "operator.toml"
        write_profile(profile, "operator", coordinator.address, ca, root / "clients", root / "alice.key")
        with CoordinatorClient(coordinator.address, operator) as c:
            c.register_researcher("alice", "a university", alice.public_raw)
        yield Fed(
            root,
            coordinator,
            procs,
            operator,
            client_tls(ca, "alice", root / "clients"),
            alice,
            committee,
            profile,
        )
    finally:
        for p in procs.values():
            p.stop()
        coordinator.stop()


def _key(path: Path) -> Path:
    write_secret(path, new_identity_key())
    return path


def _register(fed: Fed, site: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "genogate.cli", "--profile", str(fed.operator_profile), "--json", "nodes"]
    cmd += ["register", "--name", site, "--endpoint", fed.nodes[site].address]
    cmd += ["--cert", str(fed.root / site / "tls" / "node.pem"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture(scope="module")
def registered(fed: Fed) -> dict[str, str]:
    """Every site registered with `genogate nodes register`: the coordinator reads the build from the node."""
    refused = _register(fed, "site-c", "--build", "GRCh37")
    assert refused.returncode != 0 and "the node serves GRCh38, not the declared GRCh37" in refused.stderr
    builds = {}
    for site in fed.nodes:
        done = _register(fed, site)
        assert done.returncode == 0, done.stderr
        node = json.loads(done.stdout)["node"]
        builds[site] = node["genome_build"]
        pem = (fed.root / site / "tls" / "node.pem").read_bytes()
        assert node["cert_sha256"] == fingerprint_sha256(pem)  # the certificate the coordinator pins
    assert builds == {"site-a": "GRCh37", "site-b": "GRCh37", "site-c": "GRCh38"}
    return builds


def test_a_study_whose_sites_differ_in_build_is_refused(fed: Fed, registered: dict[str, str]) -> None:
    with pytest.raises(GenogateError) as info:
        fed.propose(["site-a", "site-c"])
    assert "the sites differ in genome build (site-a GRCh37, site-c GRCh38)" in str(info.value)
    with pytest.raises(GenogateError, match="asks for GRCh38 but its sites' data is on GRCh37"):
        fed.propose(["site-a", "site-b"], assembly="GRCh38")


def test_every_spelling_gets_one_answer_across_sites_of_both_spellings(fed: Fed, registered: dict[str, str]) -> None:
    study = fed.propose(["site-a", "site-b"])
    assert study.assembly == "GRCh37"
    with fed.client() as gg:
        first = gg.allele_frequency(study.study_id, ["22-16050075-A-G"], epsilon=0.5)
        assert all(s.status == "answered" for s in first.sites)
        total = first.value("allele_number", "22-16050075-A-G").estimate
        assert total > 1500  # both halves count the variant's allele number: neither answers "absent"
        for spelling in ("chr22-16050075-A-G", "CHR22-16050075-a-g", "NC_000022.10-16050075-A-G"):
            again = gg.allele_frequency(study.study_id, [spelling], epsilon=0.5)
            assert all(s.status == "answered" and s.from_store for s in again.sites), spelling
            assert again.values == first.values  # one canonical question, the stored releases
        with pytest.raises(GenogateError) as info:  # GRCh38's chr22: refused at the coordinator
            gg.allele_frequency(study.study_id, ["NC_000022.11-16050075-A-G"], epsilon=0.5)
        assert info.value.reason == Reason.WRONG_ASSEMBLY


def test_unknown_contigs_and_other_builds_are_refused(fed: Fed, registered: dict[str, str]) -> None:
    study = fed.propose(["site-a", "site-b"], title="refusals")
    with fed.client() as gg:
        r = gg.allele_frequency(study.study_id, ["chr5-117882594-T-A"], epsilon=0.5)
        assert [(s.status, s.reason) for s in r.sites] == [("refused", "UNKNOWN_CONTIG")] * 2
        assert all("its contigs are 22" in s.message for s in r.sites)
        with pytest.raises(GenogateError) as info:
            gg.allele_frequency(study.study_id, ["22-16050075-A-G"], epsilon=0.5, assembly="GRCh38")
        assert info.value.reason == Reason.WRONG_ASSEMBLY
