"""The coordinator state's factory (``coordinator.state.open_state``, ``read_summary``) and the ``[state]
backend`` setting that chooses the implementation: the SQLite one today; an unknown one is refused with a
clear one-line error, by the config loader and by the factory; the status summary reads a state without
creating or changing it. Real files, real Ed25519 keys."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest

from coordinator.config import CoordinatorConfig, StateBackend, load_coordinator_config
from coordinator.state import BACKENDS, SqliteCoordinatorState, StateSummary, open_state, read_summary
from genogate.errors import ConfigError, StoreError
from genogate.query import Kind
from genogate.signing import Signer, verify
from genogate.studies import NodeInfo
from genogate.tls import new_identity_key
from tests.coordstate import CERT, SITES, approved, open_world


def _config(tmp_path: Path, state: str = "") -> CoordinatorConfig:
    (tmp_path / "committee.key").write_bytes(new_identity_key())
    (tmp_path / "c.toml").write_text(
        '[coordinator]\nname = "coord"\n[tls]\nca_certs = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n'
        '[committee]\nsigning_key = "committee.key"\napprovals_required = 3\n' + state
    )
    return load_coordinator_config(tmp_path / "c.toml", env={})


def test_the_backends_the_factory_builds_are_the_choices_of_the_setting() -> None:
    assert BACKENDS == get_args(StateBackend) == ("sqlite",)


def test_the_default_backend_is_sqlite_at_the_configured_path_signed_by_the_committee(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[state]\npath = "s/state.sqlite"\n')
    (tmp_path / "s").mkdir()
    assert cfg.state.backend == "sqlite"
    state = open_state(cfg)
    try:
        assert isinstance(state, SqliteCoordinatorState) and state.path == tmp_path / "s" / "state.sqlite"
        assert state.path.is_file()
        revocations = state.revocations()
        committee = Signer.from_pem_file(tmp_path / "committee.key")
        verify(committee.public_raw, "genogate.v1.RevocationList", revocations.payload, revocations.committee_signature)
        assert revocations.committee_key_id == committee.key_id
    finally:
        state.close()


def test_an_unknown_backend_is_refused_by_the_loader_and_by_the_factory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, '[state]\nbackend = "postgres"\n')
    assert "[state] backend" in str(info.value) and "sqlite" in str(info.value)
    cfg = _config(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_coordinator_config(tmp_path / "c.toml", env={"GENOGATE_COORDINATOR_STATE__BACKEND": "postgres"})
    assert "GENOGATE_COORDINATOR_STATE__BACKEND" in str(info.value) and "sqlite" in str(info.value)

    hand_built = dataclasses.replace(cfg, state=dataclasses.replace(cfg.state, backend="postgres"))  # type: ignore[arg-type]
    for call in (lambda: open_state(hand_built), lambda: read_summary(hand_built.state)):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == "[state] backend: unknown coordinator state 'postgres'; backends are sqlite"
    assert not cfg.state.path.exists()  # nothing was created for it


def test_the_summary_counts_what_the_state_holds_and_creates_nothing(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with pytest.raises(StoreError) as info:
        read_summary(cfg.state)
    assert str(info.value) == (
        f"{cfg.state.path}: no such coordinator state (the coordinator creates it when it first serves)"
    )
    assert not cfg.state.path.exists()

    def opener(where: Path, signer: Signer, k: int, clock: object) -> SqliteCoordinatorState:
        return SqliteCoordinatorState(cfg.state.path, signer, k, clock)  # type: ignore[arg-type]

    with open_world(tmp_path, opener) as w:
        study = approved(w)
        w.state.record_query("q-1", study.study_id, Kind.COHORT_COUNT, Decimal("0.5"), ["site-a"], {"site-a": "ok"})
        w.state.register_node(NodeInfo("site-z", "127.0.0.1:9", CERT, "GRCh38"))
        before = cfg.state.path.read_bytes()
        summary = read_summary(cfg.state)
        assert summary == StateSummary(
            studies={"approved": 1},
            researchers=1,
            queries=1,
            nodes=(*((s, f"{s}.example.org:7000") for s in SITES), ("site-z", "127.0.0.1:9")),
        )
        assert cfg.state.path.read_bytes() == before
