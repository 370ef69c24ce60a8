#!/usr/bin/env bash
# Quick start, second command: install the test dependencies and run the checks and the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check fusevault tests
.venv/bin/lint-imports  # which package may import which: [tool.importlinter] in pyproject.toml
.venv/bin/mypy          # the packages listed in [tool.mypy] in pyproject.toml
exec .venv/bin/python -m pytest -q "$@"
