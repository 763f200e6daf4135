"""``genogate-node status --config FILE``: the node's server, store, ledger, consent changes and audit log at a
glance."""

from __future__ import annotations

from pathlib import Path

from genogate import status
from genogate.words import plural
from node.config import load_node_config
from node.ledger import read_spent
from node.store import Store, scalar


def run(config_path: Path, *, as_json: bool) -> int:
    config = load_node_config(config_path)
    sections = [
        status.server(config.server.ready_file),
        status.guarded("store", lambda: _store(config.store.path)),
        status.guarded("ledger", lambda: _ledger(config.ledger.path)),
        status.guarded("consent", lambda: _consent(config.store.path)),
        status.audit_section(config.ledger.path, config.keys.identity_key),
    ]
    return status.emit(f"node {config.node.name} ({config_path})", sections, as_json=as_json)


def _store(path: Path) -> status.Section:
    store = Store.open(path)
    try:
        samples = store.n_samples
        alleles = int(scalar(store.con, "SELECT count(*) FROM variants"))
    finally:
        store.close()
    return status.Section(
        "store",
        True,
        f"{path}: {plural(samples, 'participant')}, {plural(alleles, 'allele')}, {status.size(path)}",
        facts={"path": str(path), "participants": samples, "alleles": alleles, "bytes": path.stat().st_size},
    )


def _ledger(path: Path) -> status.Section:
    studies = read_spent(path)
    answered = sum(s.queries_answered for s in studies)
    details = [
        f"study {s.study_id}: spent epsilon {s.epsilon_spent.normalize():f}, delta {s.delta_spent.normalize():f}; "
        f"{plural(s.queries_answered, 'query')} answered"
        for s in studies
    ]
    return status.Section(
        "ledger",
        True,
        f"{path}: {plural(len(studies), 'study')}, {plural(answered, 'query')} answered",
        details,
        facts={
            "path": str(path),
            "studies": [
                {
                    "study": s.study_id,
                    "epsilon_spent": str(s.epsilon_spent),
                    "delta_spent": str(s.delta_spent),
                    "queries_answered": s.queries_answered,
                }
                for s in studies
            ],
        },
    )


def _consent(store: Path) -> status.Section:
    """The consent changes recorded while serving (``node.consent``; read-only, none without the file)."""
    from genogate import duo
    from node.consent import consent_path, read_overrides

    path = consent_path(store)
    overrides = read_overrides(store)
    withdrawn = sum(duo.WITHDRAWN in codes for codes in overrides.values())
    n = len(overrides)
    summary = f"{path}: " + (
        f"{n} participant{'' if n == 1 else 's'} with a change in force ({withdrawn} withdrawn)"
        if n
        else "no consent changes recorded"
    )
    return status.Section("consent", True, summary, facts={"path": str(path), "in_force": n, "withdrawn": withdrawn})
