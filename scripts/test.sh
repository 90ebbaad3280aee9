#!/usr/bin/env bash
# Sets everything up (idempotently) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check daemon client emulator tests bench scripts
exec .venv/bin/python -m pytest "$@"
