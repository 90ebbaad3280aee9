"""A ready ``config.toml`` for the ``--demo`` directory (``--print-config``).

The one place that knows how a client is configured against the demo:
``agentid-helper-emulator --demo --print-config`` prints it, and
scripts/demo.py writes it. The blueprint's credential is a ``secret_file``
the emulator writes into its state dir (0600), so no keyring is needed (a
headless machine often has none that unlocks); ``ca_bundle`` is the
emulator's CA in the same dir.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SECRET_FILE_NAME = "blueprint.secret"


def write_secret_file(state_dir: Path, secret: str) -> Path:
    """The demo blueprint's secret in ``state_dir`` (0600, written atomically,
    never through a file or link someone else put there)."""
    path = state_dir / SECRET_FILE_NAME
    tmp = state_dir / f".{SECRET_FILE_NAME}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.replace(tmp, path)
    return path


def _s(value: Any) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_demo_config(info: Mapping[str, Any]) -> str:
    """config.toml for the emulator described by ``info`` (its ready-file data:
    authority, CA, the demo directory's ids and ``blueprint_secret_file``)."""
    return f"""\
# agentid-helper config for the local Entra emulator's demo directory
# (printed by agentid-helper-emulator --demo --print-config; emulator pid {info["pid"]}).
# It holds no secret: the blueprint's secret is in blueprint_credential's file.
default_profile = "graph-bot"

[defaults]
tenant_id = {_s(info["tenant_id"])}
authority_host = {_s(info["authority_host"])}
ca_bundle = {_s(info["ca_bundle"])}
graph_endpoint = {_s(info["graph_endpoint"])}   # its Microsoft Graph (agent create ...)
blueprint_app_id = {_s(info["blueprint_app_id"])}
agent_identity_app_id = {_s(info["agent_identity_app_id"])}
blueprint_credential = {{ secret_file = {_s(info["blueprint_secret_file"])} }}

# the agent as itself (T1 + an app token)
[profiles.graph-bot]
mode = "AutonomousApp"

# for a signed-in user: agentid-helper get --profile on-behalf --user-token-file FILE
[profiles.on-behalf]
mode = "OBO"
scope = "User.Read"

# as the agent's own user account (T1 + T2 + user_fic)
[profiles.agent-user]
mode = "AutonomousUser"
user_upn = {_s(info["agent_user_upn"])}
"""
