#!/bin/sh
# Install Artifact Vault into its own virtualenv at PREFIX (default /opt/artifact-vault).
# The Dockerfile runs exactly this, deploy/artifact-vault.service runs PREFIX/bin/artifact-vault,
# and tests/test_deploy.py runs it into a temp folder and starts the result.
#   sudo deploy/install.sh [PREFIX]
set -eu
prefix=${1:-/opt/artifact-vault}
src=$(cd "$(dirname "$0")/.." && pwd)
python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet --no-cache-dir --upgrade pip
"$prefix/bin/pip" install --quiet --no-cache-dir -r "$src/requirements.txt"
"$prefix/bin/pip" install --quiet --no-cache-dir --no-deps "$src"
"$prefix/bin/artifact-vault" --version
