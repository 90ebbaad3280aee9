#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine (Python 3.11+, root or sudo):
# system packages the tests use, then a venv in .venv with the project
# installed in editable mode with its test extras. A second run is fast: it
# only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# command -> Debian package that provides it
declare -A NEEDED=(
  [git]=git
  [gnome-keyring-daemon]=gnome-keyring
  [dbus-run-session]=dbus-daemon
  [dbus-daemon]=dbus-daemon
  [systemd-analyze]=systemd
  [systemd-socket-activate]=systemd
  [openssl]=openssl
  [strace]=strace
  [ss]=iproute2
  [jq]=jq
  [zsh]=zsh
  [man]=man-db
  # The sidecar pod test (tests/integration/test_sidecar_pod.py): a real
  # container engine, the OCI runtime that works with this machine's cgroup
  # layout, and the tool that makes its Debian base image offline.
  [podman]=podman
  [runc]=runc
  # podman builds its pods' infra (pause) image from catatonit.
  [catatonit]=catatonit
  [debootstrap]=debootstrap
)
missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
if ! command -v kubectl >/dev/null 2>&1; then
  # google-cloud-cli's kubectl where that apt source exists, Debian's otherwise
  if apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    missing+=(kubectl)
  else
    missing+=(kubernetes-client)
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Other sessions on this machine may run apt too: wait for dpkg's lock
  # rather than fail on it.
  APT_WAIT=(-o DPkg::Lock::Timeout=600)
  $SUDO apt-get "${APT_WAIT[@]}" update -qq
  # shellcheck disable=SC2046
  $SUDO apt-get "${APT_WAIT[@]}" install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Local users the trust-boundary and user-manager tests run as (tests run as
# root and drop to them). Names are tied to tests/support/machine_users.py by a test.
for user in agentid-alice agentid-mallory agentid-systemd; do
  if ! id -u "$user" >/dev/null 2>&1; then
    $SUDO useradd --create-home --shell /bin/bash --user-group "$user"
  fi
done

PY="${PYTHON:-python3}"
stamp=".venv/.installed-$(cat pyproject.toml emulator/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: creating .venv and installing agentid-helper[test] and agentid-helper-emulator" >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' -e ./emulator 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import agentid_daemon, agentid_client, agentid_emulator, msal, trio, pytest_trio'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# An editable install copies the launcher (a shared script) into .venv/bin once;
# keep that copy in step with client/launcher/agentid-helper as a reinstall would.
if ! cmp -s client/launcher/agentid-helper .venv/bin/agentid-helper; then
  install -m 755 client/launcher/agentid-helper .venv/bin/agentid-helper
fi
