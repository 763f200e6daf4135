#!/bin/sh
# One-shot bootstrap of the example three-node federation in deploy/compose/compose.yaml: a development CA,
# the coordinator (committee of two, operator "operator"), three nodes whose stores hold disjoint thirds of
# one synthetic cohort, and the people's mTLS identities, signing keys and profiles.
#
# DEVELOPMENT ONLY: the CA key sits unprotected in its volume. Production sites use their institution's CA
# and their own genotypes (genogate-node ingest), and never share a volume.
#
# Idempotent: does nothing when the coordinator already exists. Runs in the node image as root (fresh
# volumes are root-owned) and hands every file to the service user (uid 10001) at the end.
# GENOGATE_BOOTSTRAP_ROOT (default /srv/federation) holds ca/, coordinator/, site-*/, people/ (everyone's
# identities, for the operator's registration) and researcher/ (alice's alone, for the researcher container).
set -eu

ROOT=${GENOGATE_BOOTSTRAP_ROOT:-/srv/federation}
SITES=${GENOGATE_SITES:-"site-a site-b site-c"}
SAMPLES=${GENOGATE_SAMPLES:-30000}
VARIANTS=${GENOGATE_VARIANTS:-20000}
SERVICE_UID=${GENOGATE_UID:-10001}

if [ -f "$ROOT/coordinator/coordinator.toml" ]; then
  echo "bootstrap: $ROOT/coordinator already exists; nothing to do"
  exit 0
fi

echo "bootstrap: development CA"
genogate-node dev-ca init --dir "$ROOT/ca" >/dev/null

echo "bootstrap: coordinator"
out=$(genogate-coordinator init --dir "$ROOT/coordinator" --name coordinator --listen 0.0.0.0:50051 \
  --operator operator --metrics-listen 0.0.0.0:9464)
committee=$(printf '%s\n' "$out" | sed -n 's/^committee public key (give it to every node): //p')
genogate-node dev-ca issue --ca "$ROOT/ca" --csr "$ROOT/coordinator/tls/coordinator.csr" \
  --out "$ROOT/coordinator/tls/coordinator.pem" --server --client >/dev/null
cp "$ROOT/ca/ca.pem" "$ROOT/coordinator/tls/ca.pem"

echo "bootstrap: people (operator, alice, member-1, member-2)"
mkdir -p "$ROOT/people"
for who in operator alice member-1 member-2; do
  genogate-node dev-ca client --ca "$ROOT/ca" --name "$who" --out-dir "$ROOT/people" >/dev/null
  cp "$ROOT/ca/ca.pem" "$ROOT/people/ca.pem"
  signing=""
  if [ "$who" != operator ]; then
    public=$(genogate keys new --out "$ROOT/people/$who.ed25519" | sed -n 's/^public key: *//p')
    signing="signing_key = \"$who.ed25519\""
    case "$who" in
      member-*) genogate-coordinator committee add --config "$ROOT/coordinator/coordinator.toml" \
                  --name "$who" --public-key "$public" >/dev/null ;;
      alice) printf '%s\n' "$public" > "$ROOT/people/alice.public" ;;
    esac
  fi
  # Two profiles each: inside the compose network, and from the host through the published port.
  for where in internal host; do
    address=coordinator:50051
    [ "$where" = host ] && address=localhost:50051
    cat > "$ROOT/people/$who.$where.toml" <<PROFILE
[profile]
name = "$who"
coordinator = "$address"
ca_cert = "ca.pem"
cert = "$who.pem"
key = "$who.key"
$signing
PROFILE
  done
done

# The researcher's own files only, for the researcher container (it must never see the committee members' or
# the operator's keys): a volume of its own, mounted there instead of people/.
mkdir -p "$ROOT/researcher"
for f in ca.pem alice.pem alice.key alice.ed25519 alice.internal.toml alice.host.toml; do
  cp "$ROOT/people/$f" "$ROOT/researcher/$f"
done

i=0
n=$(echo $SITES | wc -w)
for site in $SITES; do
  i=$((i + 1))
  echo "bootstrap: node $site (participants $i/$n of a synthetic cohort of $SAMPLES x $VARIANTS)"
  genogate-node init --dir "$ROOT/$site" --name "$site" --listen 0.0.0.0:50051 \
    --committee-key "$committee" --coordinator coordinator:50051 --coordinator-name coordinator \
    --metrics-listen 0.0.0.0:9464 >/dev/null
  # Server for the coordinator; client to fetch the revocation list and for its own health probe.
  genogate-node dev-ca issue --ca "$ROOT/ca" --csr "$ROOT/$site/tls/node.csr" --out "$ROOT/$site/tls/node.pem" \
    --server --client >/dev/null
  cp "$ROOT/ca/ca.pem" "$ROOT/$site/tls/ca.pem"
  genogate-node synth --samples "$SAMPLES" --variants "$VARIANTS" --seed 7 --part "$i/$n" \
    --out "$ROOT/$site/cohort" --store "$ROOT/$site/store.duckdb" >/dev/null
done

if [ "$(id -u)" = 0 ]; then
  chown -R "$SERVICE_UID:$SERVICE_UID" "$ROOT"
fi
echo "bootstrap: done"
