#!/usr/bin/env bash
# Quick start, second command: install the test dependencies and run the checks and the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check fusevault tests
.venv/bin/lint-imports  # which package may import which: [tool.importlinter] in pyproject.toml
.venv/bin/mypy          # the packages listed in [tool.mypy] in pyproject.toml
# Most of a test's time is spent waiting on the processes it starts (mounts, servers, commands), so
# more workers than cores (2 in CI) pay; each test file runs whole on one worker (its module fixtures,
# its Linux users), the longest files first (LONG_FILES in tests/conftest.py).
exec .venv/bin/python -m pytest -q -n "${FUSEVAULT_TEST_WORKERS:-4}" --dist loadfile --no-loadscope-reorder "$@"
