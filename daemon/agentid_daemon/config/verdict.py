"""The config file as the daemon reads it, in JSON for ``agentid-helper doctor``.

The client is stdlib-only and never imports the daemon, yet ``doctor`` must
judge the config with the daemon's own loader (one rule, not a copy). So it
runs ``python -m agentid_daemon.config.verdict PATH`` and renders the one JSON
object printed here: ``{"ok": false, "description", "hint"}`` when the daemon
would refuse the file, else ``{"ok": true, "exists", "profiles": [{"name",
"obo", "scope"}], "uses_keyring", "trusted_files": [[what, path, secret]]}``
(the files the daemon trusts besides the config itself, for doctor's
file-trust check). Exit status 0 either way: the verdict is the output.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..core.errors import AgentIdError
from ..core.models import DEFAULT_SCOPE
from .loader import Config, load_config
from .scopes import normalise_scopes

#: The credential kinds read from a file the daemon trusts.
CREDENTIAL_FILE_KINDS = ("secret_file", "certificate_file", "federated_token_file")


def trusted_files(config: Config) -> list[tuple[str, str, bool]]:
    """``(what, path, secret)`` for each file besides the config that ``config`` trusts."""
    files: list[tuple[str, str, bool]] = []
    header = config.daemon.managed_identity_header_file
    if header is not None:
        files.append(("managed_identity_header_file", str(header), True))
    layers = [("defaults", config.layered(config.defaults))] + [
        (f"profile {name}", config.layered(config.profiles[name]))
        for name in config.profile_names()
    ]
    for where, values in layers:
        if values.get("ca_bundle"):
            files.append((f"{where}: ca_bundle", str(values["ca_bundle"]), False))
        spec = values.get("blueprint_credential")
        if spec is not None and spec.kind in CREDENTIAL_FILE_KINDS and where != "defaults":
            location = os.path.expandvars(str(spec.location))
            secret = spec.kind != "federated_token_file"  # as the daemon reads it
            files.append((f"{where}: {spec.kind.replace('_', ' ')}", location, secret))
    return files


def uses_keyring(config: Config) -> bool:
    """True when some profile takes its blueprint credential from the keyring."""
    for profile in config.profiles.values():
        spec = config.layered(profile).get("blueprint_credential")
        if spec is None or spec.kind == "keyring":
            return True
    return False


def verdict(path: str) -> dict[str, Any]:
    """What the daemon makes of the config file at ``path``."""
    try:
        config = load_config(path)
    except AgentIdError as exc:
        return {"ok": False, "description": exc.description, "hint": exc.hint}
    profiles = []
    for name in config.profile_names():
        layered = config.layered(config.profiles[name])
        mode = layered.get("mode")
        # The requested scope (the cache key `flush --scope` selects), as status shows it.
        scope = layered.get("scope") or normalise_scopes(DEFAULT_SCOPE)
        obo = mode is not None and mode.value == "OBO"
        profiles.append({"name": name, "obo": obo, "scope": list(scope)})
    return {
        "ok": True,
        "exists": os.path.exists(path),
        "profiles": profiles,
        "uses_keyring": uses_keyring(config),
        "trusted_files": trusted_files(config),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m agentid_daemon.config.verdict CONFIG_PATH\n")
        return 2
    sys.stdout.write(json.dumps(verdict(argv[0])) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
