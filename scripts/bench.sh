#!/usr/bin/env bash
# The side-by-side benchmark (plain directory, gocryptfs, fusevault); not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for p in gocryptfs fio; do
    command -v "$p" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
exec .venv/bin/python bench/run.py "$@"
