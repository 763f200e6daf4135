"""BED files of covered regions (exome targets, array content): where a store's data was called.

Read by ingest (``node.ingest.pipeline``) and by a serving node whose config names ``covered_bed``
(``node.catalogue``); so this module imports nothing from ``node.ingest`` (a serving node never loads the
ingest package and its VCF readers).

BED intervals are 0-based and half-open (``chr1 99 200`` is positions 100..200); ``read_bed`` returns them as
1-based inclusive ``Region``s on canonical contigs (``genogate.genome``), sorted and with overlapping or
adjacent intervals merged. ``track``, ``browser`` and ``#`` lines and blank lines are skipped; columns past
the third (name, score, strand, ...) are ignored. A bad line is an ``IngestError`` naming file and line.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

from genogate.errors import IngestError
from genogate.genome import BuildError, canonical_contig, contig_sort_key
from genogate.query import MAX_POS, Region


def read_bed(path: Path, build: str) -> list[Region]:
    """The merged covered regions of a BED file (plain or gzip) whose contigs are on ``build``."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(str(path), "no such file")
    intervals: list[tuple[str, int, int]] = []
    names: dict[str, str] = {}
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode().rstrip("\r\n")
                except UnicodeDecodeError:
                    raise IngestError(where, "not text (a BED file is tab-separated text)") from None
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.split("\t")
                if len(fields) < 3:
                    fields = line.split()  # some tools write space-separated BED
                if len(fields) < 3:
                    raise IngestError(where, "a BED line needs at least 3 columns: chrom, start, end")
                chrom, start, end = fields[0], fields[1].strip(), fields[2].strip()
                if not start.isdigit() or not end.isdigit():
                    raise IngestError(where, f"start and end must be whole numbers (got {start[:20]!r}, {end[:20]!r})")
                a, b = int(start), int(end)
                if a >= b:
                    raise IngestError(where, f"end ({b}) must be greater than start ({a}): BED is 0-based, half-open")
                if b > MAX_POS:
                    raise IngestError(where, f"end ({b}) is past the largest position {MAX_POS}")
                canon = names.get(chrom)
                if canon is None:
                    try:
                        canon = names[chrom] = canonical_contig(chrom, build)
                    except BuildError as exc:
                        raise IngestError(where, str(exc)) from None
                    if not _valid_name(canon):
                        raise IngestError(where, f"contig name {chrom[:40]!r} must be 1-64 letters, digits, '_' or '.'")
                intervals.append((canon, a + 1, b))
    except (OSError, EOFError) as exc:
        raise IngestError(str(path), f"cannot read the file ({exc})") from None
    if not intervals:
        raise IngestError(str(path), "the BED file holds no intervals")
    return merge(intervals)


def merge(intervals: list[tuple[str, int, int]]) -> list[Region]:
    """1-based inclusive intervals sorted by contig and start, overlapping or adjacent ones merged."""
    out: list[Region] = []
    cur: tuple[str, int, int] | None = None
    for chrom, a, b in sorted(intervals, key=lambda t: (contig_sort_key(t[0]), t[1], t[2])):
        if cur is not None and chrom == cur[0] and a <= cur[2] + 1:
            cur = (chrom, cur[1], max(cur[2], b))
            continue
        if cur is not None:
            out.append(Region(*cur))
        cur = (chrom, a, b)
    if cur is not None:
        out.append(Region(*cur))
    return out


def _valid_name(name: str) -> bool:
    return all(c.isalnum() or c in "_." for c in name) and 1 <= len(name) <= 64


def _open(path: Path) -> BinaryIO:
    """Plain or gzip (BGZF too) as one byte stream (as ``node.ingest.vcftext.open_binary``)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]
