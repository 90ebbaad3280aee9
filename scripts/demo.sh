#!/usr/bin/env bash
# Sets everything up (idempotently) and runs the demo: the local Entra
# emulator, the daemon, and the client fetching tokens in all three modes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
