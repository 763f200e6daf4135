"""One canonical identity for genomic coordinates: genome builds, contig names and minimal alleles.

Every place that names a variant (ingest, the store, a query, the same-question cache key, output) goes
through this module, so that every spelling of one allele is one variant:

* **Contigs** are canonicalised to the GRC's own names, as Beacon v2 and Ensembl spell them: ``1``..``22``,
  ``X``, ``Y`` and ``MT``. ``chr1``, ``Chr1``, ``1``, ``chrX``/``23``, ``chrY``/``24``, ``chrM``/``chrMT``/
  ``M``, and the RefSeq accessions of the build (``NC_000001.10`` on GRCh37, ``NC_000001.11`` on GRCh38) all
  name the same contig. Alternate, unplaced and decoy contigs (``hs37d5``, ``chr1_KI270706v1_random``,
  ``GL000192.1``) are kept exactly as named: nothing here guesses their equivalences.
* **Alleles** are upper-cased and trimmed to their minimal representation: the common suffix is dropped,
  then the common prefix while both alleles keep a base (VCF's anchor base), moving POS right by what was
  dropped, as ``bcftools norm -m- -f`` trims a split allele (left-alignment, which needs the reference
  sequence, is ``node.ingest``'s ``--reference``).
* **Builds** are ``GRCh37`` and ``GRCh38``. ``infer_build`` reads them from a VCF header's ``##reference``
  and ``##contig`` lines (chr1 is 249,250,621 bp in GRCh37 and 248,956,422 in GRCh38). Liftover between
  builds is out of scope: a node of one build refuses questions about another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

BUILDS = ("GRCh37", "GRCh38")
PRIMARY = (*(str(i) for i in range(1, 23)), "X", "Y", "MT")

# Lengths of the primary assembly's chromosomes (GRC releases GRCh37.p13 / GRCh38.p14; MT is rCRS in both).
LENGTHS: dict[str, dict[str, int]] = {
    "GRCh37": dict(
        zip(
            PRIMARY,
            (
                249250621, 243199373, 198022430, 191154276, 180915260, 171115067, 159138663, 146364022,
                141213431, 135534747, 135006516, 133851895, 115169878, 107349540, 102531392, 90354753,
                81195210, 78077248, 59128983, 63025520, 48129895, 51304566, 155270560, 59373566, 16569,
            ),
            strict=True,
        )
    ),
    "GRCh38": dict(
        zip(
            PRIMARY,
            (
                248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973, 145138636,
                138394717, 133797422, 135086622, 133275309, 114364328, 107043718, 101991189, 90338345,
                83257441, 80373285, 58617616, 64444167, 46709983, 50818468, 156040895, 57227415, 16569,
            ),
            strict=True,
        )
    ),
}  # fmt: skip

# RefSeq accession versions of the primary chromosomes (NC_0000NN.V; MT is NC_012920.1 in both builds).
_REFSEQ_VERSIONS: dict[str, tuple[int, ...]] = {
    "GRCh37": (10, 11, 11, 11, 9, 11, 13, 10, 11, 10, 9, 11, 10, 8, 9, 9, 10, 9, 9, 10, 8, 10, 10, 9),
    "GRCh38": (11, 12, 12, 12, 10, 12, 14, 11, 12, 11, 10, 12, 11, 9, 10, 10, 11, 10, 10, 11, 9, 11, 11, 10),
}
REFSEQ: dict[str, dict[str, str]] = {
    build: {
        **{name: f"NC_{i + 1:06d}.{v}" for i, (name, v) in enumerate(zip(PRIMARY[:24], versions, strict=True))},
        "MT": "NC_012920.1",
    }
    for build, versions in _REFSEQ_VERSIONS.items()
}
_FROM_REFSEQ: dict[str, tuple[str, frozenset[str]]] = {}
for _build, _table in REFSEQ.items():
    for _name, _acc in _table.items():
        _, _builds = _FROM_REFSEQ.get(_acc, (_name, frozenset()))
        _FROM_REFSEQ[_acc] = (_name, _builds | {_build})

_ALIASES = {**{n: n for n in PRIMARY}, "23": "X", "24": "Y", "M": "MT"}
_CHR_RE = re.compile(r"^chr", re.IGNORECASE)

# Words in a ##reference line (or a ##contig's assembly=) that name a build.
_BUILD_WORDS = (
    ("GRCh38", re.compile(r"grch38|hg38|\bb38\b|GCA_000001405\.(1[5-9]|2\d)|hs38|assembly38", re.IGNORECASE)),
    (
        "GRCh37",
        re.compile(r"grch37|hg19|\bb37\b|hs37|human_g1k_v37|GCA_000001405\.([1-9]|1[0-4])\b|assembly19", re.IGNORECASE),
    ),
    ("NCBI36", re.compile(r"ncbi36|hg18|\bb36\b|human_b36", re.IGNORECASE)),
)


class BuildError(ValueError):
    """A header or a name that contradicts itself or the build (the message says what and why)."""


def canonical_contig(name: str, build: str | None = None) -> str:
    """The canonical name of a contig spelling (see the module docstring); other contigs as named.

    A RefSeq accession of a primary chromosome names its build: with ``build`` given, an accession of
    another build is a ``BuildError`` (``NC_000001.10`` is GRCh37's chromosome 1, not GRCh38's).
    """
    acc = _FROM_REFSEQ.get(name.upper())
    if acc is not None:
        canon, builds = acc
        if build is not None and build not in builds:
            raise BuildError(f"{name} is a {'/'.join(sorted(builds))} accession, not {build}")
        return canon
    bare = _CHR_RE.sub("", name)
    return _ALIASES.get(bare.upper(), name) if bare else name


def is_primary(name: str) -> bool:
    return name in _ALIASES.values()


def minimal(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """The minimal representation of one REF/ALT pair (upper-cased; symbolic ALTs untouched)."""
    ref = ref.upper()
    if alt.startswith("<") or alt == "*":
        return pos, ref, alt
    alt = alt.upper()
    n = 0  # common suffix, keeping at least one base of each
    while n < min(len(ref), len(alt)) - 1 and ref[-1 - n] == alt[-1 - n]:
        n += 1
    if n:
        ref, alt = ref[:-n], alt[:-n]
    k = 0  # then the common prefix, keeping the anchor base
    while k < min(len(ref), len(alt)) - 1 and ref[k] == alt[k]:
        k += 1
    return pos + k, ref[k:], alt[k:]


def infer_build(contigs: Mapping[str, int | None], reference: str | None = None) -> str | None:
    """The build a VCF header states, or None when it states none.

    ``contigs`` maps each ``##contig`` ID to its length (None when not given); ``reference`` is the text of
    ``##reference`` (and the contigs' ``assembly=`` values, if any). Every piece of evidence must agree:
    a header whose chr1 has GRCh37's length but whose ``##reference`` says GRCh38 is a ``BuildError``.
    A length that is neither build's (for a primary chromosome) is also a ``BuildError``.
    """
    evidence: dict[str, list[str]] = {}
    if reference:
        for build, pattern in _BUILD_WORDS:
            if pattern.search(reference):
                evidence.setdefault(build, []).append(f"##reference {reference[:80]!r}")
                break
    for name, length in contigs.items():
        acc = _FROM_REFSEQ.get(name.upper())
        if acc is not None and len(acc[1]) == 1:  # a RefSeq accession names its build, length or not
            evidence.setdefault(next(iter(acc[1])), []).append(f"contig {name}")
        if length is None:
            continue
        canon = canonical_contig(name)
        if canon == "MT" and length != LENGTHS["GRCh37"]["MT"]:
            # UCSC hg19's chrM is NC_001807 (16,571 bp), whose positions differ from the rCRS
            raise BuildError(
                f"contig {name} has length {length:,}: not the rCRS mitochondrion (16,569 bp) that GRCh37 and "
                "GRCh38 call MT (hg19's chrM is NC_001807, 16,571 bp, with other positions)"
            )
        if not is_primary(canon) or canon == "MT":
            continue  # MT is the same 16,569 bp rCRS in both builds
        matches = [b for b in BUILDS if LENGTHS[b][canon] == length]
        if not matches:
            raise BuildError(
                f"contig {name} has length {length:,}, which is neither GRCh37's ({LENGTHS['GRCh37'][canon]:,}) "
                f"nor GRCh38's ({LENGTHS['GRCh38'][canon]:,})"
            )
        evidence.setdefault(matches[0], []).append(f"contig {name} length {length:,}")
    if len(evidence) > 1:
        said = "; ".join(f"{b}: {', '.join(why[:2])}" for b, why in sorted(evidence.items()))
        raise BuildError(f"the header names more than one build ({said})")
    return next(iter(evidence), None)


def check_build(build: str) -> str:
    """``build`` if it is one genogate serves, else a ``BuildError`` naming those it serves."""
    if build not in BUILDS:
        raise BuildError(f"genome build {build!r} is not served (genogate serves {', '.join(BUILDS)}; liftover first)")
    return build


def contig_list(names: Iterable[str], limit: int = 30) -> str:
    """Contig names for a message, in natural order, at most ``limit`` of them."""
    ordered = sorted(set(names), key=contig_sort_key)
    more = len(ordered) - limit
    return ", ".join(ordered[:limit]) + (f" and {more} more" if more > 0 else "")


def contig_rank(name: str) -> int:
    """Natural order of a canonical contig name: 1..22 (any number), X, Y, MT, then other contigs."""
    if name.isdigit():
        return int(name)
    return _SPECIAL_RANK.get(name, 2_000_000)


def contig_sort_key(name: str) -> tuple[int, str]:
    """Sort key of a canonical contig name: ``contig_rank``, then the name (other contigs by name)."""
    return (contig_rank(name), name)


_SPECIAL_RANK = {"X": 1_000_001, "Y": 1_000_002, "MT": 1_000_004}
