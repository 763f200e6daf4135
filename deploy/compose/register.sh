#!/bin/sh
# Once the coordinator is healthy: the operator registers the three nodes (pinning each certificate's
# SHA-256) and the researcher alice. Idempotent: registering again with the same details changes nothing.
set -eu
ROOT=${GENOGATE_BOOTSTRAP_ROOT:-/srv/federation}
SITES=${GENOGATE_SITES:-"site-a site-b site-c"}
PROFILE="$ROOT/people/operator.internal.toml"
for site in $SITES; do
  genogate --profile "$PROFILE" nodes register --name "$site" --endpoint "$site:50051" \
    --cert "$ROOT/$site/tls/node.pem" --build GRCh38
done
genogate --profile "$PROFILE" researchers register --name alice --affiliation "Example University" \
  --public-key "$(cat "$ROOT/people/alice.public")"
