#!/usr/bin/env bash
# Several replicas on one machine, as Kubernetes would run them: a real S3 API (moto_server),
# three `hashsieve serve` replicas with their own state dirs polling one bucket, nginx in
# front as the load balancer, and a load through nginx that checks every answer. Then:
#   (a) a delta is published: every replica serves it (the worst replica's delay is reported)
#       and no answer ever mixes versions;
#   (b) the replicas are restarted one after another with SIGTERM (a rolling update): no
#       failed request;
#   (c) the S3 server goes away: every replica keeps serving and shows the source error in
#       /v1/lists; it comes back, a new version is published, and every replica serves it.
#
#   scripts/replicas.sh [SECONDS_OF_LOAD_PER_PHASE]     default 5 (CI runs 3)
# Needs: a built hashsieve ($HASHSIEVE_BIN, default target/release/hashsieve), nginx,
# moto_server ($HASHSIEVE_MOTO_SERVER or on PATH; its venv's python has boto3).
# Prints a summary; exit 0 only when there was no failed request, no inconsistent answer,
# and every replica caught up within 10 s of each publish.
set -euo pipefail
phase=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
H=${HASHSIEVE_BIN:-$here/target/release/hashsieve}
moto=${HASHSIEVE_MOTO_SERVER:-$(command -v moto_server || true)}
for need in "$H" "$moto" "$(command -v nginx || true)"; do
  [ -n "$need" ] && [ -x "$need" ] || { echo "replicas: needs hashsieve, moto_server and nginx" >&2; exit 2; }
done
py=$(dirname "$moto")/python3
[ -x "$py" ] || py=python3
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
s3_port=$(free_port)
lb_port=$(free_port)
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
now() { date +%s.%N; }

start_moto() {
  "$moto" -H 127.0.0.1 -p "$s3_port" > "$work/moto.log" 2>&1 &
  moto_pid=$!
  pids+=("$moto_pid")
  for _ in $(seq 1 100); do
    "$py" - "$AWS_ENDPOINT_URL" <<'PY' 2>/dev/null && return 0
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket="lists")
PY
    sleep 0.2
  done
  echo "replicas: moto_server did not start" >&2
  exit 2
}

# One list, three versions: the same 2 000 random MD5 entries plus a marker of the version
# (version v holds marker v only). A query for marker k matches exactly when the answering
# replica serves version k: an answer that says one version and matches as another mixed them.
"$H" keygen --unencrypted --secret-key "$work/k.sec" --public-key "$work/k.pub" 2>/dev/null
"$py" - "$work" <<'PY'
import random, sys
work = sys.argv[1]
rnd = random.Random(7)
base = [rnd.randbytes(16).hex() for _ in range(2000)]
markers = [rnd.randbytes(16).hex() for _ in range(4)]
open(f"{work}/markers", "w").write("\n".join(markers) + "\n")
for v in (1, 2, 3):
    with open(f"{work}/v{v}.csv", "w") as f:
        f.write("kind,hash,category,ref\n")
        for i, h in enumerate(base):
            f.write(f"md5,{h},synthetic,B-{i}\n")
        f.write(f"md5,{markers[v]},marker,M-{v}\n")
PY
for v in 1 2 3; do
  "$H" hashset build --name demo --version "$v" --created 2026-01-01T00:00:00Z \
    --expires 2031-01-01T00:00:00Z -o "$work/demo-$v.hset" "$work/v$v.csv" 2>/dev/null
  "$H" hashset sign --secret-key "$work/k.sec" "$work/demo-$v.hset" 2>/dev/null
done
for v in 2 3; do
  "$H" hashset diff "$work/demo-$((v - 1)).hset" "$work/demo-$v.hset" -o "$work/demo-$v.hdelta" 2>/dev/null
  "$H" hashset sign --secret-key "$work/k.sec" "$work/demo-$v.hdelta" 2>/dev/null
