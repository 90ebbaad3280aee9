#!/usr/bin/env bash
# Sets everything up (idempotently), checks lint, formatting, types and the
# architecture's import contracts, then runs the whole test suite (what CI
# runs). `--fast` runs only the unit tier (about 30 s): no e2e, reliability,
# systemd or two-uid tests (markers set in tests/conftest.py's tiers_of; an
# emulator or daemon process makes a test e2e). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=()
if [ "${1:-}" = "--fast" ]; then
  shift
  tier=(-m "not e2e and not reliability and not systemd and not two_uids")
fi
scripts/setup.sh
code=(daemon client emulator tests bench scripts)
.venv/bin/ruff check "${code[@]}"
.venv/bin/ruff format --check --quiet "${code[@]}" || {
  echo "test.sh: run '.venv/bin/ruff format ${code[*]}' to format" >&2
  exit 1
}
.venv/bin/mypy # strict; the packages it checks are listed in pyproject.toml
.venv/bin/lint-imports # the layers and independence contracts in pyproject.toml ([tool.importlinter])
exec .venv/bin/python -m pytest "${tier[@]}" "$@"
