"""What the SDK programs print: never the token, only its digest and claims.

The test compares the digest with the token the daemon serves and checks the
claims; printing a token would put it in test output.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def describe(token: str, expires_on: int) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "expires_on": int(expires_on),
        "claims": {k: claims.get(k) for k in ("aud", "appid", "tid", "idtyp")},
    }


def emit(report: dict[str, Any]) -> None:
    print(json.dumps(report), flush=True)
