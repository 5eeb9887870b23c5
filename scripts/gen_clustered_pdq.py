#!/usr/bin/env python3
"""A clustered PDQ corpus, after the model in ../shared/peers/README.md ("Clustered lists"),
written in the peers' file formats so that bench_faiss.py and scripts/peers_compare.sh read it
as they read the uniform one:

  pdq_list.txt, pdq_queries.txt, pdq_queries_meta.tsv, pdq_truth.tsv, meta.json

The model (our own parameters and seed; the bar is measured on a hidden corpus made the same
way):
  * bit bias: a fifth of the 256 bit positions are 1 with probability --bias (0.7);
  * families: --family-frac (0.6) of the entries are families of near-duplicates: a biased
    random base hash and members within 0-24 bits of it; sizes from a Zipf law (exponent
    2) truncated to 2-200; --copy-frac (0.05) of the members are exact copies of another
    member (another reference, same hash);
  * singletons: the rest are independent biased random hashes;
  * queries: --near-frac (0.02) within 0-31 bits of an entry, --far-frac (0.02) at 32-48,
    the rest fresh biased random hashes; the truth by exhaustive popcount (the harness's).

  python3 scripts/gen_clustered_pdq.py -n 1000000 --out /tmp/hashsieve-peers/c1000000
Needs numpy (the peers' venv has it). Deterministic for a given seed and arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "shared", "peers"))
import gen_pdq_corpus  # noqa: E402  (the harness: brute-force truth)
import hashio  # noqa: E402

BITS = 256


def biased_random(rng: np.random.Generator, count: int, biased: np.ndarray, p: float) -> np.ndarray:
    """`count` random hashes whose `biased` bit positions are 1 with probability `p`."""
    bits = rng.random((count, BITS)) < 0.5
    bits[:, biased] = rng.random((count, biased.size)) < p
    return np.packbits(bits, axis=1)


def flip(rng: np.random.Generator, h: np.ndarray, distance: int) -> np.ndarray:
    bits = np.unpackbits(h)
    bits[rng.choice(BITS, size=distance, replace=False)] ^= 1
    return np.packbits(bits)


def family_sizes(rng: np.random.Generator, total: int) -> list[int]:
    """Zipf(2) sizes truncated to 2..200 until they cover `total` entries."""
    sizes, covered = [], 0
    while covered < total:
        s = int(rng.zipf(2.0))
        if not 2 <= s <= 200:
            continue
        s = min(s, total - covered)
        if s < 2:
            break
        sizes.append(s)
        covered += s
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--n", type=int, default=1_000_000)
    ap.add_argument("-q", "--queries", type=int, default=10_000)
    ap.add_argument("--bias", type=float, default=0.7)
    ap.add_argument("--family-frac", type=float, default=0.6)
    ap.add_argument("--copy-frac", type=float, default=0.05)
    ap.add_argument("--max-member-distance", type=int, default=24)
    ap.add_argument("--near-frac", type=float, default=0.02)
    ap.add_argument("--far-frac", type=float, default=0.02)
    ap.add_argument("--radius", type=int, default=31)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    n, q = args.n, args.queries
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    biased = rng.choice(BITS, size=BITS // 5, replace=False)

    # Families, then singletons; shuffled so that list order says nothing.
    sizes = family_sizes(rng, int(n * args.family_frac))
    in_families = sum(sizes)
    lst = np.empty((n, 32), dtype=np.uint8)
    bases = biased_random(rng, len(sizes), biased, args.bias)
    at = 0
    for base, size in zip(bases, sizes):
        lst[at] = base
        for k in range(1, size):
            if rng.random() < args.copy_frac:
                lst[at + k] = lst[at + rng.integers(0, k)]
            else:
                lst[at + k] = flip(rng, base, int(rng.integers(0, args.max_member_distance + 1)))
        at += size
    lst[at:] = biased_random(rng, n - at, biased, args.bias)
    lst = lst[rng.permutation(n)]

    # Queries: near and far ones from random entries, the rest fresh.
    n_near, n_far = int(round(q * args.near_frac)), int(round(q * args.far_frac))
    src = rng.choice(n, size=n_near + n_far, replace=False)
    planted = np.concatenate([rng.integers(0, args.radius + 1, size=n_near),
                              rng.integers(args.radius + 1, 49, size=n_far)])
    queries = biased_random(rng, q, biased, args.bias)
    kinds = ["near"] * n_near + ["far"] * n_far + ["random"] * (q - n_near - n_far)
    srcs = np.full(q, -1, dtype=np.int64)
    dists = np.full(q, -1, dtype=np.int64)
    for k in range(n_near + n_far):
        queries[k] = flip(rng, lst[src[k]], int(planted[k]))
        srcs[k], dists[k] = src[k], planted[k]
    perm = rng.permutation(q)
    queries, srcs, dists = queries[perm], srcs[perm], dists[perm]
    kinds = [kinds[i] for i in perm]
    generate_s = time.perf_counter() - t0

    hashio.write_hex(os.path.join(args.out, "pdq_list.txt"), lst)
    hashio.write_hex(os.path.join(args.out, "pdq_queries.txt"), queries)
    with open(os.path.join(args.out, "pdq_queries_meta.tsv"), "w") as f:
        f.write("query\tkind\tsource\tplanted_distance\n")
        for j in range(q):
            f.write(f"{j}\t{kinds[j]}\t{srcs[j]}\t{dists[j]}\n")
    t0 = time.perf_counter()
    pairs = gen_pdq_corpus.brute_force_truth(lst, queries, args.radius, args.workers)
    truth_s = time.perf_counter() - t0
    with open(os.path.join(args.out, "pdq_truth.tsv"), "w") as f:
        f.write("query\tlist\tdistance\n")
        for qi, li, d in pairs:
            f.write(f"{qi}\t{li}\t{d}\n")
    found = {(qi, li) for qi, li, _ in pairs}
    missing = [j for j in range(q) if kinds[j] == "near" and (j, int(srcs[j])) not in found]
    if missing:
        sys.exit(f"BUG: the truth misses {len(missing)} planted pairs")
    meta = {
        "params": vars(args),
        "model": "clustered (scripts/gen_clustered_pdq.py)",
        "pdq": {"n": n, "queries": q, "near": n_near, "far": n_far, "radius": args.radius,
                "families": len(sizes), "in_families": in_families,
                "truth_pairs": len(pairs)},
        "timings": {"generate_s": round(generate_s, 3), "truth_s": round(truth_s, 3)},
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta["pdq"] | meta["timings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
