#!/usr/bin/env bash
# Set up a virtualenv (first run only) and start Artifact Vault.
# With no arguments it runs the embedded default config: cache in ./vault-cache, port 8080.
# Any arguments go to the server, e.g.: scripts/serve.sh --config config-sample.yml
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/artifact-vault ] || [ requirements.txt -nt .venv/bin/artifact-vault ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet -r requirements.txt
    .venv/bin/pip install --quiet --no-deps -e .
fi
exec .venv/bin/artifact-vault serve "$@"
