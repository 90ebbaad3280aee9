"""``agentid-helper kubeconfig-user``: a kubeconfig ``users:`` entry for this helper.

YAML is written by hand (no PyYAML): every string scalar is emitted as a JSON
string, which is a valid YAML double-quoted scalar, so any profile name or
path is quoted safely.
"""

from __future__ import annotations

import os
import shutil
import sys

from . import jsonlite
from .failures import EXIT_CONFIG, ClientError

EXEC_API_VERSION = "client.authentication.k8s.io/v1"
SCRIPT_NAME = "agentid-helper"


def helper_command() -> str:
    """Absolute path of this installation's ``agentid-helper`` script."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == SCRIPT_NAME and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    beside = os.path.join(os.path.dirname(sys.executable), SCRIPT_NAME)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which(SCRIPT_NAME)
    if found:
        return os.path.abspath(found)
    raise ClientError(
        "cannot find the agentid-helper executable of this installation",
        EXIT_CONFIG,
        ["run kubeconfig-user through the installed `agentid-helper` script"],
    )


def _q(value: str) -> str:
    return jsonlite.dumps(value)


def users_entry(name: str, profile: str, command: str) -> str:
    """A ``users:`` list with one exec-plugin entry."""
    return (
        "\n".join(
            [
                "users:",
                f"- name: {_q(name)}",
                "  user:",
                "    exec:",
                f"      apiVersion: {_q(EXEC_API_VERSION)}",
                f"      command: {_q(command)}",
                "      args:",
                f"      - {_q('kubectl-credential')}",
                f"      - {_q('--profile')}",
                f"      - {_q(profile)}",
                "      interactiveMode: Never",
                "      provideClusterInfo: false",
            ]
        )
        + "\n"
    )
