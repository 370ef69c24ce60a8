#!/usr/bin/env bash
# Quick start, second command: install the test dependencies and run the checks and the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check fusevault tests
.venv/bin/lint-imports  # which package may import which: [tool.importlinter] in pyproject.toml
.venv/bin/mypy          # the packages listed in [tool.mypy] in pyproject.toml
# Tests run one after another (FUSEVAULT_TEST_WORKERS=0, the default for now: under the load of 4
# workers on 2 cores test_relay's `send --keep` once missed its SIGINT deadline and a shared-mount
# stress test lost lines, both not yet diagnosed), or on N pytest-xdist workers, each file whole on one worker, the longest first (LONG_FILES in tests/conftest.py).  Every
# worker runs in a mount namespace of its own (pytest_xdist_setupnodes in tests/conftest.py), so a
# command run outside a mount sees only its own worker's mounts; every test file has a redis-server
# of its own.  FUSEVAULT_TEST_WORKERS=4 ran the suite in 19 min on 2 cores (serial: ~46 min).
workers="${FUSEVAULT_TEST_WORKERS:-0}"
if [ "$workers" -gt 0 ]; then
    set -- -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
