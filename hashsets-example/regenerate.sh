#!/usr/bin/env bash
# Rebuilds the example hash sets from entries/*.csv, byte for byte (the signatures differ on
# every run: Ed25519 signing in minisign is randomised). Run from hashsets-example/:
#
#     ./regenerate.sh                       # uses ../target/release/hashsieve
#     HASHSIEVE=/path/to/hashsieve ./regenerate.sh
#
# The CSVs come from the pictures: python3 make_entries.py ../target/release/hashsieve
set -euo pipefail
cd "$(dirname "$0")"
H="${HASHSIEVE:-../target/release/hashsieve}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# EXAMPLE-ONLY key: created once, committed on purpose so anyone can re-sign the examples.
if [ ! -f example-only.sec ]; then
  "$H" keygen --unencrypted --secret-key example-only.sec --public-key example-only.pub
fi

build() { # list version created description
  "$H" hashset build --name "$1" --version "$2" --created "$3" --expires 2031-01-01T00:00:00Z \
    --threshold pdq=31 --threshold phash=8 --description "$4" \
    -o "$work/$1-$2.hset" "entries/$1-$2.csv"
}
build alpha 1 2026-11-01T00:00:00Z "EXAMPLE list alpha: generated benign pictures, for demos and tests only"
build alpha 2 2026-11-15T00:00:00Z "EXAMPLE list alpha: generated benign pictures, for demos and tests only"
build beta 1 2026-11-01T00:00:00Z "EXAMPLE list beta: generated benign pictures, for demos and tests only"
build beta 2 2026-11-15T00:00:00Z "EXAMPLE list beta: generated benign pictures, for demos and tests only"

for list in alpha beta; do
  cp "$work/$list-1.hset" "$list/$list-1.hset"
  "$H" hashset diff "$work/$list-1.hset" "$work/$list-2.hset" -o "$list/$list-2.hdelta"
  "$H" hashset sign --secret-key example-only.sec "$list/$list-1.hset"
  "$H" hashset sign --secret-key example-only.sec "$list/$list-2.hdelta"
done
