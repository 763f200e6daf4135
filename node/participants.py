"""Who is in a store: ``Participants``, every participant's attributes as a backend hands them to the cohort
masks (``node.cohort``). Its own module so that the backends (``node.store``, ``node.memory``) and their
interface (``node.backend``, which re-exports it) need not import one another."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Participants:
    """Every participant's attributes, indexed by sample id (0..N-1, in pseudonym order)."""

    sex: tuple[str, ...]  # F, M or U
    birth_year: tuple[int | None, ...]
    ancestry: tuple[str | None, ...]  # as the sheet gave it (``node.cohort`` compares canonical labels)
    phenotypes: tuple[tuple[str, ...], ...]  # the terms each is annotated with (primary ids)
    consent: tuple[tuple[str, ...], ...]  # DUO codes, as stored
    under: Mapping[str, npt.NDArray[np.int32]]  # per term: the sorted ids annotated with it or a descendant
    # Keyed-hash pseudonyms (how consent changes name participants, ``node.consent``); () when not read.
    pseudonym: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sex)