done
publish() { "$H" hashset publish --to s3://lists/demo/ "$@" 2>/dev/null; }

start_moto
publish "$work/demo-1.hset"

key=replica-test-key
ports=()
start_replica() {
  local i=$1
  HASHSIEVE_LOG=warn "$H" serve --config "$work/r$i/hashsieve.toml" >> "$work/r$i/log" 2>&1 &
  rpid[$i]=$!
  pids+=("${rpid[$i]}")
}
declare -a rpid
for i in 0 1 2; do
  ports[$i]=$(free_port)
  mkdir -p "$work/r$i"
  cat > "$work/r$i/hashsieve.toml" <<EOF
listen = "127.0.0.1:${ports[$i]}"
state_dir = "state"
audit_log = "audit.jsonl"
[limits]
shutdown_grace_ms = 1500
[[lists]]
name = "demo"
source = "s3://lists/demo/"
public_keys = ["$(sed -n 2p "$work/k.pub")"]
poll_seconds = 1
[[partners]]
name = "load"
key_sha256 = "$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
lists = ["demo"]
rate_per_second = 1000000
EOF
  start_replica "$i"
done
wait_ready() {
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "replicas: replica on port $1 not ready" >&2
  exit 1
}
for i in 0 1 2; do wait_ready "${ports[$i]}"; done

# nginx in front: a replica that stops answering is skipped (also for POSTs: matching is
# read-only, so retrying one elsewhere is safe).
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream replicas {
    server 127.0.0.1:${ports[0]} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:${ports[1]} max_fails=1 fail_timeout=2s;
    server 127.0.0.1:${ports[2]} max_fails=1 fail_timeout=2s;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$lb_port;
    location / {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 3;
      proxy_connect_timeout 1s;
    }
  }
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx" -g 'user root;' 2>>"$work/nginx/error.log"
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$lb_port/readyz" >/dev/null && break; sleep 0.1; done

# The load: four threads of single GETs for markers 1-3 through nginx, every answer checked.
"$py" - "$lb_port" "$key" "$work" > "$work/load.out" 2>&1 <<'PY' &
import http.client, json, os, sys, threading, time
port, key, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
markers = open(f"{work}/markers").read().split()
stats = {"requests": 0, "failed": 0, "inconsistent": 0, "versions": {}}
lock = threading.Lock()
def worker(n):
    conn = None
    i = n
    while not os.path.exists(f"{work}/stop"):
        v = 1 + i % 3
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/v1/match/md5/{markers[v]}", headers={"Authorization": f"Bearer {key}"})
            r = conn.getresponse()
            body = r.read()
            ok = r.status == 200
        except Exception as e:
            ok, conn = False, None
            err = repr(e)
        with lock:
            stats["requests"] += 1
            if not ok:
                stats["failed"] += 1
                continue
            answer = json.loads(body)
            served = answer["lists"].get("demo")
            stats["versions"][served] = stats["versions"].get(served, 0) + 1
            if (answer["verdict"] == "match") != (served == v):
                stats["inconsistent"] += 1
threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(stats))
PY
load=$!
pids+=("$load")

served_everywhere() {  # VERSION: seconds until every replica serves it (each one's, and the worst)
  local v=$1 start=$2 worst=0
  for i in 0 1 2; do
    for _ in $(seq 1 200); do
      got=$(curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:${ports[$i]}/v1/lists" \
        | "$py" -c 'import json,sys; print(json.load(sys.stdin)["lists"][0]["version"])' 2>/dev/null || true)
      [ "$got" = "$v" ] && break
      sleep 0.05
    done
    [ "$got" = "$v" ] || { echo "replicas: replica $i does not serve version $v within 10 s" >&2; exit 1; }
    t=$(echo "$(now) - $start" | bc)
    echo "  replica $i serves version $v after ${t} s"
    worst=$(echo "if ($t > $worst) $t else $worst" | bc)
  done
  echo "  worst replica: ${worst} s after the publish"
}

sleep "$phase"
echo "(a) publish the delta to version 2"
publish "$work/demo-2.hdelta"
served_everywhere 2 "$(now)"
sleep "$phase"

echo "(b) rolling restart, one replica after another (SIGTERM, drain, start, ready)"
for i in 0 1 2; do
  kill -TERM "${rpid[$i]}"
  wait "${rpid[$i]}" || { echo "replicas: replica $i did not exit cleanly" >&2; exit 1; }
  start_replica "$i"
  wait_ready "${ports[$i]}"
  echo "  replica $i restarted and ready (from its state dir)"
done
sleep "$phase"

echo "(c) the S3 server goes away"
kill "$moto_pid"; wait "$moto_pid" 2>/dev/null || true
sleep 3
for i in 0 1 2; do
  curl -sf -H "Authorization: Bearer $key" "http://127.0.0.1:${ports[$i]}/v1/lists" \
    | "$py" -c 'import json,sys; s=json.load(sys.stdin)["lists"][0]; assert s["version"]==2 and "cannot list" in (s["last_refusal"] or {}).get("reason",""), s; print("  replica %s serves version 2 and shows: %s" % (sys.argv[1], s["last_refusal"]["reason"][:70]))' "$i"
done
sleep "$phase"
echo "    it comes back (empty: moto keeps nothing), the lists are published again, and version 3"
start_moto
publish "$work/demo-1.hset" "$work/demo-2.hdelta"
publish "$work/demo-3.hdelta"
served_everywhere 3 "$(now)"
sleep 1

touch "$work/stop"
wait "$load"
echo "load through nginx: $(cat "$work/load.out")"
"$py" - "$work/load.out" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
bad = s["failed"] or s["inconsistent"] or s["requests"] == 0
print("replicas: %s: %d requests, %d failed, %d inconsistent" % ("FAIL" if bad else "OK", s["requests"], s["failed"], s["inconsistent"]))
sys.exit(1 if bad else 0)
PY
