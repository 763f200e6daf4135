"""What a query kind may ask of this node's data (``genogate.kinds.base.NodeData``), over the node's storage
backend (``node.backend``).

One ``Counting`` per charged query, built by the query service once the charge is durable: the cohort masks,
the requested variants' vids (a stand-in's where the store lacks the variant, ``held`` saying which are real)
and their rows when the kind reads them. The one place the kinds meet the backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from node.backend import GenotypeBackend
from node.records import HOM_REF
from node.store import Calls


@dataclass(frozen=True)
class Counting:
    """``NodeData`` of one charged query. ``classes`` counts a stand-in's rows as absent (every cohort member
    hom-ref), and ``carriers`` reads every vid's rows but counts only held ones: the same work per requested
    variant whether the store holds it or not."""

    consent: npt.NDArray[np.bool_]
    masks: Sequence[npt.NDArray[np.bool_]]
    vids: npt.NDArray[np.int32]
    held: npt.NDArray[np.bool_]
    rows: Calls | None
    backend: GenotypeBackend

    def size(self, mask: npt.NDArray[np.bool_]) -> int:
        return int(np.count_nonzero(mask))

    def classes(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        assert self.rows is not None  # the kind declared that it reads rows (``QueryKind.reads_rows``)
        classes = self.backend.count(self.rows, mask)
        classes[~self.held] = 0  # a stand-in's rows are read, never counted
        classes[~self.held, HOM_REF] = np.count_nonzero(mask)
        return classes

    def carriers(self, mask: npt.NDArray[np.bool_], chosen: npt.NDArray[np.bool_] | None = None) -> int:
        counted = self.held if chosen is None else chosen & self.held
        return self.backend.carriers(self.vids, mask, counted)
