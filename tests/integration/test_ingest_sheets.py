"""Sample sheets as institutions export them, through the real ``genogate-node ingest`` command.

An export with its own column names (``sample.id``, ``Sex``), spellings (``male``, ``2``, ISO dates, DUO ids),
extra columns and more participants than the VCF holds, mapped with ``--sheet-columns`` or ``--sheet-map``,
builds the same store as our own sheet of the VCF's samples; the report counts the extra rows, the ignored
columns and the normalised cells; a changed mapping is a changed sheet; an ambiguous cell, even in a row the
VCF does not use, is refused naming the file, line and column and leaves nothing behind. On real data: the
1000 Genomes PED file (3,691 people, PLINK sex codes) as the sheet of the 1,126-sample subset.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.conftest import SUBSET, require_shared, write_subset_sheet
from tests.integration.conftest import (
    BASE_RECORDS,
    dir_state,
    freq,
    ingest_args,
    ingest_ok,
    lock_name,
    run_node,
    sheet_text,
    vcf_text,
)

PREFIX = "genogate-node: error: "
MAPPING = "sample_id=sample.id,sex=Sex,birth_year=YOB,ancestry=Pop,phenotypes=HPO,consent=Consent"
EXPORT_HEADER = ["Site", "sample.id", "Sex", "YOB", "Pop", "HPO", "Consent", "Notes"]
# The four samples of the VCF as tests.integration.conftest.SHEET_ROWS states them, spelled as an institution
# would, with two participants whose genotypes are in another file, in another order.
EXPORT_ROWS = [
    ["A", "S9", "2", "1966-07-01", "afr", "NA", "DUO:0000042", "other batch"],
    ["A", "S3", "F", "1990-05-17", "eur", "HP:0001250, ICD10:C50", "ds-c50", ""],
    ["A", "S1", "1", "1980", "EUR", "hp:0001250", "gru", "re-consented 2019"],
    ["B", "S4", "female", "NA", "EAS", "", "GRU|npu", ""],
    ["B", "S2", "Male", "1975.0", "AFR", "NA", "duo:0000006", ""],
    ["B", "S8", "0", "", "", "", "", "no consent form"],
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def export_text(rows: list[list[str]] = EXPORT_ROWS) -> str:
    return "\n".join("\t".join(r) for r in [EXPORT_HEADER, *rows]) + "\n"


def samples(store: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute("SELECT * FROM samples ORDER BY sid").fetchall()
    finally:
        con.close()


def ingest_run(store: Path, vcf: Path, sheet: Path, key: Path, *extra: object, cwd: Path) -> tuple[int, str, str]:
    res = run_node(*ingest_args(store, [vcf], sheet, key), *extra, cwd=cwd)
    return res.returncode, res.stdout, res.stderr


def test_an_institution_export_builds_the_store_our_own_sheet_builds(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    key = tmp_path / "pseudonym.key"
    ours = tmp_path / "ours.duckdb"
    ingest_ok(ours, [vcf], write(tmp_path / "sheet.tsv", sheet_text()), cwd=tmp_path, key=key)

    theirs = tmp_path / "theirs.duckdb"
    export = write(tmp_path / "export.tsv", export_text())
    code, out, err = ingest_run(theirs, vcf, export, key, "--sheet-columns", MAPPING, cwd=tmp_path)
    assert code == 0, err
    assert samples(theirs) == samples(ours)
    assert freq(theirs, cwd=tmp_path, by="sex") == freq(ours, cwd=tmp_path, by="sex")
    lines = out.splitlines()
    assert "samples      4 (0 withdrawn)" in lines
    assert "sheet        6 rows; 2 for samples in none of the files (not stored)" in lines
    assert "ignored      2 columns of the sheet: Site, Notes" in lines
    assert f"columns      {MAPPING.replace(',', ', ')}" in lines
    # every cell whose spelling differs from the stored one, in all six rows (every row is read)
    assert "normalised   20 cells: sex 5, birth_year 4, ancestry 2, phenotypes 4, consent 5" in lines


def test_a_sheet_map_file_is_the_same_mapping_and_a_new_mapping_is_a_new_sheet(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    key = tmp_path / "pseudonym.key"
    export = write(tmp_path / "export.tsv", export_text())
    by_option, by_file = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    assert ingest_run(by_option, vcf, export, key, "--sheet-columns", MAPPING, cwd=tmp_path)[0] == 0
    toml = "[columns]\n" + "".join(f'{o} = "{t}"\n' for o, t in (e.split("=") for e in MAPPING.split(",")))
    sheet_map = write(tmp_path / "map.toml", toml)
    code, _, err = ingest_run(by_file, vcf, export, key, "--sheet-map", sheet_map, cwd=tmp_path)
    assert code == 0, err
    assert samples(by_file) == samples(by_option)

    node_state = dir_state(tmp_path)
    code, out, _ = ingest_run(by_file, vcf, export, key, "--sheet-map", sheet_map, cwd=tmp_path)
    assert (code, out.strip()) == (0, f"{by_file}: already up to date; nothing changed")
    assert dir_state(tmp_path) == node_state
    # the same file read with another mapping: Consent no longer mapped (an explicit "none"), so no codes
    code, out, err = ingest_run(
        by_file, vcf, export, key, "--sheet-map", sheet_map, "--sheet-columns", "consent=", cwd=tmp_path
    )
    assert code == 0, err
    assert "sheet        participant details updated" in out
    assert {str(row[6]) for row in samples(by_file)} == {"[]"}


def test_an_ambiguous_cell_in_an_unused_row_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    node = tmp_path / "node"
    node.mkdir()
    store = node / "store.duckdb"
    rows = [list(r) for r in EXPORT_ROWS]
    rows[5][3] = "03/04/1970"  # S8, not in the VCF: still a bad sheet
    export = write(tmp_path / "export.tsv", export_text(rows))
    res = run_node(*ingest_args(store, [vcf], export), "--sheet-columns", MAPPING, cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert res.stderr.splitlines()[-1] == (
        f"{PREFIX}{export}:7: column YOB (birth_year): '03/04/1970': day and month order is ambiguous; write a "
        "year (1984) or an ISO date (1984-03-12)"
    )
    assert set(dir_state(node)) <= {lock_name(store)}  # no store, no temporary build, no key

    ingest_ok(store, [vcf], write(tmp_path / "sheet.tsv", sheet_text()), cwd=tmp_path)
    before = dir_state(node)
    res = run_node(*ingest_args(store, [vcf], export), "--sheet-columns", MAPPING, cwd=tmp_path)
    assert res.returncode == 4, res.stderr
    assert dir_state(node) == before


def test_an_age_column_with_the_year_it_was_recorded(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    export = write(tmp_path / "ages.csv", "ID,Age,Gender\nS1,44,M\nS2,49.0,M\nS3,34,F\nS4,NA,F\nS7,70,F\n")
    store = tmp_path / "s.duckdb"
    res = run_node(
        *ingest_args(store, [vcf], export), "--sheet-columns", "sample_id=ID,age=Age,sex=Gender", cwd=tmp_path
    )
    assert res.returncode == 2
    assert "an age column needs the year the ages were recorded" in res.stderr.splitlines()[-1]
    res = run_node(
        *ingest_args(store, [vcf], export),
        *("--sheet-columns", "sample_id=ID,age=Age,sex=Gender", "--sheet-age-year", "2024"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(str(r[3]) for r in samples(store)) == ["1975", "1980", "1990", "None"]
    assert "normalised   5 cells: age 5" in res.stdout.splitlines()


def test_a_vcf_sample_missing_from_the_sheet_is_still_refused(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    export = write(tmp_path / "export.tsv", export_text([r for r in EXPORT_ROWS if r[1] != "S2"]))
    res = run_node(*ingest_args(tmp_path / "s.duckdb", [vcf], export), "--sheet-columns", MAPPING, cwd=tmp_path)
    assert res.returncode == 4
    assert res.stderr.splitlines()[-1] == f"{PREFIX}{vcf}: 1 sample is not in the sample sheet: S2"


def test_a_bad_mapping_option_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    vcf = write(tmp_path / "base.vcf", vcf_text(BASE_RECORDS))
    export = write(tmp_path / "export.tsv", export_text())
    store = tmp_path / "s.duckdb"
    res = run_node(*ingest_args(store, [vcf], export), "--sheet-columns", "sample_id=sample.id,age=Age", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1].startswith(
        f"{PREFIX}--sheet-columns: an age column needs the year the ages were recorded (--sheet-age-year"
    )
    res = run_node(*ingest_args(store, [vcf], export), "--sheet-columns", "sample_id=sample.id", cwd=tmp_path)
    assert res.returncode == 4
    assert "column 'Sex' looks like our sex column but is not read as one" in res.stderr.splitlines()[-1]
    assert not store.exists()


def test_the_1000_genomes_ped_file_is_the_sheet_of_the_subset(tmp_path: Path) -> None:
    """3,691 people in the PED file (PLINK sex codes 1/2, a Phenotype column of 0s), 1,126 in the VCF."""
    require_shared()
    ped = SUBSET.parent / "metadata" / "integrated_call_samples_v2.20130502.ALL.ped"
    vcf = SUBSET / "1KG_phase3_subset_chr22.vcf.gz"
    key = tmp_path / "pseudonym.key"
    ours = tmp_path / "ours.duckdb"
    ingest_ok(ours, [vcf], write_subset_sheet(tmp_path / "sheet.tsv"), cwd=tmp_path, key=key)
    theirs = tmp_path / "ped.duckdb"
    code, out, err = ingest_run(
        theirs, vcf, ped, key, "--sheet-columns", "sample_id=Individual ID,sex=Gender,phenotypes=", cwd=tmp_path
    )
    assert code == 0, err
    assert "sheet        3,691 rows; 2565 for samples in none of the files (not stored)" in out.splitlines()
    assert "normalised   3,691 cells: sex 3691" in out.splitlines()
    assert [r[:3] for r in samples(theirs)] == [r[:3] for r in samples(ours)]  # sid, pseudonym, sex
    assert freq(theirs, cwd=tmp_path, by="sex") == freq(ours, cwd=tmp_path, by="sex")
