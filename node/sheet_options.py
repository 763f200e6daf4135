"""The sample-sheet column options (``--sheet-columns``, ``--sheet-map``, ``--sheet-age-year``) shared by the
commands that read an institution's sheet: ``genogate-node ingest`` and ``genogate-node consent update --sheet``
(``node.ingest.sheet_columns`` is the mapping itself; docs/operations/sheets.md its format)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from genogate.errors import UsageError

if TYPE_CHECKING:
    from node.ingest.sheet_columns import SheetColumns


def add(ing: argparse.ArgumentParser) -> None:
    """Add the three options to a command that reads a sample sheet."""
    ing.add_argument(
        "--sheet-columns",
        metavar="OURS=THEIRS,...",
        help="which sheet column holds which of ours, e.g. sample_id=sample.id,sex=Sex,birth_year=YOB "
        "(ours: sample_id sex birth_year age ancestry phenotypes consent; OURS= says the sheet has none); "
        "other columns are ignored and listed in the report (one that looks like ours is refused); overrides "
        "--sheet-map",
    )
    ing.add_argument(
        "--sheet-map",
        type=Path,
        metavar="FILE",
        help='the same mapping as a TOML file: [columns] OURS = "THEIRS", [age] reference_year, [format] '
        "delimiter (see docs/operations/sheets.md)",
    )
    ing.add_argument(
        "--sheet-age-year",
        type=int,
        metavar="YEAR",
        help="with age=COLUMN: the year the ages were recorded (birth year = YEAR - age, one year early for "
        "someone whose birthday had not yet come); an age column without it is refused",
    )


def columns(args: argparse.Namespace) -> SheetColumns | None:
    """The mapping the options give (None: the sheet uses our column names)."""
    from node.ingest.sheet_columns import SheetColumns

    columns = SheetColumns.load(args.sheet_map) if args.sheet_map is not None else None
    if args.sheet_columns is not None or args.sheet_age_year is not None:
        base = columns or SheetColumns()
        given = SheetColumns.parse(args.sheet_columns, age_reference_year=args.sheet_age_year, check=False)
        columns = base.override(given)
        try:
            columns.check()
        except ValueError as exc:
            raise UsageError(f"--sheet-columns: {exc}") from None
    return columns
