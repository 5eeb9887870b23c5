#!/usr/bin/env bash
# One partner floods with maximum-size batches; what does another partner's latency do?
# (docs/reliability.md, "Fair under abuse"). A list of ENTRIES random PDQ hashes; partner
# "flood" sends batches of 10 000 PDQ queries (wrk -t1 -c16), partner "quiet" single GETs
# (wrk -t1 -c2, MD5 and PDQ in turn). Three runs of SECONDS each: the quiet partner alone; with
# the flood and the flooder's max_concurrent at 64 (no effective limit); with it at 1.
#   scripts/fairness.sh [ENTRIES] [SECONDS]      default 1000000 15
# Needs wrk and a release build ($HASHSIEVE_BIN, default target/release/hashsieve).
set -euo pipefail
entries=${1:-1000000}
secs=${2:-15}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
command -v wrk >/dev/null || { echo "fairness: needs wrk (apt install wrk)" >&2; exit 2; }
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/published"
"$here/scripts/synth_entries.sh" "$entries" > "$work/entries.csv"
"$H" keygen --unencrypted --secret-key "$work/k.sec" --public-key "$work/k.pub" 2>/dev/null
"$H" hashset build --name fair --version 1 --expires 2030-01-01T00:00:00Z \
  -o "$work/published/fair-1.hset" "$work/entries.csv" 2>/dev/null
"$H" hashset sign --secret-key "$work/k.sec" "$work/published/fair-1.hset" 2>/dev/null
python3 - "$work" <<'PY'
import random, sys
work = sys.argv[1]
rnd = random.Random(1414)
for b in range(8):
    qs = ",".join('{"kind":"pdq","hash":"%s"}' % rnd.randbytes(32).hex() for _ in range(10000))
    open(f"{work}/flood-{b}.json", "w").write('{"queries":[' + qs + "]}")
with open(f"{work}/quiet.txt", "w") as f:
    for i in range(10000):
        if i % 2:
            f.write(f"/v1/match/md5/{rnd.randbytes(16).hex()}\n")
        else:
            f.write(f"/v1/match/pdq/{rnd.randbytes(32).hex()}\n")
PY
cat > "$work/flood.lua" <<EOF
local bodies = {}
for b = 0, 7 do
  local f = io.open("$work/flood-" .. b .. ".json"); bodies[#bodies + 1] = f:read("*a"); f:close()
end
local i = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer flood-key"
wrk.headers["Content-Type"] = "application/json"
request = function() i = i % #bodies + 1; return wrk.format(nil, "/v1/match", nil, bodies[i]) end
EOF
cat > "$work/quiet.lua" <<EOF
local paths = {}
for line in io.lines("$work/quiet.txt") do paths[#paths + 1] = line end
local i = 0
wrk.headers["Authorization"] = "Bearer quiet-key"
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
EOF
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start() {  # FLOOD_MAX_CONCURRENT
  if [ -n "$server" ]; then kill "$server"; wait "$server" 2>/dev/null || true; fi
  cat > "$work/hashsieve.toml" <<TOML
listen = "127.0.0.1:$port"
state_dir = "$work/state"
audit_log = "$work/audit.jsonl"
[limits]
max_batch = 10000
shutdown_grace_ms = 0
request_timeout_ms = 60000
[[lists]]
name = "fair"
source = "dir:$work/published"
public_keys = ["$(sed -n 2p "$work/k.pub")"]
[[partners]]
name = "flood"
key_sha256 = "$(digest flood-key)"
lists = ["fair"]
rate_per_second = 100000000
max_concurrent = $1
[[partners]]
name = "quiet"
key_sha256 = "$(digest quiet-key)"
lists = ["fair"]
rate_per_second = 100000000
TOML
  HASHSIEVE_LOG=warn "$H" serve --config "$work/hashsieve.toml" &
  server=$!
  for _ in $(seq 1 600); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.2; done
  echo "fairness: the server did not become ready" >&2
  exit 1
}
quiet() {
  wrk -t1 -c2 -d"${secs}s" --latency -s "$work/quiet.lua" "http://127.0.0.1:$port" \
    | grep -E "^ +(50|99)%|Requests/sec"
}
echo "fairness: $entries PDQ entries, $secs s per run; $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs"
start 64
echo "== the quiet partner alone"
quiet
for limit in 64 1; do
  start "$limit"
  echo "== with the flood, the flooder's max_concurrent = $limit"
  wrk -t1 -c16 -d"$((secs + 2))s" -s "$work/flood.lua" "http://127.0.0.1:$port" > "$work/flood.out" &
  flood=$!
  sleep 1
  quiet
  wait "$flood"
  grep -E "Requests/sec|Non-2xx" "$work/flood.out" | sed 's/^/   flood: /'
done
