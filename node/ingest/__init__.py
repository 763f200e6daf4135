"""Ingest: everything that writes a node's store, apart from the serving node.

* ``pipeline``: VCF/BCF files (or any ``GenotypeSource``) plus a sample sheet into a store (atomic, idempotent,
  canonical, one build, pseudonymous: see its docstring);
* ``vcf`` / ``vcftext``: the VCF/BCF readers (htslib, and the numpy parser for GT-only text);
* ``normalise``: one canonical spelling of every allele; ``sheet``: the sample sheet (``sheet_columns``: which
  of an institution's columns is which of ours; ``sheet_values``: each cell's normalisation);
* ``writer``: the store's call layout (sparse rows and dense bitsets, ``node.store``);
* ``synth``: synthetic cohorts (a ``GenotypeSource`` and its sheet) for tests, benchmarks and attacks;
  ``synth_files`` writes them as files (sheet, truth, BGZF VCF).

A serving node imports nothing from here: BED files of covered regions, which both ingest and a serving
node's ``covered_bed`` read, are ``node.bed`` (a test checks that ``node.app`` loads neither this package nor
cyvcf2).
"""

from node.ingest.pipeline import (
    IngestSummary,
    default_key_path,
    ingest,
    ingest_sources,
    load_key,
    pseudonym,
)

__all__ = [
    "IngestSummary",
    "default_key_path",
    "ingest",
    "ingest_sources",
    "load_key",
    "pseudonym",
]
