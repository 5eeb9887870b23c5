#!/usr/bin/env bash
# The soak (docs/reliability.md): `hashsieve serve` at saturation while it applies hot swaps
# to three lists, fed by a directory, an object store (moto_server on loopback) and admin
# uploads; every answer checked against the version it reports; RSS, descriptors, mapped
# index files and state-dir size sampled at every swap.
#
#   scripts/soak.sh [SECONDS] [SWAPS] [ENTRIES_PER_LIST]     default 60 20 100000
#   documented run: scripts/soak.sh 1800 100 1000000
# Needs: the soak example and hashsieve built ($SOAK_BIN and $HASHSIEVE_BIN, default the
# release builds: cargo build --release --example soak --bin hashsieve), and moto_server
# ($HASHSIEVE_MOTO_SERVER or on PATH) for the object-store list; without it that list takes
# uploads and the summary says so. Writes the per-swap samples to $SOAK_SAMPLES if set.
# Exit 0 only when no request failed, no answer was inconsistent and nothing piled up.
set -euo pipefail
seconds=${1:-60}
swaps=${2:-20}
entries=${3:-100000}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
S=${SOAK_BIN:-$here/target/release/examples/soak}
for need in "$H" "$S"; do
  [ -x "$need" ] || { echo "soak: $need is not built (cargo build --release --example soak --bin hashsieve)" >&2; exit 2; }
done
moto=${HASHSIEVE_MOTO_SERVER:-$(command -v moto_server || true)}
work=$(mktemp -d)
moto_pid=""
cleanup() {
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
s3_args=()
if [ -n "$moto" ] && [ -x "$moto" ]; then
  py=$(dirname "$moto")/python3
  [ -x "$py" ] || py=python3
  port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  "$moto" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 1 100); do
    "$py" - "$AWS_ENDPOINT_URL" <<'PY' 2>/dev/null && break
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket="soak")
PY
    sleep 0.2
  done
  s3_args=(--s3 s3://soak/lists/)
else
  [ -z "${HASHSIEVE_REQUIRE_MOTO:-}" ] || { echo "soak: HASHSIEVE_REQUIRE_MOTO is set but there is no moto_server" >&2; exit 2; }
  echo "soak: no moto_server: the object-store list takes uploads instead" >&2
fi
samples=()
[ -n "${SOAK_SAMPLES:-}" ] && samples=(--samples "$SOAK_SAMPLES")
echo "soak: $seconds s, $swaps swaps, $entries PDQ entries per list; $(lscpu | sed -n 's/^Model name: *//p' | head -1)" >&2
"$S" --hashsieve "$H" --seconds "$seconds" --swaps "$swaps" --entries "$entries" \
  "${s3_args[@]}" "${samples[@]}"
