#!/usr/bin/env bash
# Install what fusevault needs on Debian/Ubuntu (run as root): system packages,
# and a virtualenv in .venv with fusevault in it.  Pass "test" to add the test
# dependencies (pouchdb-server from npm, pytest, ruff, mypy, import-linter in .venv-lint,
# systemd-analyze, zsh, chromium, docker-compose).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv git rsync sqlite3 redis-server)
if [ "${1:-}" = test ]; then
    command -v npm >/dev/null || packages+=(npm)
    packages+=(systemd zsh)  # systemd-analyze verifies the units; zsh checks its completion
    packages+=(autoconf automake make perl)  # build and run ../shared/conformance (pjdfstest, fsx)
    packages+=(chromium)  # a real browser opens capability links (tests/services/test_link_page.py)
    packages+=(docker-compose)  # reads contrib/containers/compose.yaml (tests/services/test_containers.py)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
extra=""
if [ "${1:-}" = test ]; then
    extra="[test]"
    command -v pouchdb-server >/dev/null || npm install -g --no-audit --no-fund --loglevel=error pouchdb-server
fi
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
if [ "${1:-}" = test ]; then
    # import-linter in a virtualenv of its own: it brings click, and httpx loads its own command line
    # (click, rich, pygments) at import when click is there.  In .venv every fusevault process of the
    # suite (some thousands) paid for that, which no user's install does.
    [ -x .venv-lint/bin/python ] || python3 -m venv .venv-lint
    .venv-lint/bin/pip install -q --disable-pip-version-check "import-linter>=2.1"
fi
