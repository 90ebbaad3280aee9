"""What ``agentid-helper doctor`` needs to know of a config, as one JSON line.

The client is stdlib-only and never imports the daemon (an import-linter
contract in pyproject.toml), yet its doctor must judge the config exactly as
the daemon will: with the daemon's own loader. So the doctor runs this module
in a child interpreter (``python -m agentid_daemon.config.doctor_view PATH``)
and reads its verdict from stdout:

- ``{"ok": false, "description": ..., "hint": ...}``: the loader refused the
  file, in its words (the description without the ``PATH: `` prefix);
- ``{"ok": true, "profiles": [...], "trusted_files": [...]}``: per profile its
  name, mode, requested scopes and whether its credential is the keyring's;
  and each file the daemon trusts under this config (``what``, ``path``,
  ``secret``), for the doctor's file-trust check.

No credential value is ever read here: specs name where a credential lives.
The exit status is 0 whenever a verdict was printed.
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

#: Credential kinds whose location is a file the daemon reads.
CREDENTIAL_FILE_KINDS = ("secret_file", "certificate_file", "federated_token_file")


def trusted_files(config: Config, config_path: str) -> list[dict[str, Any]]:
    """Each file the daemon trusts under ``config``: the config itself, the
    sidecar's header file, every ``ca_bundle`` and credential file."""
    files = [{"what": "config", "path": config_path, "secret": False}]
    header = config.daemon.managed_identity_header_file
    if header is not None:
        files.append({"what": "managed_identity_header_file", "path": str(header), "secret": True})
    layers = [("defaults", config.layered(config.defaults))] + [
        (f"profile {name}", config.layered(config.profiles[name]))
        for name in config.profile_names()
    ]
    for where, values in layers:
        if values.get("ca_bundle"):
            files.append(
                {"what": f"{where}: ca_bundle", "path": str(values["ca_bundle"]), "secret": False}
            )
        spec = values.get("blueprint_credential")
        if spec is not None and spec.kind in CREDENTIAL_FILE_KINDS and where != "defaults":
            files.append(
                {
                    "what": f"{where}: {spec.kind.replace('_', ' ')}",
                    "path": os.path.expandvars(str(spec.location)),
                    # as the daemon reads it: a federated token file is not a secret of ours
                    "secret": spec.kind != "federated_token_file",
                }
            )
    return files


def profiles(config: Config) -> list[dict[str, Any]]:
    """Per profile: what the doctor tests and how it describes the result."""
    out = []
    for name in config.profile_names():
        layered = config.layered(config.profiles[name])
        mode = layered.get("mode")
        spec = layered.get("blueprint_credential")
        out.append(
            {
                "name": name,
                "mode": mode.value if mode is not None else None,
                "scope": list(layered.get("scope") or normalise_scopes(DEFAULT_SCOPE)),
                "uses_keyring": spec is None or spec.kind == "keyring",
            }
        )
    return out


def verdict(path: str) -> dict[str, Any]:
    """The doctor's view of the config at ``path`` (absent = the empty config)."""
    try:
        config = load_config(path)
    except AgentIdError as exc:
        # The loader's text names the file already ("PATH: [profiles] ..."): once is enough.
        return {
            "ok": False,
            "description": exc.description.removeprefix(f"{path}: "),
            "hint": exc.hint,
        }
    return {
        "ok": True,
        "profiles": profiles(config),
        "trusted_files": trusted_files(config, path),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m agentid_daemon.config.doctor_view CONFIG_PATH", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(verdict(argv[0])) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
