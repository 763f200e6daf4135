"""The node's privacy-budget ledger: one SQLite file per node, the only authority on what a study spent here.

Guarantees (docs/privacy.md, "Accounting"):

* **Charge before noise, durably.** ``begin()`` returns ``Charged`` only after the charge is committed in WAL
  mode with ``synchronous=FULL`` (the WAL is fsynced by that commit). A crash after that still counts.
* **No overspend.** "spent + charge <= cap" is checked and the charge inserted inside one
  ``BEGIN IMMEDIATE`` transaction, which holds SQLite's single write lock, across processes too.
* **Same question, same answer, within a consent epoch.** One charge per (study, canonical query, consent
  epoch). Its result, once stored, is the only value ever released for it (the first ``complete()`` wins;
  later draws are discarded unreleased), and other query ids asking the same canonical query in the same
  epoch get it at zero cost. A query id keeps its first answer whatever the epoch (idempotent retries).
* **Budgets above the study.** Every charge is attributed to a researcher (a grant's researcher key
  fingerprint, or ``cn:<common name>`` for a local study) and, in the same transaction that checks the study's
  cap, checked against the researcher's cap across all their studies and the node's cap across everyone,
  each over a rolling window of ``period_days``. Totals are kept per UTC day (``researcher_days``,
  ``node_days``) in the charging transaction, so a check sums at most ``period_days + 1`` rows whatever the
  history: the window is the charge's UTC day and the ``period_days`` days before it (a charge stops counting
  between ``period_days`` and ``period_days + 1`` days after it was made: never early).
* **Callers own their query ids.** A query id (and the signed bytes behind it) is answered again only to the
  certificate common name that first sent it; anyone else gets REPLAYED_NONCE.
* **Exact arithmetic.** ε and δ are ``Decimal`` at the API and integers in units of 1e-12 in the file:
  charges are rounded *up* to the next unit (never under-charge), caps *down* (never over-grant).
* **Append-only.** Triggers refuse deleting rows, changing a charge, replacing a stored result and lowering
  a study's spent total, so a bug cannot give budget back. (The ``nonces`` table is the exception: it is not
  part of the budget record, and nonces older than two timestamp windows are pruned.)
* **A signed query's nonce commits with its charge** (``begin(nonce=...)``; a refusal's with ``record``):
  one synced commit per query, and after any crash a nonce is on disk exactly when its charge is
  (``node.nonces``).

**Results survive a process crash; a machine crash costs a second charge, never a free second draw.** The
caller releases what ``complete()`` returns, and a result lost after its release would make a retry draw
fresh noise: two noisy values for one charge. ``complete()`` commits without its own fsync (WAL,
``synchronous=NORMAL``, on Linux where the boot can be identified): the WAL write is in the kernel's page
cache, which a killed process cannot lose, and the next durable commit (any charge, or ``close()``) syncs
it. Only an operating-system crash or power loss can drop such a tail. The ledger records the boot it runs
under and whether it was closed cleanly; opened after an unclean stop *under another boot*, it treats every
charge without a result as possibly released, and a retry of one is charged again (``recharges``) before it
draws. After a process crash on the same boot, a retry of an interrupted query completes it at no cost, as
its draw was never released. Elsewhere (no boot id) ``complete()`` syncs like ``begin()``.

``canonical_sha256`` identifies the question (the service hashes the canonical query, not ε or δ): the
ledger treats equal hashes under one study in one consent epoch as the same question and answers a repeat
with the stored release, whatever ε the repeat asks for, so neither repeating a question nor varying its ε
buys a fresh draw.

**Consent epochs** (``register_epoch``): the node registers its store's cohort fingerprint (participants,
their attributes and consent) when it starts. The same fingerprint as the latest epoch's continues that
epoch; any other starts the next epoch, *including a fingerprint an earlier epoch had*: an epoch is an
uninterrupted span of one cohort, never revisited, so a stored answer is served only while the cohort it was
computed on has been in place without a break. (Returning to an old epoch after a withdrawal was reverted
would resurrect answers computed before the withdrawal; the price of never doing so is one more charge per
repeated question after a revert.) Charges made before schema version 4 have epoch 0, which no registered
epoch equals: their answers still answer retries of their own query ids, never a repeat under a new id.

Threading and the group commit are described in ``node.ledger.ledger``.

Layout: ``ledger`` (the ``Ledger`` charging API), ``outcomes`` (what it answers: ``Charged``, ``Pending``,
``Answered``, ``BudgetStatus``, ...), ``amounts`` (exact arithmetic in 1e-12 units, argument checks),
``refusals`` (the budget refusals and the figures they state), ``schema`` (tables, append-only triggers,
migrations), ``commit`` (the group commit), ``inspection`` (read-only: history, the invariant check,
``read_spent``). Import from ``node.ledger``.
"""

from node.ledger.amounts import DAY_MS, MAX_AMOUNT, MAX_PERIOD_DAYS, UNIT_EXPONENT
from node.ledger.inspection import read_spent
from node.ledger.ledger import BOOT_ID_FILE, Ledger, boot_id
from node.ledger.outcomes import Answered, BudgetStatus, Charged, LedgerEntry, Pending, StudySpent
from node.ledger.schema import APPLICATION_ID, SCHEMA_VERSION

__all__ = [
    "APPLICATION_ID",
    "BOOT_ID_FILE",
    "DAY_MS",
    "MAX_AMOUNT",
    "MAX_PERIOD_DAYS",
    "SCHEMA_VERSION",
    "UNIT_EXPONENT",
    "Answered",
    "BudgetStatus",
    "Charged",
    "Ledger",
    "LedgerEntry",
    "Pending",
    "StudySpent",
    "boot_id",
    "read_spent",
]
