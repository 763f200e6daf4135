"""The command lines print strict JSON: a non-finite number (an odds ratio's missing standard deviation, an
interval end that overflowed to infinity) is ``null``, never ``NaN`` or ``Infinity``."""

from __future__ import annotations

import json
import math

import pytest

from genogate.cliutil import print_json, strict


def _refuse(name: str) -> None:
    raise AssertionError(f"non-strict JSON constant {name}")


def test_non_finite_numbers_become_null_at_any_depth() -> None:
    doc = {"a": math.nan, "b": [math.inf, 1.5, (-math.inf, 0.0)], "c": {"d": 2, "e": "inf", "f": None}}
    assert strict(doc) == {"a": None, "b": [None, 1.5, [None, 0.0]], "c": {"d": 2, "e": "inf", "f": None}}


@pytest.mark.parametrize("value", [0.0, -0.0, 1e308, -1e-308, 5e-324])
def test_finite_numbers_are_kept_exactly(value: float) -> None:
    out = strict({"v": value})["v"]
    assert out == value and math.copysign(1.0, out) == math.copysign(1.0, value)


def test_print_json_output_parses_under_a_strict_parser(capsys: pytest.CaptureFixture[str]) -> None:
    print_json({"ci95_low": 0.0, "ci95_high": math.inf, "noise_stddev": math.nan, "estimate": 1.25})
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=_refuse) == {
        "ci95_low": 0.0,
        "ci95_high": None,
        "noise_stddev": None,
        "estimate": 1.25,
    }
