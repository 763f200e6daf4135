"""The store's cohort fingerprint (meta ``cohort_sha256``), which a node turns into its consent epoch: ingest
records it; any change of a participant's consent or attributes changes it; re-ingesting the same sheet
leaves it; a store written before ingest recorded it gets the same value computed at open. Real DuckDB
files, real ingest."""

from __future__ import annotations

from pathlib import Path

import duckdb

from node.ingest import ingest
from node.store import Store
from tests.unit.test_service import SHEET, VCF


def _fingerprint(store: Path) -> tuple[str | None, str]:
    s = Store.open(store)
    try:
        return s.meta("cohort_sha256"), s.cohort_sha256()
    finally:
        s.close()


def test_the_fingerprint_follows_consent_and_attributes_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "c.vcf").write_text(VCF)
    sheet = tmp_path / "s.tsv"
    sheet.write_text(SHEET)
    store = tmp_path / "store.duckdb"
    ingest(store, [tmp_path / "c.vcf"], sheet, build="GRCh37")
    recorded, computed = _fingerprint(store)
    assert recorded is not None and recorded == computed and len(recorded) == 64

    ingest(store, [tmp_path / "c.vcf"], sheet, build="GRCh37")  # the same sheet again: nothing changes
    assert _fingerprint(store)[0] == recorded

    sheet.write_text(SHEET.replace("P0\tF\t1950\tEUR\tHP:0001250\tGRU", "P0\tF\t1950\tEUR\tHP:0001250\tWITHDRAWN"))
    ingest(store, [tmp_path / "c.vcf"], sheet, build="GRCh37")
    withdrawn, _ = _fingerprint(store)
    assert withdrawn is not None and withdrawn != recorded

    sheet.write_text(SHEET.replace("P2\tF\t1970\tAFR", "P2\tF\t1971\tAFR"))  # a birth year corrected
    ingest(store, [tmp_path / "c.vcf"], sheet, build="GRCh37")
    corrected, _ = _fingerprint(store)
    assert corrected not in (None, recorded, withdrawn)

    sheet.write_text(SHEET)  # back to the first sheet: the same fingerprint (the ledger still starts a new epoch)
    ingest(store, [tmp_path / "c.vcf"], sheet, build="GRCh37")
    assert _fingerprint(store)[0] == recorded

    con = duckdb.connect(str(store))  # a store from before the fingerprint was recorded
    con.execute("DELETE FROM meta WHERE key = 'cohort_sha256'")
    con.close()
    assert _fingerprint(store) == (None, recorded)
