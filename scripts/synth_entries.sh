#!/usr/bin/env bash
# Writes N synthetic entries of one kind (random hashes from /dev/urandom) as hashset-build
# CSV; KIND defaults to pdq.
#   scripts/synth_entries.sh 10000000 > /tmp/synth-10m.csv
#   scripts/synth_entries.sh 1000000 phash > /tmp/phash-1m.csv
# Queries in `hashsieve match` form (random, so almost all misses):
#   scripts/synth_entries.sh 20000 phash | tail -n +2 | cut -d, -f1,2 | tr , : > /tmp/q.txt
set -euo pipefail
n=${1:?usage: synth_entries.sh N [KIND]}
kind=${2:-pdq}
case "$kind" in
  md5) bytes=16 ;;
  sha1) bytes=20 ;;
  sha256 | blake3 | pdq) bytes=32 ;;
  phash | dhash | ahash) bytes=8 ;;
  *) echo "synth_entries.sh: unknown kind $kind" >&2; exit 2 ;;
esac
echo "kind,hash,category,ref"
head -c $((n * bytes)) /dev/urandom | od -An -v -tx1 -w"$bytes" | tr -d ' ' \
  | awk -v k="$kind" '{ printf "%s,%s,synthetic,S-%d\n", k, $0, NR }'
