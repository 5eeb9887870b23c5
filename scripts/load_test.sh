#!/usr/bin/env bash
# Load test of `hashsieve serve` with wrk (Debian package `wrk`), server and load generator on
# this machine:
#   scripts/load_test.sh [ENTRIES_PER_KIND] [SECONDS]     e.g. scripts/load_test.sh 200000 20
# Builds a synthetic signed list (ENTRIES_PER_KIND random hashes of each of the 8 kinds, so
# 1.6 M entries by default), starts the release binary on 127.0.0.1:8181, then runs
#   1. single-hash GETs (GET /v1/match/{kind}/{hash}), wrk -t1 -c32, 1% hits;
#   2. POST /v1/match with batches of 1 000 mixed hashes (one of each kind per "file",
#      as `hashsieve hash` sends them), 1% hits, wrk -t1 -c8;
#   3. the same with exact kinds only (md5, sha1, sha256, blake3);
#   4. batches of one kind each (PDQ, pHash, MD5), what each kind costs on its own;
# and prints wrk's latency distribution (p50/p99) and requests/s. Needs `cargo build --release`.
set -euo pipefail
per_kind=${1:-200000}
secs=${2:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
work=${WORK:-/tmp/hashsieve-load}
mkdir -p "$work/published/load"
command -v wrk >/dev/null || { echo "needs wrk (apt install wrk)"; exit 2; }

if [ ! -f "$work/published/load/load-1.hset.minisig" ]; then
  python3 - "$work" "$per_kind" <<'PY'
import os, random, sys
work, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(20261129)
kinds = {"md5": 16, "sha1": 20, "sha256": 32, "blake3": 32, "pdq": 32, "phash": 8, "dhash": 8, "ahash": 8}
lists = {k: [rnd.randbytes(b).hex() for _ in range(n)] for k, b in kinds.items()}
with open(f"{work}/entries.csv", "w") as f:
    f.write("kind,hash,category,ref\n")
    for k, hs in lists.items():
        for i, h in enumerate(hs):
            f.write(f"{k},{h},synthetic,{k.upper()}-{i}\n")
def query(k):
    if rnd.random() < 0.01:  # 1% hits: an entry, perceptual ones a few bits away
        h = bytearray(bytes.fromhex(rnd.choice(lists[k])))
        if k in ("pdq", "phash", "dhash", "ahash"):
            h[-1] ^= 0b101
        return k, h.hex()
    return k, rnd.randbytes(kinds[k]).hex()
# GET paths, 1% hits, kinds mixed evenly.
with open(f"{work}/get_paths.txt", "w") as f:
    for i in range(100000):
        k, h = query(list(kinds)[i % 8])
        f.write(f"/v1/match/{k}/{h}\n")
# POST bodies: 1 000 queries each, eight kinds per "file".
os.makedirs(f"{work}/bodies", exist_ok=True)
for b in range(50):
    qs = []
    for i in range(125):
        for k in kinds:
            k, h = query(k)
            qs.append('{"kind":"%s","hash":"%s"}' % (k, h))
    with open(f"{work}/bodies/{b}.json", "w") as f:
        f.write('{"queries":[' + ",".join(qs) + "]}")
# Exact kinds only (md5, sha1, sha256, blake3): what a platform checking file digests sends.
os.makedirs(f"{work}/bodies-exact", exist_ok=True)
for b in range(50):
    qs = []
    for i in range(250):
        for k in ("md5", "sha1", "sha256", "blake3"):
            k, h = query(k)
            qs.append('{"kind":"%s","hash":"%s"}' % (k, h))
    with open(f"{work}/bodies-exact/{b}.json", "w") as f:
        f.write('{"queries":[' + ",".join(qs) + "]}")
PY
  "$H" keygen --unencrypted --secret-key "$work/load.sec" --public-key "$work/load.pub" --force 2>/dev/null
  "$H" hashset build --name load --version 1 --expires 2030-01-01T00:00:00Z \
    --threshold pdq=31 --threshold phash=8 --threshold dhash=8 --threshold ahash=8 \
    -o "$work/published/load/load-1.hset" "$work/entries.csv"
  "$H" hashset sign --secret-key "$work/load.sec" "$work/published/load/load-1.hset"
fi
# One kind per batch (PDQ, pHash, MD5), to see what each kind costs through the same server.
if [ ! -d "$work/bodies-pdq" ]; then
  python3 - "$work" <<'PY'
import csv, os, random, sys
work = sys.argv[1]
rnd = random.Random(20261130)
sizes = {"pdq": 32, "phash": 8, "md5": 16}
lists = {k: [] for k in sizes}
with open(f"{work}/entries.csv") as f:
    for row in csv.DictReader(f):
        if row["kind"] in lists:
            lists[row["kind"]].append(row["hash"])
for k, size in sizes.items():
    os.makedirs(f"{work}/bodies-{k}", exist_ok=True)
    for b in range(50):
        qs = []
        for i in range(1000):
            if rnd.random() < 0.01:
                h = bytearray(bytes.fromhex(rnd.choice(lists[k])))
                if k != "md5":
                    h[-1] ^= 0b101
                h = h.hex()
            else:
                h = rnd.randbytes(size).hex()
            qs.append('{"kind":"%s","hash":"%s"}' % (k, h))
        with open(f"{work}/bodies-{k}/{b}.json", "w") as f:
            f.write('{"queries":[' + ",".join(qs) + "]}")
PY
fi
key=load-test-partner-key
digest=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
cat > "$work/hashsieve.toml" <<EOF
listen = "127.0.0.1:8181"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
max_batch = 10000
[[lists]]
name = "load"
source = "dir:published/load"
public_keys = ["$(sed -n 2p "$work/load.pub")"]
[[partners]]
name = "load"
key_sha256 = "$digest"
lists = ["load"]
rate_per_second = 100000000
EOF
HASHSIEVE_LOG=warn "$H" serve --config "$work/hashsieve.toml" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 600); do
  curl -sf localhost:8181/readyz >/dev/null && break
  sleep 0.2
