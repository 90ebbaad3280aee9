#!/usr/bin/env bash
# Sets everything up (idempotently), checks lint, formatting and types, then
# runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
code=(daemon client emulator tests bench scripts)
.venv/bin/ruff check "${code[@]}"
.venv/bin/ruff format --check --quiet "${code[@]}" || {
  echo "test.sh: run '.venv/bin/ruff format ${code[*]}' to format" >&2
  exit 1
}
.venv/bin/mypy # strict; the packages it checks are listed in pyproject.toml
.venv/bin/lint-imports # the layers and independence contracts in pyproject.toml ([tool.importlinter])
exec .venv/bin/python -m pytest "$@"
