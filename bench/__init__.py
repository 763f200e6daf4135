"""Benchmarks: ``make bench`` runs ``bench.run`` and writes BENCHMARKS.md."""
