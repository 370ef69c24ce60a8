#!/usr/bin/env bash
# Quick start, second command: install the test dependencies and run the checks and the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check fusevault tests
.venv/bin/lint-imports  # which package may import which: [tool.importlinter] in pyproject.toml
.venv/bin/mypy          # the packages listed in [tool.mypy] in pyproject.toml
# Tests run one after another: a parallel run (FUSEVAULT_TEST_WORKERS=N, pytest-xdist, each file
# whole on one worker, the longest first: LONG_FILES in tests/conftest.py) is quicker, but its
# workers still meet in global state (a command run outside a mount finds the others' mounts; the
# relay tests share one redis-server), so CI does not use it yet.
workers="${FUSEVAULT_TEST_WORKERS:-0}"
if [ "$workers" -gt 0 ]; then
    set -- -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
fi
exec .venv/bin/python -m pytest -q "$@"
