"""The genogate node: ingest, genotype store, exact counts for the operator, and (later) the DP query service."""
