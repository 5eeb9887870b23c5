#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP API (docs/reliability.md): schemathesis generates
# requests from /openapi.json, valid and invalid, and runs all of its checks (no 5xx,
# documented status codes and content types, answers that conform to the schema, invalid
# data refused, valid data accepted), once with a partner key and once with an admin key,
# against `hashsieve serve` on the bundled example lists.
#
#   scripts/fuzz_api.sh [EXAMPLES_PER_OPERATION]     default 50 (CI runs 30; documented: 2000)
# Needs: a built hashsieve ($HASHSIEVE_BIN, default target/release/hashsieve) and
# schemathesis ($SCHEMATHESIS, or on PATH; `pip install schemathesis`).
# Exit 0 only when both runs find no failure.
set -euo pipefail
examples=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
ST=${SCHEMATHESIS:-$(command -v schemathesis || true)}
[ -x "$H" ] || { echo "fuzz_api: $H is not built" >&2; exit 2; }
[ -n "$ST" ] && [ -x "$ST" ] || { echo "fuzz_api: needs schemathesis (pip install schemathesis)" >&2; exit 2; }
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
key=$(sed -n 2p "$here/hashsets-example/example-only.pub")
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/hashsieve.toml" <<TOML
listen = "127.0.0.1:$port"
state_dir = "$work/state"
audit_log = "$work/audit.jsonl"
[limits]
shutdown_grace_ms = 0
[[lists]]
name = "alpha"
source = "dir:$here/hashsets-example/alpha"
public_keys = ["$key"]
[[lists]]
name = "beta"
source = "dir:$here/hashsets-example/beta"
public_keys = ["$key"]
[[partners]]
name = "fuzzer"
key_sha256 = "$(digest fuzz-partner-key)"
lists = ["alpha", "beta"]
rate_per_second = 1000000
max_concurrent = 64
[[admins]]
name = "fuzzer-admin"
key_sha256 = "$(digest fuzz-admin-key)"
TOML
HASHSIEVE_LOG=warn "$H" serve --config "$work/hashsieve.toml" 2> "$work/serve.log" &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
status=0
for caller in fuzz-partner-key fuzz-admin-key; do
  echo "fuzz_api: $examples examples per operation as ${caller%-key}" >&2
  "$ST" run "http://127.0.0.1:$port/openapi.json" --checks all --max-examples "$examples" \
    -H "Authorization: Bearer $caller" --no-color > "$work/st.out" 2>&1 || status=1
  sed -n '/SUMMARY/,$p' "$work/st.out"
  [ "$status" = 0 ] || { sed -n '/FAILURES/,/SUMMARY/p' "$work/st.out" | head -80; break; }
done
if grep -q "panicked" "$work/serve.log"; then
  echo "fuzz_api: the server panicked:" >&2; grep -m3 panicked "$work/serve.log" >&2; status=1
fi
exit "$status"
