#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite. Extra arguments go to pytest.
# As root (CI) it installs the Debian packages the integration tests drive; otherwise it
# checks they are there and says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(apt ca-certificates debian-archive-keyring openssl skopeo docker-registry
             podman containerd docker.io
             chromium chromium-driver)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        echo "test.sh: missing Debian packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

python3 -m venv .venv
.venv/bin/pip install --quiet -r requirements.txt -r tests/requirements.txt
.venv/bin/pip install --quiet --no-deps -e .

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
exit $rc
