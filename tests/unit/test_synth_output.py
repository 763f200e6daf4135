"""The synthetic cohort generator's output, pinned: small runs' sample sheets, truth files, VCF text and
``SynthSource`` streams against digests computed on main before the generator was split into
``node.ingest.synth_spec``/``synth_sites``/``synth_sample``/``synth`` (issue 14 item 7), so the split (and any
later refactor) changes no byte for a fixed seed.

The VCF is compared decompressed (its BGZF bytes also depend on the zlib build, not on the generator). The
digests hold for the locked numpy (its Generator streams); ``node.ingest.synth`` notes that float maths
such as ``log``/``exp`` may differ in the last bit between CPUs: a failure on a new platform with the
generator untouched means that, not a regression."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from node.ingest.synth import SynthSource
from node.ingest.synth_files import run
from node.ingest.synth_spec import WHOLE, Part, SynthSpec

SMALL = SynthSpec(samples=300, variants=500, seed=1)
MIXED = SynthSpec(samples=300, variants=600, seed=5, multiallelic_rate=0.08)
X_ONLY = SynthSpec(samples=200, variants=800, seed=9, chromosomes=(("chrX", 156040895),))

FILES: dict[str, tuple[SynthSpec, Part, dict[str, str]]] = {
    "small": (
        SMALL,
        WHOLE,
        {
            "samples": "415eab99aff4498657820012f12f72aaf6ad9032b951b5399488b2176b7a9a27",
            "truth": "b144d5a8edd7218e59f50af60cbf6f6fe7699aab1f1adbac19be9ee5814816cb",
            "vcf": "37e5fc99351fa2edcd05fa0b2f75270c7ee273817d8af1bc347e4961d0a027b2",
        },
    ),
    "mixed": (
        MIXED,
        WHOLE,
        {
            "samples": "d7caa3ca9a881975128427e921ca69def5f1891b537d57acdc0996b01f1a15d9",
            "truth": "0c2ac1c62dd7b0994ba6e3f02ae3211b2e945fb19562e9b34cb28bfeeee15d09",
            "vcf": "19d3d275403c01cd9bd271058535d1cfb6676679444c6ebef4cf6e328f2eba2e",
        },
    ),
    "x-only": (
        X_ONLY,
        WHOLE,
        {
            "samples": "3fb4db1b1e1b415f05b79cf47cea47f0a37f1e53005ad3ef584697aa3bce9809",
            "truth": "2e8c468260ad74b0332c1cc2b697d665b6049009baf79dff1b4a2167f6ba8ea6",
            "vcf": "52dfebbfb33943827824a8f88fba3e9bd54f59ae89461385b3759d947d85a669",
        },
    ),
    "part-2-of-3": (
        MIXED,
        (1, 3),
        {
            "samples": "7c66da35934c263f63ec4f9fce32dddd50cc06da530d17792813bf63d99d5b1f",
            "truth": "0c2ac1c62dd7b0994ba6e3f02ae3211b2e945fb19562e9b34cb28bfeeee15d09",
        },
    ),
}

SOURCES: dict[str, tuple[SynthSpec, Part, str]] = {
    "small": (SMALL, WHOLE, "4a29eb28589a783d1939a7953142de94e8dd6d0fc139c1d537de7a255eb287a9"),
    "mixed-part-2-of-3": (MIXED, (1, 3), "1fb09a0e2404187ddaba31501a28d2ea2198deef0817f17aeba352c7bdf357a1"),
    "x-only": (X_ONLY, WHOLE, "6bac3ed97cd6d9f678804da475ecb3e18e7ced472d10d0853ba782e700b4b08f"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_the_written_files_are_byte_identical_to_main_before_the_split(name: str, tmp_path: Path) -> None:
    spec, part, want = FILES[name]
    paths = run(tmp_path, spec, vcf=part == WHOLE, part=part)
    got = {}
    for key, path in paths.items():
        data = path.read_bytes()
        got[key] = hashlib.sha256(gzip.decompress(data) if path.suffix == ".gz" else data).hexdigest()
    assert got == want


def _source_digest(src: SynthSource) -> str:
    h = hashlib.sha256()
    h.update("\n".join(src.samples).encode() + b"|" + src.name.encode() + b"|" + src.header_build.encode())
    for c in src.records():
        h.update(f"|{c.chrom}:{c.pos}:{c.ref}:{c.alt}:{c.origin}:".encode())
        h.update(c.sids.astype("<i4").tobytes())
        h.update(c.cls.astype("u1").tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_site_calls_stream_is_identical_to_main_before_the_split(name: str) -> None:
    spec, part, want = SOURCES[name]
    src = SynthSource(spec, part)
    assert _source_digest(src) == want
    assert _source_digest(SynthSource(SynthSpec(spec.samples, spec.variants, spec.seed + 1), part)) != want
