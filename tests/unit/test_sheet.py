"""Sample sheets as institutions export them: column mappings, the normalisation table, and every ambiguity
refused naming the file, the line and the column (``node.ingest.sheet``, ``sheet_columns``, ``sheet_values``)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genogate.errors import IngestError, UsageError
from node.ingest import sheet_values as values
from node.ingest.sheet import SheetColumns, load_sheet, read_sheet

THIS_YEAR = _dt.date.today().year


def write(tmp_path: Path, text: str, name: str = "sheet.tsv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def tsv(*rows: list[str]) -> str:
    return "".join("\t".join(r) + "\n" for r in rows)


def refused(path: Path, columns: SheetColumns | None = None) -> IngestError:
    with pytest.raises(IngestError) as info:
        read_sheet(path, columns)
    return info.value


# The normalisation table -----------------------------------------------------------------------------------

SEX_TABLE = {
    **dict.fromkeys(["M", "m", "male", "Male", "MALE", "1"], "M"),
    **dict.fromkeys(["F", "f", "female", "Female", "2"], "F"),
    **dict.fromkeys(["U", "u", "unknown", "Unknown", "0", "NA", "na", "N/A", ""], "U"),
}


@pytest.mark.parametrize(("text", "stored"), sorted(SEX_TABLE.items()))
def test_every_documented_sex_spelling(text: str, stored: str) -> None:
    assert values.sex(text) == stored


@given(st.text(max_size=8))
def test_a_sex_is_stored_only_from_a_documented_spelling(text: str) -> None:
    if text.lower() in {k.lower() for k in SEX_TABLE}:
        assert values.sex(text) in "MFU"
    else:
        with pytest.raises(ValueError, match="is not a sex this store records"):
            values.sex(text)


@given(st.integers(1850, THIS_YEAR), st.integers(1, 12), st.integers(1, 28), st.sampled_from(["y", "y.0", "ym", "ymd"]))
def test_a_year_or_an_iso_date_gives_the_year(year: int, month: int, day: int, form: str) -> None:
    text = {"y": f"{year}", "y.0": f"{year}.0", "ym": f"{year}-{month:02}", "ymd": f"{year}-{month:02}-{day:02}"}[form]
    assert values.birth_year(text, THIS_YEAR) == year


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("12/03/1984", "day and month order is ambiguous"),
        ("03.12.1984", "day and month order is ambiguous"),
        ("84", "which century"),
        ("1984-02-30", "not a real date"),
        ("1984-13", "not a real date"),
        ("nineteen", "not a four-digit year or an ISO date"),
        ("1849", "outside 1850-"),
        (str(THIS_YEAR + 1), "outside 1850-"),
    ],
)
def test_an_ambiguous_or_impossible_birth_year_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        values.birth_year(text, THIS_YEAR)


@given(st.integers(0, 150), st.integers(2000, THIS_YEAR))
def test_an_age_at_a_reference_year_gives_the_birth_year(age: int, reference: int) -> None:
    if reference - age < 1850:
        with pytest.raises(ValueError, match="outside"):
            values.birth_year_from_age(str(age), reference, THIS_YEAR)
    else:
        assert values.birth_year_from_age(str(age), reference, THIS_YEAR) == reference - age


@pytest.mark.parametrize("text", ["-1", "151", "34.5", "forty"])
def test_an_age_that_is_not_whole_years_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an age in whole years"):
        values.birth_year_from_age(text, 2020, THIS_YEAR)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("GRU", ("GRU",)),
        ("gru", ("GRU",)),
        ("DUO:0000042", ("GRU",)),
        ("duo:0000042", ("GRU",)),
        ("DUO_0000006", ("HMB",)),
        ("http://purl.obolibrary.org/obo/DUO_0000042", ("GRU",)),
        ("hmb, npu", ("HMB", "NPU")),
        ("HMB|NPU", ("HMB", "NPU")),
        ("HMB NPU", ("HMB", "NPU")),
        ("ds-c50;IRB", ("DS-C50", "IRB")),
        ("NA", ()),
        ("", ()),
        ("withdrawn", ("WITHDRAWN",)),
    ],
)
def test_consent_codes_in_any_case_with_or_without_the_duo_prefix(text: str, stored: tuple[str, ...]) -> None:
    assert values.consent(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("HP:0001250;ICD10:C50", ("HP:0001250", "ICD10:C50")),
        ("HP:0001250, ICD10:C50", ("HP:0001250", "ICD10:C50")),
        ("HP:0001250|hp:0001250", ("HP:0001250",)),
        ("icd10:c509", ("ICD10:C50.9",)),
        ("NA", ()),
    ],
)
def test_phenotype_lists_with_common_separators(text: str, stored: tuple[str, ...]) -> None:
    assert values.phenotypes(text) == stored


@given(st.lists(st.sampled_from(["HP:0001250", "ICD10:C50", "HP:0004322"]), min_size=1), st.sampled_from(";,| "))
def test_any_separator_gives_the_same_terms(terms: list[str], sep: str) -> None:
    assert values.phenotypes(sep.join(terms)) == tuple(sorted(set(terms)))


# Mapping an institution's columns ------------------------------------------------------------------------


def test_an_institution_sheet_mapped_column_by_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        tsv(
            ["sample.id", "Sex", "YOB", "Population", "HPO", "Consent", "Tissue"],
            ["A1", "male", "1984-03-12", "eur", "HP:0001250", "duo:0000042", "blood"],
            ["A2", "2", "1990", "AFR", "", "HMB,NPU", "saliva"],
            ["A3", "NA", "NA", "NA", "NA", "NA", "blood"],
        ),
    )
    columns = SheetColumns.parse(
        "sample_id=sample.id,sex=Sex,birth_year=YOB,ancestry=Population,phenotypes=HPO,consent=Consent"
    )
    sheet = load_sheet(path, columns)
    a1, a2, a3 = sheet.participants
    assert (a1.sample_id, a1.sex, a1.birth_year, a1.ancestry, a1.phenotypes, a1.consent) == (
        "A1",
        "M",
        1984,
        "EUR",
        ("HP:0001250",),
        ("GRU",),
    )
    assert (a2.sex, a2.birth_year, a2.consent) == ("F", 1990, ("HMB", "NPU"))
    assert (a3.sex, a3.birth_year, a3.ancestry, a3.phenotypes, a3.consent) == ("U", None, None, (), ())
    assert sheet.ignored == ("Tissue",)
    # male, 2, NA (sex); 1984-03-12, NA (birth year); eur, NA; NA (phenotypes); duo:0000042, HMB,NPU, NA
    assert dict(sheet.normalised) == {"sex": 3, "birth_year": 2, "ancestry": 2, "phenotypes": 1, "consent": 3}
    report = "\n".join(sheet.report())
    assert "sample_id=sample.id" in report and "ignored      1 column of the sheet: Tissue" in report
    assert "normalised   11 cells" in report


def test_a_mapping_file_an_age_column_and_a_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path, '\ufeff"ID","Age","Gender"\n"P1","34","F"\n"P2","NA","M"\n', name="export.csv"
    )  # Excel's byte-order mark, R's quotes
    mapping = write(
        tmp_path,
        '[columns]\nsample_id = "ID"\nage = "Age"\nsex = "Gender"\n[age]\nreference_year = 2020\n',
        name="map.toml",
    )
    p1, p2 = read_sheet(path, SheetColumns.load(mapping))
    assert (p1.sample_id, p1.birth_year, p1.sex) == ("P1", 1986, "F")
    assert (p2.birth_year, p2.sex) == (None, "M")


def test_our_own_names_need_no_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, tsv(["sample_id", "sex"], ["S1", "female"]))
    assert read_sheet(path)[0].sex == "F"


@pytest.mark.parametrize("typo", ["consents", "Consent", "phenotpyes", "birth-year", "Gender", "DOB"])
def test_a_column_that_looks_like_ours_is_refused_not_ignored_even_without_a_mapping(tmp_path: Path, typo: str) -> None:
    exc = refused(write(tmp_path, tsv(["sample_id", typo, "Tissue"], ["S1", "GRU", "blood"])))
    assert exc.where == f"{tmp_path / 'sheet.tsv'}:1"
    assert exc.why.startswith(f"column {typo!r} looks like our ") and "but is not read as one" in exc.why


def test_other_columns_are_ignored_and_reported_even_without_a_mapping(tmp_path: Path) -> None:
    sheet = load_sheet(write(tmp_path, tsv(["sample_id", "sex", "Tissue", "Site", "Page"], ["S1", "M", "x", "y", "z"])))
    assert sheet.ignored == ("Tissue", "Site", "Page") and sheet.participants[0].sex == "M"


def test_a_missing_mapped_column_is_named_with_the_columns_present(tmp_path: Path) -> None:
    exc = refused(
        write(tmp_path, tsv(["sample.id", "Gender"], ["S1", "M"])), SheetColumns.parse("sample_id=sample.id,sex=Sex")
    )
    assert exc.where.endswith(":1")
    assert exc.why == "column 'Sex' (mapped to sex) is not in the header; it has 'sample.id', 'Gender'"


def test_no_sample_id_column_says_how_to_name_one(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, tsv(["sample.id", "sex"], ["S1", "M"])))
    assert "the header has no sample_id column" in exc.why and "--sheet-columns sample_id=COLUMN" in exc.why


def test_an_unmapped_look_alike_column_is_refused_not_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, tsv(["sample.id", "Gender", "Notes"], ["S1", "M", "x"]))
    exc = refused(path, SheetColumns.parse("sample_id=sample.id"))
    assert exc.why.startswith("column 'Gender' looks like our sex column but is not read as one")
    # saying the sheet has no sex column makes it an ignored column
    sheet = load_sheet(path, SheetColumns.parse("sample_id=sample.id,sex="))
    assert sheet.ignored == ("Gender", "Notes") and sheet.participants[0].sex == "U"


def test_an_age_column_alone_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, tsv(["sample.id", "Age"], ["S1", "40"]))
    exc = refused(path, SheetColumns.parse("sample_id=sample.id"))
    assert "column 'Age' looks like our age column" in exc.why
    with pytest.raises(UsageError, match="an age column needs the year the ages were recorded"):
        SheetColumns.parse("sample_id=sample.id,age=Age")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("sample_id", "is not OURS=THEIRS"),
        ("sample=sample.id", "'sample' is not one of our columns"),
        ("sample_id=a,sample_id=b", "sample_id is mapped twice"),
        ("sample_id=x,ancestry=x", "column 'x' is mapped to two of our columns"),
        ("sample_id=x,age=A,birth_year=B", "map birth_year or age, not both"),
    ],
)
def test_a_bad_sheet_columns_option_is_a_usage_error(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        SheetColumns.parse(text, age_reference_year=2020 if "age=" in text else None)


@pytest.mark.parametrize(
    ("toml", "why"),
    [
        ("[columns\n", "not valid TOML"),
        ('[colums]\nsample_id = "x"\n', "unknown table(s) colums"),
        ("[columns]\nsample_id = 3\n", "must be a column name in quotes"),
        ('[columns]\nsample_id = "x"\n[age]\nreference_year = 2020\n', "no age column is mapped"),
        ('[columns]\nsample_id = "x"\n[format]\ndelimiter = " "\n', "delimiter must be"),
    ],
)
def test_a_bad_sheet_map_names_the_file(tmp_path: Path, toml: str, why: str) -> None:
    path = write(tmp_path, toml, name="map.toml")
    with pytest.raises(IngestError) as info:
        SheetColumns.load(path)
    assert info.value.where == str(path) and why in info.value.why


# Ambiguities refused with the line and the column -------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_column", "cell", "why"),
    [
        ("Sex", "X", "column Sex (sex): 'X' is not a sex this store records"),
        ("Sex", "-9", "column Sex (sex): '-9' is not a sex"),
        ("YOB", "03/12/1984", "column YOB (birth_year): '03/12/1984': day and month order is ambiguous"),
        ("YOB", "84", "column YOB (birth_year): '84' is not a four-digit year (which century?)"),
        ("Consent", "GRU;FOO", "column Consent (consent): unknown consent code 'FOO'"),
        ("Consent", "DUO:GRU", "column Consent (consent): unknown consent code 'DUO:GRU'"),
        ("HPO", "seizures", "column HPO (phenotypes): phenotype term 'seizures' is not PREFIX:CODE"),
        ("Pop", "E U R", "column Pop (ancestry): 'E U R': an ancestry label"),
    ],
)
def test_each_ambiguity_is_refused_with_file_line_and_column(
    tmp_path: Path, cell_column: str, cell: str, why: str
) -> None:
    header = ["sample.id", "Sex", "YOB", "Pop", "HPO", "Consent"]
    good = ["S1", "M", "1980", "EUR", "", "GRU"]
    bad = ["S2", "F", "1981", "AFR", "", "HMB"]
    bad[header.index(cell_column)] = cell
    path = write(tmp_path, tsv(header, good, bad))
    columns = SheetColumns.parse(
        "sample_id=sample.id,sex=Sex,birth_year=YOB,ancestry=Pop,phenotypes=HPO,consent=Consent"
    )
    exc = refused(path, columns)
    assert exc.where == f"{path}:3"
    assert exc.why.startswith(why), exc.why


def test_duplicate_sample_ids_are_refused(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, tsv(["sample_id"], ["S1"], ["S2"], ["S1"])))
    assert (exc.where.rsplit(":", 1)[1], exc.why) == ("4", "sample id 'S1' appears twice (first on line 2)")


def test_a_row_with_too_few_fields_or_unbalanced_quotes(tmp_path: Path) -> None:
    exc = refused(write(tmp_path, tsv(["sample_id", "sex"], ["S1"])))
    assert exc.where.endswith(":2") and exc.why == "expected 2 tab-separated fields, found 1"
    exc = refused(write(tmp_path, 'sample_id,sex\n"S1,M\n', name="q.csv"))
    assert exc.where.endswith(":2") and exc.why.startswith("unbalanced double quotes")


def test_trailing_empty_header_cells_and_fields_are_a_spreadsheet_artefact(tmp_path: Path) -> None:
    # as the 1000 Genomes panel file is: a header with two trailing tabs, rows without them
    path = write(tmp_path, "sample\tpop\tsuper_pop\tgender\t\t\nHG1\tGBR\tEUR\tmale\nHG2\tYRI\tAFR\tfemale\t\t\n")
    p1, p2 = read_sheet(path, SheetColumns.parse("sample_id=sample,ancestry=super_pop,sex=gender"))
    assert (p1.sex, p1.ancestry, p2.sex, p2.ancestry) == ("M", "EUR", "F", "AFR")
    exc = refused(write(tmp_path, "sample_id\tsex\nS1\tM\tx\n"))
    assert exc.why == "expected 2 tab-separated fields, found 3"
