#!/usr/bin/env bash
# URL lookups, privacy mode against full hashes (docs/benchmarks.md, "URL lists"): a list of
# ENTRIES synthetic URL patterns (hosts, path prefixes and exact URLs, all under .example),
# QUERIES random URLs of which PERCENT% fall under a listed pattern, one service on
# loopback; examples/url_privacy.rs checks that both modes give the same verdict for every
# URL and prints URLs/s and bytes on the wire per URL.
#
#   scripts/url_privacy.sh [ENTRIES] [QUERIES] [PERCENT]      default 100000 10000 1
# Needs: cargo (builds release binaries), python3.
set -euo pipefail
entries=${1:-100000}
queries=${2:-10000}
percent=${3:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin hashsieve --example url_privacy
H=$here/target/release/hashsieve
X=$here/target/release/examples/url_privacy
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
python3 - "$entries" "$queries" "$percent" <<'PY'
import random, sys
n, q, pct = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(20261202)
word = lambda: "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10)))
patterns = []
with open("urls.csv", "w") as f:
    f.write("kind,hash,category,ref\n")
    for i in range(n):
        host = f"{word()}{i}.example"
        shape = i % 3
        if shape == 0:
            p = host                                  # the whole host
        elif shape == 1:
            p = f"http://{host}/{word()}/"            # a directory
        else:
            p = f"http://{host}/{word()}/{word()}.html"   # one page
        patterns.append((shape, p))
        f.write(f"url,{p},{'ABC'[i % 3]},u-{i}\n")
with open("queries.txt", "w") as f:
    for j in range(q):
        if rng.random() * 100 < pct:
            shape, p = rng.choice(patterns)
            if shape == 0:
                url = f"http://www.{p}/{word()}/{word()}.html?id={j}"
            elif shape == 1:
                url = f"{p}{word()}.html"
            else:
                url = p
        else:
            url = f"http://{word()}{rng.randint(0, 10**9)}.example/{word()}/{word()}.html?q={j}"
        f.write(url + "\n")
PY
"$H" keygen --secret-key k.key --public-key k.pub --unencrypted >/dev/null 2>&1
mkdir -p published/urls
"$H" hashset build --name urls --version 1 -o published/urls/urls-1.hset urls.csv 2>/dev/null
"$H" hashset sign --secret-key k.key published/urls/urls-1.hset >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > hashsieve.toml <<TOML
listen = "127.0.0.1:$port"
state_dir = "state"
audit_log = "audit.jsonl"
[[lists]]
name = "urls"
source = "dir:published/urls"
public_keys = ["$(sed -n 2p k.pub)"]
TOML
RUST_LOG=warn "$H" serve --config hashsieve.toml 2>serve.log &
pid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "list: $entries URL patterns; queries: $queries URLs, $percent% under a listed pattern"
"$X" "http://127.0.0.1:$port" queries.txt
