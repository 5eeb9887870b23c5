#!/usr/bin/env bash
# Writes N synthetic PDQ entries (random hashes from /dev/urandom) as hashset-build CSV.
#   scripts/synth_entries.sh 10000000 > /tmp/synth-10m.csv
set -euo pipefail
n=${1:?usage: synth_entries.sh N}
echo "kind,hash,category,ref"
head -c $((n * 32)) /dev/urandom | od -An -v -tx1 -w32 | tr -d ' ' \
  | awk '{ printf "pdq,%s,synthetic,S-%d\n", $0, NR }'
