#!/usr/bin/env bash
# The side-by-side benchmark (plain directory, gocryptfs, fusevault, fusevault with a peer); not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for p in gocryptfs fio; do
    command -v "$p" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
if ! command -v pouchdb-server >/dev/null && [ -z "${POUCHDB_SERVER:-}" ]; then  # the peer of "fusevault+peer"
    command -v npm >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
    npm install -g --no-audit --no-fund --loglevel=error pouchdb-server
fi
exec .venv/bin/python bench/run.py "$@"
