#!/usr/bin/env bash
# Prime Vault's cache for offline use from a manifest, and optionally export it as a bundle.
#
#   ./prepare-cache.sh [--config FILE] offline.yml [bundle.tar]
#
# offline.yml lists Python requirements and lock files, container images and plain URLs (see
# offline-sample.yml). The Vault config, whose cache_dir is filled, is --config FILE, else
# $ARTIFACT_VAULT_CONFIG (read by artifact-vault itself), else the embedded default. It runs
#
#   artifact-vault prefetch --config FILE --manifest offline.yml
#
# and, when a bundle path is given and every item was fetched,
#
#   artifact-vault export --config FILE --output bundle.tar
#
# A running Vault on the same cache_dir is fine: both fetch each artifact once between them.
# Exits with prefetch's status (1: some item failed, and no bundle is written; 2: bad config or
# manifest) or export's. artifact-vault is taken from PATH, else from this checkout's .venv
# (created on first use, as scripts/serve.sh does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: ./prepare-cache.sh [--config FILE] offline.yml [bundle.tar]"
config=
if [ "${1:-}" = "--config" ]; then
    config=${2:?$usage}
    shift 2
fi
manifest=${1:?$usage}
bundle=${2:-}
[ $# -le 2 ] || { echo "$usage" >&2; exit 2; }

if command -v artifact-vault >/dev/null; then
    vault=(artifact-vault)
else
    if [ ! -x "$here/.venv/bin/artifact-vault" ]; then
        python3 -m venv "$here/.venv"
        "$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
        "$here/.venv/bin/pip" install --quiet --no-deps -e "$here"
    fi
    vault=("$here/.venv/bin/artifact-vault")
fi
config_args=()
[ -z "$config" ] || config_args=(--config "$config")

"${vault[@]}" prefetch "${config_args[@]}" --manifest "$manifest"
if [ -n "$bundle" ]; then
    "${vault[@]}" export "${config_args[@]}" --output "$bundle"
fi
