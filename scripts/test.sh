#!/usr/bin/env bash
# Quick start, second command: install the test dependencies and run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check fusevault tests
exec .venv/bin/python -m pytest -q "$@"
