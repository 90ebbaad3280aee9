"""An app polling the managed identity endpoint the way the Azure SDKs do (run as a script).

Run under ``agentid-helper exec``: it reads ``IDENTITY_ENDPOINT`` and
``IDENTITY_HEADER`` once, as the SDKs do, then sends ``GET`` with the header
every ``--every`` seconds until ``--stop`` exists, recording each answer in
``--log`` (one JSON line: status, whether the token is the squatter's forged
one; never the token or the header). Before stopping it asks once through
azure-identity's ``ManagedIdentityCredential`` and records that too.

    python identity_poller.py --log PATH --stop PATH [--every S]
    python identity_poller.py --once     one GET; prints its JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from endpoint_squatter import FORGED_TOKEN

RESOURCE = "https://graph.microsoft.com"


def _ask(endpoint: str, header: str) -> dict[str, object]:
    query = urllib.parse.urlencode({"resource": RESOURCE, "api-version": "2019-08-01"})
    req = urllib.request.Request(f"{endpoint}?{query}", headers={"X-IDENTITY-HEADER": header})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            token = json.loads(resp.read()).get("access_token", "")
            return {"status": resp.status, "forged": token == FORGED_TOKEN, "token": bool(token)}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "forged": False, "token": False}
    except (OSError, ValueError) as exc:
        return {"status": type(exc).__name__, "forged": False, "token": False}


def _sdk_once() -> dict[str, object]:
    from azure.identity import ManagedIdentityCredential

    try:
        token = ManagedIdentityCredential().get_token(f"{RESOURCE}/.default").token
    except Exception as exc:  # what the SDK raised is the result
        return {"sdk": type(exc).__name__}
    return {"sdk": "ok", "forged": token == FORGED_TOKEN}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path)
    parser.add_argument("--stop", type=Path)
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    endpoint, header = os.environ["IDENTITY_ENDPOINT"], os.environ["IDENTITY_HEADER"]
    if args.once:
        print(json.dumps(_ask(endpoint, header)))
        return
    with args.log.open("a") as log:
        log.write(json.dumps({"endpoint": endpoint, "pid": os.getpid()}) + "\n")
        while not args.stop.exists():
            log.write(json.dumps(_ask(endpoint, header)) + "\n")
            log.flush()
            time.sleep(args.every)
        log.write(json.dumps(_sdk_once()) + "\n")


if __name__ == "__main__":
    main()
