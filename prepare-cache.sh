#!/usr/bin/env bash
# Prime Vault's cache for offline use: fetch every path in LIST through a temporary Vault.
#
#   ./prepare-cache.sh [--config FILE] LIST
#
# LIST has one Vault path per line (blank lines and # comments are skipped), e.g.
#   /debian/dists/bookworm/InRelease
#   /debian/pool/main/h/hello/hello_2.10-3_amd64.deb
# Vault is started on a free loopback port with FILE (default: the embedded config), so the
# cache it fills is that config's cache_dir. Exits non-zero if any path failed.
# (The full prefetch command, with pip requirements and images, comes with `artifact-vault prefetch`.)
set -euo pipefail
cd "$(dirname "$0")"
config_args=()
if [ "${1:-}" = "--config" ]; then
    config_args=(--config "$(realpath "$2")")
    shift 2
fi
list=${1:?usage: ./prepare-cache.sh [--config FILE] LIST}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scripts/serve.sh "${config_args[@]}" --host 127.0.0.1 --port "$port" --log-level WARNING &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "prepare-cache: Vault did not start" >&2; exit 1; }
    sleep 0.2
done
ok=0 failed=0
while IFS= read -r path || [ -n "$path" ]; do
    path=${path%%#*}; path=${path//[[:space:]]/}
    [ -n "$path" ] || continue
    if curl -fsS -o /dev/null "http://127.0.0.1:$port$path"; then
        ok=$((ok + 1)); echo "cached  $path"
    else
        failed=$((failed + 1)); echo "FAILED  $path" >&2
    fi
done < "$list"
echo "prepare-cache: $ok cached, $failed failed"
[ "$failed" -eq 0 ]
