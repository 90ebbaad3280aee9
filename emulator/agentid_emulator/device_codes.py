"""The device code flow (RFC 8628) as Entra runs it, sans-IO.

``POST /{tenant}/oauth2/v2.0/devicecode`` (``client_id``, ``scope``) answers
``device_code``, ``user_code``, ``verification_uri``, ``expires_in``,
``interval`` and ``message``; the client then polls the token endpoint with
``grant_type=urn:ietf:params:oauth:grant-type:device_code`` and gets
``authorization_pending`` (AADSTS70016) until the user signed in, then a
delegated token for that user with the scopes asked for; ``expired_token``
(AADSTS70019) once the code expired. Nobody types the code into a browser
here: a test approves it with ``POST /_emulator/devicecode/approve
{"user_code", "upn"}``.

Deviation from Entra: ``interval`` is 1 second (Entra says 5), so that tests
using MSAL's ``acquire_token_by_device_flow`` finish quickly.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from .errors import AadstsError, missing_parameter

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_CODE_LIFETIME_S = 900
DEVICE_CODE_INTERVAL_S = 1
# The verification_uri (an admin route that explains how to approve).
DEVICE_LOGIN_PATH = "/_emulator/devicelogin"
# Public clients the emulator knows (no app registration needed): Azure CLI and
# Microsoft Graph PowerShell, the clients Entra's docs sign administrators in with.
PUBLIC_CLIENT_IDS = frozenset(
    {"04b07795-8ddb-461a-bbee-02f9e1bf7b46", "14d82eec-204b-4c2f-b7e8-296a70dab67e"}
)
# Entra's user codes: 9 characters without look-alikes.
_USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


@dataclass
class DeviceFlow:
    tenant_id: str
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    approved_upn: str | None = field(default=None)


class DeviceCodes:
    """Outstanding device codes (thread-safe); a code is redeemed once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_device_code: dict[str, DeviceFlow] = {}

    def issue(
        self, tenant_id: str, client_id: str, scope: str, *, now: float, verification_uri: str
    ) -> dict[str, object]:
        device_code = secrets.token_urlsafe(48)
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        flow = DeviceFlow(tenant_id, client_id, scope, user_code, now + DEVICE_CODE_LIFETIME_S)
        with self._lock:
            self._by_device_code = {
                k: v for k, v in self._by_device_code.items() if v.expires_at > now
            }
            self._by_device_code[device_code] = flow
        return {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification_uri,
            "expires_in": DEVICE_CODE_LIFETIME_S,
            "interval": DEVICE_CODE_INTERVAL_S,
            "message": f"To sign in, use a web browser to open the page {verification_uri} "
            f"and enter the code {user_code} to authenticate.",
        }

    def peek(self, user_code: str, *, now: float) -> DeviceFlow:
        """The pending flow of ``user_code``; KeyError if unknown or expired."""
        with self._lock:
            for flow in self._by_device_code.values():
                if flow.user_code == user_code.strip().upper() and flow.expires_at > now:
                    return flow
        raise KeyError(user_code)

    def approve(self, user_code: str, upn: str, *, now: float) -> DeviceFlow:
        """Mark the flow of ``user_code`` signed in by ``upn``; KeyError if unknown."""
        flow = self.peek(user_code, now=now)
        with self._lock:
            flow.approved_upn = upn
        return flow

    def redeem(self, tenant_id: str, form: dict[str, str], *, now: float) -> DeviceFlow:
        """The approved flow of a token request, or the AADSTS error to answer."""
        device_code = form.get("device_code")
        if not device_code:
            raise missing_parameter("device_code")
        with self._lock:
            flow = self._by_device_code.get(device_code)
            if (
                flow is None
                or flow.tenant_id.lower() != tenant_id.lower()
                or flow.client_id.lower() != (form.get("client_id") or "").lower()
            ):
                raise AadstsError(
                    70000,
                    "The provided value for the input parameter 'device_code' is not valid.",
                    error="invalid_grant",
                )
            if flow.expires_at <= now:
                del self._by_device_code[device_code]
                raise AadstsError(70019, "Verification code expired.", error="expired_token")
            if flow.approved_upn is None:
                raise AadstsError(
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    error="authorization_pending",
                )
            del self._by_device_code[device_code]
            return flow
