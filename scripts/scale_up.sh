#!/usr/bin/env bash
# How far one node goes: a list of N synthetic entries (half PDQ, half SHA-256), measured the
# way an operator meets it:
#   1. `hashset build` (time, peak memory) and `hashset sign`;
#   2. `serve` from an empty state dir to /readyz (verify, build the index, persist it);
#   3. `serve` again from the state dir to /readyz (the saved index memory-mapped);
#   4. index bytes per entry (the state dir's .hidx files), peak memory of each start;
#   5. one thread, `hashsieve match --stats` over 10 000 PDQ and 1 000 000 SHA-256 (or KIND) random
#      queries (almost all misses, as partners' traffic is), from the saved index.
#   scripts/scale_up.sh N          e.g. scripts/scale_up.sh 10000000
#   KIND=pdq scripts/scale_up.sh N   all N entries of one kind (the hardest start: PDQ)
# Needs a release build (HASHSIEVE_BIN), about 100 bytes of disk per entry in $WORK (default
# /tmp/hashsieve-scale/N, or N-KIND) and, at 50 M, about 10 GB of memory.
set -euo pipefail
n=${1:?usage: scale_up.sh N}
kind=${KIND:-}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
work=${WORK:-/tmp/hashsieve-scale/$n${kind:+-$kind}}
mkdir -p "$work"
cd "$work"
half=$((n / 2))
t() { /usr/bin/time -f "%e s, peak RSS %M KB" "$@"; }
if [ ! -f scale.hset.minisig ]; then
  if [ -n "$kind" ]; then
    "$here/scripts/synth_entries.sh" "$n" "$kind" > entries.csv
  else
    { "$here/scripts/synth_entries.sh" "$half" pdq; "$here/scripts/synth_entries.sh" "$((n - half))" sha256 | tail -n +2; } > entries.csv
  fi
  "$H" keygen --unencrypted --force --secret-key k.sec --public-key k.pub 2>/dev/null
  echo "== build $n entries ($(du -h entries.csv | cut -f1) of CSV)"
  t "$H" hashset build --name scale --version 1 --threshold pdq=31 --expires 2031-01-01T00:00:00Z \
    -o scale.hset entries.csv 2>&1 | tail -1
  echo "== sign"
  t "$H" hashset sign --secret-key k.sec scale.hset 2>&1 | tail -1
fi
size=$(stat -c %s scale.hset)
mkdir -p published/scale
ln -f scale.hset published/scale/scale-1.hset
ln -f scale.hset.minisig published/scale/scale-1.hset.minisig
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > hashsieve.toml <<EOF
listen = "127.0.0.1:$port"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
max_set_bytes = $((size + 1024))
shutdown_grace_ms = 0
[[lists]]
name = "scale"
source = "dir:published/scale"
public_keys = ["$(sed -n 2p k.pub)"]
poll_seconds = 3600
EOF
start_to_ready() {
  local started pid rss now
  started=$(date +%s.%N)
  "$H" serve --config hashsieve.toml 2> serve.log &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "serve exited:"; cat serve.log; exit 1; }
    sleep 0.05
  done
  echo "$1: ready after $(echo "$(date +%s.%N) - $started" | bc | xargs printf '%.2f') s"
  rss=$(awk '/^VmHWM/{print int($2 / 1024)}' "/proc/$pid/status")
  # Mapped files count in RSS but are the page cache's: the process's own memory is RssAnon.
  now=$(awk '/^Rss(Anon|File)/{printf "%s %d MB ", $1, $2 / 1024}' "/proc/$pid/status")
  kill -TERM "$pid"
  wait "$pid" || true
  echo "   peak RSS $rss MB; when ready $now"
}
rm -rf state
echo "== serve, empty state dir (verify, build, persist)"
start_to_ready cold
echo "== serve, from the state dir (index memory-mapped)"
start_to_ready warm
idx=$(du -cb state/index/*.hidx | tail -1 | cut -f1)
echo "index: $idx bytes, $(echo "scale=1; $idx / $n" | bc) bytes per entry beyond the set ($(echo "scale=1; $size / $n" | bc) B/entry of set)"
for k in ${kind:-pdq sha256}; do
  case "$k" in pdq | phash | dhash | ahash) count=10000 ;; *) count=1000000 ;; esac
  [ -f "$k.queries" ] ||
    "$here/scripts/synth_entries.sh" "$count" "$k" | tail -n +2 | cut -d, -f1,2 | tr , : > "$k.queries"
  echo "== one thread, $k queries"
  RAYON_NUM_THREADS=1 "$H" match --stats --max-bytes $((size + 1024)) --index-dir state/index --hashset scale.hset \
    --public-key k.pub "$k.queries" 2>&1 >/dev/null | grep '^{' || true
done
