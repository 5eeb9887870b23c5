#!/usr/bin/env python3
"""Writes entries/*.csv from the hashes `hashsieve hash` computes for images/.

    python3 make_entries.py ../target/release/hashsieve      (from hashsets-example/)

The references are opaque ids (A-0001, ...): a reference lets a maintainer trace a hit, it must
never be a file name that says what the picture shows.
"""
import json
import subprocess
import sys

# list -> version -> [(image, reference)]; v2 drops one picture and adds another.
LISTS = {
    "alpha": {
        "kinds": ["md5", "sha256", "pdq", "phash"],
        "category": "example-a",
        1: [("sky-disc.jpg", "A-0001"), ("stripes-palette.gif", "A-0002"), ("small-square.png", "A-0003")],
        2: [("sky-disc.jpg", "A-0001"), ("small-square.png", "A-0003"), ("stripes-fade.png", "A-0004")],
    },
    "beta": {
        "kinds": ["sha1", "blake3", "pdq", "dhash", "ahash"],
        "category": "example-b",
        1: [("stripes.webp", "B-0001"), ("sky-disc-progressive.jpg", "B-0002")],
        2: [("stripes.webp", "B-0001"), ("stripes-palette.gif", "B-0003")],
    },
}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "../target/release/hashsieve"
    out = subprocess.run([binary, "hash", "images"], check=True, capture_output=True, text=True).stdout
    records = {json.loads(l)["path"].split("/")[-1]: json.loads(l) for l in out.splitlines()}
    for name, spec in LISTS.items():
        for version in (1, 2):
            rows = ["kind,hash,category,ref"]
            for image, ref in spec[version]:
                for kind in spec["kinds"]:
                    rows.append(f"{kind},{records[image][kind]},{spec['category']},{ref}")
            with open(f"entries/{name}-{version}.csv", "w") as f:
                f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
