#!/usr/bin/env bash
# Builds the Dockerfile's runtime stage from local parts and runs it, where no Docker daemon
# and no registry are available (CI): buildah (Debian's, as root, vfs storage, chroot
# isolation) makes an image `from scratch` holding what the distroless stage holds (the
# binary, the libraries it links, the loader, passwd/group with the non-root user 65532, CA
# certificates, /tmp) plus the example lists and a config, then runs it and checks that it
# serves: /readyz, a match with a partner key, and that it runs as 65532, not root.
#   scripts/image_smoke.sh [BINARY]      default: target/release/hashsieve
# Exit 0 when it served; 2 when a prerequisite is missing (HASHSIEVE_REQUIRE_IMAGE=1 is
# what CI sets; without it a missing buildah is a skip with a message, exit 0).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/hashsieve}
if ! command -v buildah >/dev/null || [ "$(id -u)" != 0 ]; then
  if [ -n "${HASHSIEVE_REQUIRE_IMAGE:-}" ]; then
    echo "image_smoke: needs buildah (apt install buildah) and root" >&2
    exit 2
  fi
  echo "SKIPPED: image_smoke needs buildah and root"
  exit 0
fi
[ -x "$bin" ] || { echo "image_smoke: $bin: no such binary (cargo build --release)" >&2; exit 2; }
b() { buildah --storage-driver vfs "$@"; }
image=localhost/hashsieve-smoke
ctr=$(b from scratch)
run_ctr=""
server=""
# The service itself (named hashsieve, its config the image's), not the buildah process that
# started it: killing buildah leaves it running.
service_pids() {
  for pid in $(pgrep -x hashsieve); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "/etc/hashsieve/hashsieve.toml"; then
      echo "$pid"
    fi
  done
}
cleanup() {
  for pid in $(service_pids); do kill "$pid" 2>/dev/null || true; done
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  b rm "$ctr" $run_ctr >/dev/null 2>&1 || true
  b rmi -f "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT
mnt=$(b mount "$ctr")
# A scratch root is 0700: open it like a root filesystem, for the non-root user.
chmod 0755 "$mnt"

# The runtime stage: the stripped binary, what it links, the loader.
install -d "$mnt/usr/local/bin"
objcopy --strip-debug "$bin" "$mnt/usr/local/bin/hashsieve"
for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}'); do
  install -D -m 0755 "$lib" "$mnt$lib"
done
# What distroless/cc:nonroot brings besides: users, CA certificates, a /tmp.
install -d "$mnt/etc" "$mnt/etc/ssl/certs" -m 1777 "$mnt/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  > "$mnt/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$mnt/etc/group"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
install -d -o 65532 -g 65532 "$mnt/var/lib/hashsieve"

# For this check only: the example lists and a config that listens on every interface (so it
# needs partner keys, as a real deployment does).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="image-smoke-partner-key"
install -d "$mnt/etc/hashsieve/lists"
cp -r "$here/hashsets-example/alpha" "$here/hashsets-example/beta" "$mnt/etc/hashsieve/lists/"
cat > "$mnt/etc/hashsieve/hashsieve.toml" <<EOF
listen = "0.0.0.0:$port"
state_dir = "/var/lib/hashsieve/state"
audit_log = "/var/lib/hashsieve/audit.jsonl"
[limits]
shutdown_grace_ms = 0
[[lists]]
name = "alpha"
source = "dir:lists/alpha"
public_keys = ["$(sed -n 2p "$here/hashsets-example/example-only.pub")"]
[[lists]]
name = "beta"
source = "dir:lists/beta"
public_keys = ["$(sed -n 2p "$here/hashsets-example/example-only.pub")"]
[[partners]]
name = "smoke"
key_sha256 = "$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
lists = ["alpha", "beta"]
EOF
b umount "$ctr" >/dev/null
b config --user 65532:65532 --workingdir /var/lib/hashsieve --volume /var/lib/hashsieve \
  --env HASHSIEVE_LOG_FORMAT=json --port 8080 \
  --entrypoint '["/usr/local/bin/hashsieve"]' \
  --cmd 'serve --config /etc/hashsieve/hashsieve.toml' "$ctr"
b commit -q "$ctr" "$image" >/dev/null
echo "image_smoke: built $image"

# Run it (chroot isolation shares the host's network) as the image says: its user, its command.
run_ctr=$(b from "$image")
b run --isolation chroot "$run_ctr" -- /usr/local/bin/hashsieve serve \
  --config /etc/hashsieve/hashsieve.toml > "${TMPDIR:-/tmp}/image_smoke.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
ready=$(curl -sf "http://127.0.0.1:$port/readyz") || {
  echo "image_smoke: /readyz did not answer 200; the service said:" >&2
  cat "${TMPDIR:-/tmp}/image_smoke.log" >&2
  exit 1
}
echo "image_smoke: /readyz $ready"
verdict=$(curl -sf -H "Authorization: Bearer $key" \
  "http://127.0.0.1:$port/v1/match/md5/23c27aa63d968e8ece828abc8f6711a6")
case "$verdict" in
  *'"verdict":"match"'*) echo "image_smoke: a listed hash matches" ;;
  *) echo "image_smoke: expected a match, got $verdict" >&2; exit 1 ;;
esac
uid=""
for pid in $(service_pids); do
  uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
done
[ "$uid" = 65532 ] || { echo "image_smoke: the service runs as uid $uid, not 65532" >&2; exit 1; }
echo "image_smoke: runs as uid $uid; image OK"
