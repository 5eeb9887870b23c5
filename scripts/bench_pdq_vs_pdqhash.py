#!/usr/bin/env python3
"""PDQ images/s: `hashsieve hash --kinds pdq` against the Python `pdqhash` package (Meta's C++
PDQ core, with Pillow decoding), on the same images, one thread each, in one sitting.

    python3 -m venv .venv && .venv/bin/pip install -r ../shared/conformance/requirements.txt
    cargo build --release
    .venv/bin/python scripts/bench_pdq_vs_pdqhash.py ../shared/conformance/images

hashsieve is timed as a whole process (start-up, reading, decoding, hashing, JSON output) with
RAYON_NUM_THREADS=1; pdqhash is timed in-process around open + convert("RGB") + compute, so
the comparison favours the Python side slightly. Medians of --runs repetitions.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pdqhash
from PIL import Image

Image.MAX_IMAGE_PIXELS = None


def python_pass(paths):
    start = time.perf_counter()
    for p in paths:
        im = Image.open(p)
        im.seek(0)
        arr = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
        pdqhash.compute(arr)
    return time.perf_counter() - start


def hashsieve_pass(binary, directory):
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run([binary, "hash", "--kinds", "pdq", directory], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("directory")
    ap.add_argument("--binary", default="target/release/hashsieve")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    paths = sorted(os.path.join(args.directory, f) for f in os.listdir(args.directory))
    n = len(paths)
    py, ours = [], []
    for _ in range(args.runs):  # interleaved, so both see the same machine load
        py.append(python_pass(paths))
        ours.append(hashsieve_pass(args.binary, args.directory))
    py_ips = n / statistics.median(py)
    our_ips = n / statistics.median(ours)
    print(f"images: {n}, runs: {args.runs}, one thread each")
    print(f"pdqhash (Pillow decode + Meta C++ PDQ): {py_ips:7.1f} images/s (median {statistics.median(py):.3f} s)")
    print(f"hashsieve hash --kinds pdq:             {our_ips:7.1f} images/s (median {statistics.median(ours):.3f} s)")
    print(f"ratio hashsieve / pdqhash: {our_ips / py_ips:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
