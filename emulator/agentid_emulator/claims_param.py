"""The ``claims`` request parameter: what the emulator reads from it.

MSAL sends ``claims`` for a claims challenge (``claims_challenge=``) merged
with the app's ``client_capabilities`` as
``{"access_token": {"xms_cc": {"values": ["cp1"]}, ...}}``
(msal/application.py ``_merge_claims_challenge_and_capabilities``). Entra
stamps the capabilities into the access token's ``xms_cc`` claim, which tells a
CAE-enabled resource that the client can answer a claims challenge. The other
requested claims (``nbf``, ``acrs``...) ask Entra to re-evaluate the session;
the emulator has no session to re-evaluate, so it only checks they are
well-formed: every answer is minted fresh anyway.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import AadstsError


def capability_claims(form: dict[str, str]) -> dict[str, Any]:
    """``{"xms_cc": [...]}`` for a request whose claims declare capabilities, else ``{}``."""
    raw = form.get("claims")
    if not raw:
        return {}
    try:
        claims = json.loads(raw)
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        raise AadstsError(
            9002313,
            "Invalid request. Request is malformed or invalid: the "
            "claims parameter is not a JSON object.",
            error="invalid_request",
        )
    access = claims.get("access_token")
    xms_cc = access.get("xms_cc") if isinstance(access, dict) else None
    values = xms_cc.get("values") if isinstance(xms_cc, dict) else None
    if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
        return {"xms_cc": list(values)}
    return {}
