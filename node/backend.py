"""What a node's query path needs from its genotype data, in domain terms: ``GenotypeBackend``.

A backend answers in numpy arrays and ``genogate.query`` types; no SQL and no database types cross it, and
each backend keeps its own threads, connections and caches (every method may be called from any thread).
Two implement it: ``node.duckdb_backend.DuckDBBackend`` (every read a DuckDB statement on the calling thread's own
cursor) and ``node.memory.MemoryBackend`` (the calls copied into memory at start, from the same DuckDB file).
``tests/conformance/test_backend.py`` is the definition of a backend: every implementation passes it.

Invariants every backend keeps (the service relies on them):

* **The same work whoever is in the cohort**: reading and counting never depend on a cohort mask's members.
* **The same work held or not** (``lookup_with_stand_ins``): a variant the store lacks gets a stored
  neighbour's id, whose rows are read and never counted; ``fetch`` and ``carriers`` read every id given.
* **Nothing per query before the charge** (the service's order): before ``Ledger.begin`` decides, a query
  reads only a region's variant list (a public site catalogue); participants, terms and the catalogue are
  read once at start.

``open_backend`` builds the one ``[store] backend`` names (``auto``, ``memory`` or ``duckdb``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from genogate.errors import StoreError
from genogate.query import Region, Variant
from node.participants import Participants

if TYPE_CHECKING:
    from node.ontology import TermIndex
    from node.store import Calls, VariantRows

BackendKind = Literal["auto", "memory", "duckdb"]
BACKENDS: tuple[BackendKind, ...] = ("auto", "memory", "duckdb")
log = logging.getLogger("genogate.node")


@runtime_checkable
class ParticipantSource(Protocol):
    """Who is in the store (``node.cohort.Cohorts`` builds its masks from it)."""

    def participants(self) -> Participants:
        """Every participant's attributes and the participants under each phenotype term."""
        ...

    def terms(self) -> TermIndex:
        """The phenotype vocabulary the store's terms were validated against."""
        ...


@runtime_checkable
class GenotypeBackend(ParticipantSource, Protocol):
    """A node's genotype data, as its query path reads it (see the module docstring for the invariants)."""

    @property
    def path(self) -> Path:
        """Where the data lives (named in messages)."""
        ...

    @property
    def build(self) -> str | None:
        """The genome build the positions are on (GRCh37 or GRCh38; None if the store records none)."""
        ...

    @property
    def n_samples(self) -> int:
        """How many participants the store holds (cohort masks are this long)."""
        ...

    @property
    def prefetch(self) -> bool:
        """Whether a read is slow enough to start on a fetch worker while the caller builds its cohort masks
        (a DuckDB statement: yes; slicing the in-memory copy: no, it answers in microseconds)."""
        ...

    def contigs(self) -> list[str]:
        """Canonical names of the contigs holding at least one variant, in natural order."""
        ...

    def covered_regions(self) -> list[Region] | None:
        """Where the data was called (merged, sorted); None when it covers every position of its contigs."""
        ...

    def cohort_sha256(self) -> str:
        """The cohort fingerprint (participants' attributes and consent): the node's consent epoch."""
        ...

    def variants(self, region: Region | None = None) -> VariantRows:
        """All variants (or those in a region), in genomic order."""
        ...

    def lookup(self, variants: Sequence[Variant]) -> npt.NDArray[np.int32]:
        """The id of each variant, -1 where the store does not hold it."""
        ...

    def lookup_with_stand_ins(self, variants: Sequence[Variant]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """The id of each variant and whether the store holds it; one it lacks gets a stored neighbour's id
        (a stand-in, read and never counted), so the work does not say which are held."""
        ...

    def fetch(self, vids: npt.NDArray[np.int32]) -> Calls:
        """The stored calls of ``vids`` (any order, repeats, -1 for none), read once for any number of cohorts."""
        ...

    def count(self, calls: Calls, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """Genotype-class counts (``len(vids)`` x 6, columns as ``records.CLASS_NAMES``) of fetched calls
        within a cohort; a vid of -1 counts every cohort member as HOM_REF."""
        ...

    def class_counts(self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        """``count(fetch(vids), mask)``."""
        ...

    def carriers(
        self, vids: npt.NDArray[np.int32], mask: npt.NDArray[np.bool_], counted: npt.NDArray[np.bool_] | None = None
    ) -> int:
        """Cohort members carrying an ALT allele (HET, HOM_ALT or HEMI_ALT) of any of ``vids``; with
        ``counted``, every vid's rows are read but only those of ``vids[counted]`` count (stand-ins)."""
        ...

    def close(self) -> None:
        """Release the backend's resources (no method may be called afterwards)."""
        ...


def open_backend(path: Path, kind: BackendKind = "auto", memory_mb: int = 0) -> GenotypeBackend:
    """The backend ``[store] backend`` names, on the store at ``path``, logging where rows are read from.

    ``auto``: the in-memory copy of the calls when it fits ``memory_mb`` MiB, else DuckDB (0: always DuckDB).
    ``memory``: the in-memory copy, refused (``StoreError``) when it would take more than ``memory_mb``.
    ``duckdb``: every read through DuckDB."""
    from node.duckdb_backend import DuckDBBackend
    from node.memory import MemoryBackend, MemoryCalls  # loaded by the node that opens one
    from node.store import Store

    if kind not in BACKENDS:
        raise StoreError(f"unknown store backend {kind!r}; backends are {', '.join(BACKENDS)}")
    store = Store.open(path)
    try:
        need = MemoryCalls.size(store)
        if kind == "memory" and need > memory_mb << 20:
            raise StoreError(
                f"{path}: [store] backend = 'memory' but the copy of its calls would take {-(-need >> 20)} MiB, "
                f"more than [store] memory_mb = {memory_mb}; raise memory_mb or use backend = 'auto' or 'duckdb'"
            )
        if kind != "duckdb" and need <= memory_mb << 20:
            memory = MemoryBackend(store)
            log.info("store rows served from memory", extra={"copy_mib": round(memory.nbytes / 2**20)})
            return memory
        backend = DuckDBBackend(store)
    except BaseException:
        store.close()
        raise
    log.info(
        "store rows served from DuckDB",
        extra={"copy_would_take_mib": round(need / 2**20), "memory_mb": memory_mb, "backend": kind},
    )
    return backend
