"""The attacks on genogate as part of the project (issue 13, item 9): ``make attacks`` (``python -m attacks``).

Each attack runs through the real path, against real node processes (mTLS, committee-signed grants issued by a
real coordinator, the node's own ledger and OpenDP noise), on the real 1000 Genomes data in
``../shared/data/`` and on synthetic cohorts (``node.ingest.synth``):

* ``membership``: the Beacon likelihood-ratio test (Shringarpure & Bustamante 2015) and the Homer (2008) and
  Sankararaman (2009) statistics, against exact answers and against genogate's noisy answers;
* ``differencing``: single-target differencing ("everyone" minus "everyone not of the target's sex, age and
  ancestry") at several per-study budgets;
* ``timing``: membership of a variant from the latency of refused queries (budget exhausted), on the in-memory
  and the DuckDB path of a node;
* ``coverage``: how often stated 95% intervals cover the exact value.

Results go to ``attacks/out/`` (JSON, ROC curves as PNG) and into ``SECURITY.md`` between its markers.
Randomness here makes *experiments* (which participants are targets, synthetic birth years); every noise
draw is the node's own, from OpenDP.
"""