done
curl -sf localhost:8181/readyz

for set in bodies bodies-exact bodies-pdq bodies-phash bodies-md5; do
cat > "$work/post-$set.lua" <<EOF
local bodies = {}
for b = 0, 49 do
  local f = io.open("$work/$set/" .. b .. ".json")
  bodies[#bodies + 1] = f:read("*a")
  f:close()
end
local i = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "/v1/match", nil, bodies[i])
end
EOF
done
echo
echo "== single-hash GETs (1% hits), wrk -t1 -c32 -d${secs}s"
wrk -t1 -c32 -d"${secs}s" --latency -s "$here/scripts/wrk_get_paths.lua" http://127.0.0.1:8181 \
  -- "$work/get_paths.txt" "$key"
echo
echo "== POST /v1/match, batches of 1 000 mixed hashes (1% hits), wrk -t1 -c8 -d${secs}s"
echo "   (hashes/s = requests/s x 1 000)"
wrk -t1 -c8 -d"${secs}s" --latency -s "$work/post-bodies.lua" http://127.0.0.1:8181
echo
echo "== POST /v1/match, batches of 1 000 exact-kind hashes (md5/sha1/sha256/blake3, 1% hits), wrk -t1 -c8 -d${secs}s"
wrk -t1 -c8 -d"${secs}s" --latency -s "$work/post-bodies-exact.lua" http://127.0.0.1:8181
for k in pdq phash md5; do
  echo
  echo "== POST /v1/match, batches of 1 000 $k hashes only (1% hits), wrk -t1 -c8 -d${secs}s"
  wrk -t1 -c8 -d"${secs}s" --latency -s "$work/post-bodies-$k.lua" http://127.0.0.1:8181
done
