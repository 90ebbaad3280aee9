"""``agentid-helper init``: the wizard runs daemon-side, then the proof through the daemon.

The wizard needs MSAL (the device code sign-in), tomlkit and keyring, so it
is ``python -m agentid_daemon.provision.init`` run with this interpreter and
the terminal (stdio inherited): the client never imports the daemon. The
parsed flags go as one JSON argument (names, paths and ids: no secret); the
wizard hands back its result on a pipe. Then, like any user would, the
client asks the daemon: a reload (when one runs) so it sees the new
profiles, and the new profile's token, as ``agentid-helper get`` would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Any, TextIO

from . import daemon_api, paths
from .cliargs import Parsed
from .failures import EXIT_CONFIG, EXIT_OK, ClientError, DaemonNotRunning

#: The daemon-side wizard, run as ``python -m``.
INIT_MODULE = "agentid_daemon.provision.init"


def wizard_options(parsed: Parsed) -> dict[str, Any]:
    """Every ``init`` flag given (by destination) but ``--timeout``, which bounds
    the closing request here; plus the client's config path."""
    options: dict[str, Any] = {
        dest: value
        for dest, value in parsed.opts.items()
        if dest != "timeout" and value not in (None, False, [])
    }
    for dest in ("graph_token_file", "credential_file", "ca_bundle"):
        if dest in options:  # the wizard may run elsewhere: no relative paths
            options[dest] = os.path.abspath(os.path.expanduser(str(options[dest])))
    options["config_path"] = paths.config_path()
    return options


def run_wizard(options: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """Run the daemon-side wizard on this terminal; (its exit code, its result)."""
    import importlib.util

    if importlib.util.find_spec("agentid_daemon") is None:
        raise ClientError("init needs the daemon installed here (agentid_daemon)", EXIT_CONFIG)
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", INIT_MODULE, "--options", json.dumps(options)]
    try:
        proc = subprocess.Popen([*argv, "--result-fd", str(write_end)], pass_fds=(write_end,))
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as results:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                continue  # the wizard got the Ctrl-C too: it says what exists, then exits
        data = results.read()
    if code != 0:
        return code, None
    try:
        result = json.loads(data.decode("utf-8"))
    except ValueError:
        result = None
    return code, result if isinstance(result, dict) else None


def run_init(parsed: Parsed, stdout: TextIO, stderr: TextIO, timeout: float | None) -> int:
    code, result = run_wizard(wizard_options(parsed))
    if code != 0:
        return code
    if result is None:
        raise ClientError("init: the wizard gave no result", EXIT_CONFIG)
    profile = str(result["profile"])
    with contextlib.suppress(DaemonNotRunning):  # the request below starts it
        daemon_api.call_ok("POST", "/v1/reload", None, autostart=False, timeout=30)
    try:
        body = daemon_api.get_token({"profile": profile}, timeout=timeout)
    except ClientError as exc:
        exc.hints.append(
            f"the profile {profile} is written; `agentid-helper get --profile {profile}` "
            "tries again"
        )
        raise
    if not parsed.opts.get("json"):
        import time

        expires = body.get("expires_on")
        left = (
            f" (token valid {max(0, int(expires - time.time())) // 60} min)"
            if isinstance(expires, int | float)
            else ""
        )
        stdout.write(f"the daemon serves it: agentid-helper get --profile {profile} works{left}\n")
        stdout.flush()
    return EXIT_OK
