"""DUO consent codes: normalisation and the purpose matching that decides who a study may count."""

from __future__ import annotations

import pytest

from genogate.duo import admits, normalise_code, normalise_codes, parse_purpose


def test_ids_and_short_codes_normalise_alike() -> None:
    assert normalise_code("DUO:0000042") == normalise_code("gru") == "GRU"
    assert normalise_code("ds-c50") == "DS-C50"
    assert normalise_codes(["NPU", "GRU", "GRU"]) == ("GRU", "NPU")
    for bad in ("XYZ", "DS", "DUO:9999999"):
        with pytest.raises(ValueError):
            normalise_code(bad)
    with pytest.raises(ValueError, match="only consent code"):
        normalise_codes(["WITHDRAWN", "GRU"])


@pytest.mark.parametrize(
    ("consent", "purpose", "admitted"),
    [
        (["GRU"], "GRU", True),
        (["GRU"], "HMB", True),
        (["GRU"], "DS-C50", True),
        (["GRU"], "POA", True),
        (["HMB"], "HMB", True),
        (["HMB"], "DS-C50", True),
        (["HMB"], "GRU", False),  # a general-research study is not necessarily health research
        (["HMB"], "POA", False),  # DUO's HMB excludes population-origins research
        (["DS-C50"], "DS-C50", True),
        (["DS-C50"], "DS-C61", False),
        (["DS-C50"], "HMB", False),
        (["POA"], "HMB", False),
        (["NRES"], "POA", True),
        (["WITHDRAWN"], "GRU", False),
        ([], "GRU", False),
        (["NPU"], "GRU", False),  # a modifier alone grants no use
        (["GRU", "NPU"], "GRU", False),  # not-for-profit only: the study must declare it
        (["GRU", "NPU"], "GRU;NPU", True),
        (["GRU", "NCU", "IRB"], "HMB;NCU", False),
        (["GRU", "NCU", "IRB"], "HMB;NCU;IRB", True),
        (["GRU", "NPOA"], "POA", False),
        (["GRU", "NPOA"], "HMB", True),
        (["GRU", "GSO"], "HMB", True),  # every genogate query is a genetic study
        (["GRU", "NPUNCU"], "GRU;NPU;NCU", True),
        (["GRU", "NPUNCU"], "GRU;NPU", False),
        (["HMB", "DS-C50"], "DS-C61", True),  # HMB covers any disease-specific study
    ],
)
def test_admits(consent: list[str], purpose: str, admitted: bool) -> None:
    assert admits(normalise_codes(consent) if consent else (), parse_purpose(purpose)) is admitted


def test_purpose_must_start_with_a_permission() -> None:
    for bad in ("NPU", "", "WITHDRAWN", "HMB;GRU"):
        with pytest.raises(ValueError):
            parse_purpose(bad)
