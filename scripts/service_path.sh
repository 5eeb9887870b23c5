#!/usr/bin/env bash
# The service path against the index alone, on one corpus of scripts/peers_compare.sh:
#   scripts/service_path.sh WORK [SECONDS]      e.g. scripts/service_path.sh /tmp/hashsieve-peers/n1000000
# Serves WORK's signed PDQ and SHA-256 sets (two lists; a partner key, as in production) on
# 127.0.0.1, then with wrk (one thread, 32 connections): GET /healthz (plain, and through
# the same Lua script and key as the matches), single-hash GETs of
# the corpus's PDQ queries, of its SHA-256 queries; then the same queries matched one at a
# time in process (examples/single_cost.rs) on one and two threads. Needs wrk, a release
# build with the example (cargo build --release --examples) and a corpus peers_compare.sh
# has built the sets of.
set -euo pipefail
work=$(cd "${1:?usage: service_path.sh WORK [SECONDS]}" && pwd)
secs=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
single=${SINGLE_COST_BIN:-$here/target/release/examples/single_cost}
port=${PORT:-8191}
command -v wrk >/dev/null || { echo "needs wrk (apt install wrk)"; exit 2; }
for kind in pdq sha256; do
  [ -f "$work/$kind.hset.minisig" ] && [ -f "$work/data/${kind}_queries.txt" ] || {
    echo "$work: no signed $kind set or queries (run scripts/peers_compare.sh on it first)" >&2
    exit 2
  }
done
run=$work/service
mkdir -p "$run"
max=0
for kind in pdq sha256; do
  mkdir -p "$run/published/peers-$kind"
  ln -f "$work/$kind.hset" "$run/published/peers-$kind/peers-$kind-1.hset"
  ln -f "$work/$kind.hset.minisig" "$run/published/peers-$kind/peers-$kind-1.hset.minisig"
  size=$(stat -c %s "$work/$kind.hset")
  [ "$size" -gt "$max" ] && max=$size
  # One GET path per query line, in the corpus's order (1% members or planted near ones).
  sed "s#^#/v1/match/$kind/#; 200000q" "$work/data/${kind}_queries.txt" > "$run/$kind.paths"
done
# /healthz also through the script, so that both sides pay the same client (Lua, headers).
awk 'BEGIN { for (i = 0; i < 1000; i++) print "/healthz" }' > "$run/healthz.paths"
key=service-path-partner-key
digest=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
pub=$(sed -n 2p "$work/key.pub")
cat > "$run/hashsieve.toml" <<EOF
listen = "127.0.0.1:$port"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
max_set_bytes = $((max + 1024))
[[lists]]
name = "peers-pdq"
source = "dir:published/peers-pdq"
public_keys = ["$pub"]
[[lists]]
name = "peers-sha256"
source = "dir:published/peers-sha256"
public_keys = ["$pub"]
[[partners]]
name = "bench"
key_sha256 = "$digest"
lists = ["peers-pdq", "peers-sha256"]
rate_per_second = 100000000
EOF
cd "$run"
HASHSIEVE_LOG=warn "$H" serve --config hashsieve.toml &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  kill -0 "$server" 2>/dev/null || { echo "serve exited"; exit 1; }
  sleep 0.2
done
echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $work"
tick=$(getconf CLK_TCK)
# wrk's requests per second, and the server's CPU time per request over the run (user and
# system, from /proc): on two cores shared with wrk the rate is noisy, the CPU cost less so.
rate() {
  local before after out
  before=$(awk '{ print $14 + $15 }' "/proc/$server/stat")
  out=$(wrk -t1 -c32 -d"${secs}s" "$@")
  after=$(awk '{ print $14 + $15 }' "/proc/$server/stat")
  echo "$out" | awk -v t="$((after - before))" -v hz="$tick" '
    /requests in/ { n = $1 } /Requests\/sec/ { r = $2 }
    END { printf "%.0f/s (%.1f us of server CPU each)", r, t * 1e6 / hz / n }'
}
get() { rate -s "$here/scripts/wrk_get_paths.lua" "http://127.0.0.1:$port" -- "$run/$1.paths" "$key"; }
for round in 1 2 3; do
  echo "round $round: healthz $(rate "http://127.0.0.1:$port/healthz")," \
    "through the GET script $(get healthz); PDQ GETs $(get pdq); SHA-256 GETs $(get sha256)"
done
kill "$server"
wait "$server" 2>/dev/null || true
trap - EXIT
for kind in pdq sha256; do
  sed "s/^/$kind:/; 200000q" "$work/data/${kind}_queries.txt" > "$run/$kind.queries"
  for threads in 1 2; do
    echo "== in process, $kind, one query at a time, $threads thread(s)"
    "$single" "$work/$kind.hset" "$work/key.pub" "$run/$kind.queries" "$threads"
  done
done
