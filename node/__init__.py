"""The genogate node: ingest, genotype store, exact counts for the operator, and the DP query service (grant
verification, budget ledger, noise, signed releases) behind its gRPC server."""
