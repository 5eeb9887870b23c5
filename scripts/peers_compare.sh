#!/usr/bin/env bash
# Side-by-side with ../shared/peers on one generated corpus, in one sitting:
#   scripts/peers_compare.sh N [THREADS]        e.g. scripts/peers_compare.sh 1000000 1
# Needs: cargo build --release; a venv with ../shared/peers/requirements.txt at $PEERS_VENV
# (default /tmp/peersvenv). Writes to $WORK (default /tmp/hashsieve-peers/nN).
# A clustered PDQ corpus: WORK=/tmp/hashsieve-peers/cN KINDS=pdq, after
# scripts/gen_clustered_pdq.py -n N --out $WORK/data.
set -euo pipefail
n=${1:?usage: peers_compare.sh N [THREADS]}
threads=${2:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
peers=$(cd "$here/../shared/peers" && pwd)
py=${PEERS_VENV:-/tmp/peersvenv}/bin/python
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
work=${WORK:-/tmp/hashsieve-peers/n$n}
kinds=${KINDS:-pdq sha256 md5}
mkdir -p "$work"
if [ ! -f "$work/data/meta.json" ]; then
  (cd "$peers" && "$py" gen_pdq_corpus.py -n "$n" --out "$work/data")
fi
# Our side: the same lists as signed sets (ref = 0-based line number, as in *_truth.tsv).
if [ ! -f "$work/key.pub" ]; then
  "$H" keygen --unencrypted --secret-key "$work/key.sec" --public-key "$work/key.pub" 2>/dev/null
fi
for kind in $kinds; do
  if [ ! -f "$work/$kind.hset" ]; then
    awk -v k="$kind" 'BEGIN { print "kind,hash,category,ref" } { printf "%s,%s,,%d\n", k, $1, NR - 1 }' \
      "$work/data/${kind}_list.txt" > "$work/$kind.csv"
    "$H" hashset build --name "peers-$kind" --version 1 --threshold pdq=31 -o "$work/$kind.hset" "$work/$kind.csv" 2>/dev/null
    "$H" hashset sign --secret-key "$work/key.sec" "$work/$kind.hset" 2>/dev/null
  fi
  sed "s/^/$kind:/" "$work/data/${kind}_queries.txt" > "$work/$kind.queries"
done
# Three processes; each matches its queries three times (--repeat 3) and reports the median of
# those runs, as the peers' harness times its methods (warm, the median of three), and its
# first run, which is what a single `hashsieve match` sees.
echo "== hashsieve (RAYON_NUM_THREADS=$threads; three processes of three runs each)"
for kind in $kinds; do
  medians=()
  firsts=()
  for run in 1 2 3; do
    /usr/bin/time -f "$kind peak RSS %M KB" env RAYON_NUM_THREADS="$threads" \
      "$H" match --stats --repeat 3 --hashset "$work/$kind.hset" --public-key "$work/key.pub" "$work/$kind.queries" \
      > "$work/$kind.verdicts" 2> "$work/$kind.stats" || true
    echo "$kind run $run $(grep '^{' "$work/$kind.stats") $(grep 'peak RSS' "$work/$kind.stats")"
    medians+=("$(grep '^{' "$work/$kind.stats" | sed -E 's/.*"qps":([0-9.]+).*/\1/')")
    firsts+=("$(grep '^{' "$work/$kind.stats" | sed -E 's/.*"runs":\[([0-9.]+).*/\1/')")
  done
  median=$(printf '%s\n' "${medians[@]}" | sort -g | sed -n 2p)
  first=$(printf '%s\n' "${firsts[@]}" | sort -g | sed -n 2p)
  printf "$kind median qps %.0f (first runs: median %.0f)\n" "$median" "$first"
done
"$py" - "$work" $kinds <<'PY'
import json, sys
work = sys.argv[1]
for kind in sys.argv[2:]:
    truth = set()
    with open(f"{work}/data/{kind}_truth.tsv") as f:
        for line in f:
            parts = line.split()
            if not parts or not parts[0].isdigit():
                continue
            truth.add((int(parts[0]), int(parts[1])))
    found = set()
    with open(f"{work}/{kind}.verdicts") as f:
        for q, line in enumerate(f):
            for m in json.loads(line)["matches"]:
                found.add((q, int(m["ref"])))
    tp = len(truth & found)
    print(f"{kind}: truth {len(truth)}, found {len(found)}, recall {tp / max(len(truth), 1):.4f}, false matches {len(found - truth)}")
PY
echo "== peers (--threads $threads)"
(cd "$peers" && "$py" bench_faiss.py --data "$work/data" --threads "$threads" \
  --out "$work/peers.json" --methods "${PEER_METHODS:-faiss_flat,faiss_mih11x23,tx_pdq,py_set_sha256,py_set_md5}")
