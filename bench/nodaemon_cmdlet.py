"""The no-daemon path: what ``Get-EntraBetaAgentIdentityToken`` costs per call.

A fresh process that imports MSAL and performs the legs the PowerShell cmdlet
performs on every call, with nothing cached between calls: T1 (blueprint
``client_credentials`` with ``fmi_path`` = agent identity) and then the
AutonomousApp leg (agent identity ``client_credentials`` with T1 as the
client assertion). It talks to the emulator named by an emulator ready-file.

    python bench/nodaemon_cmdlet.py --ready-file F [--scope S]

Exit 0 when a token was obtained (nothing is printed: the token is never
written anywhere), 1 with a one-line error otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
DEFAULT_SCOPE = "https://graph.microsoft.com/.default"


def _fail(leg: str, result: dict[str, Any]) -> int:
    codes = result.get("error_codes") or []
    print(f"nodaemon_cmdlet: {leg} failed: {result.get('error')} {codes}", file=sys.stderr)
    return 1


def acquire(info: dict[str, Any], scope: str) -> int:
    # REQUESTS_CA_BUNDLE set in the environment would override MSAL's
    # verify= (requests merges the environment per request); the cmdlet
    # trusts the given CA, so this process does too.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(var, None)
    import msal  # timed on purpose: every cmdlet call pays it

    authority = f"{str(info['authority_host']).rstrip('/')}/{info['tenant_id']}"
    common: dict[str, Any] = {
        "authority": authority,
        "instance_discovery": False,
        "verify": info["ca_bundle"],
    }
    blueprint = msal.ConfidentialClientApplication(
        info["blueprint_app_id"], client_credential=info["blueprint_secret"], **common
    )
    t1 = blueprint.acquire_token_for_client(
        [EXCHANGE_SCOPE], fmi_path=info["agent_identity_app_id"]
    )
    if "access_token" not in t1:
        return _fail("T1", t1)
    agent = msal.ConfidentialClientApplication(
        info["agent_identity_app_id"],
        client_credential={"client_assertion": t1["access_token"]},
        **common,
    )
    tok = agent.acquire_token_for_client([scope])
    if "access_token" not in tok:
        return _fail("AutonomousApp", tok)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--ready-file", required=True, type=Path, help="the emulator's --ready-file JSON"
    )
    parser.add_argument("--scope", default=DEFAULT_SCOPE)
    args = parser.parse_args(argv)
    try:
        info = json.loads(args.ready_file.read_text())
    except (OSError, ValueError) as exc:
        print(f"nodaemon_cmdlet: cannot read {args.ready_file}: {exc}", file=sys.stderr)
        return 1
    return acquire(info, args.scope)


if __name__ == "__main__":
    sys.exit(main())
