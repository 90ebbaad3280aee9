"""Output formats: token/json/header/az, kubectl ExecCredential, RFC 3339 times."""

from __future__ import annotations

import time

from . import jsonlite
from .failures import EXIT_USAGE, ClientError
from .hotpath import render_plain
from .redact import quoted

TYPE_CHECKING = False  # typing costs ~10 ms of imports on the hot path
if TYPE_CHECKING:
    from typing import Any

EXEC_API_V1 = "client.authentication.k8s.io/v1"
EXEC_API_V1BETA1 = "client.authentication.k8s.io/v1beta1"
EXEC_APIS = (EXEC_API_V1, EXEC_API_V1BETA1)
MAX_EXPIRY_MARGIN_S = 60


def format_token(body: dict[str, Any], fmt: str) -> str:
    """Render a ``POST /v1/token`` response as ``token``, ``json``, ``header`` or ``az``."""
    if fmt == "json":
        return jsonlite.dumps(body, indent=2, sort_keys=True)
    if fmt == "az":
        return az_access_token(body)
    return render_plain(str(body["access_token"]), fmt)


def az_access_token(body: dict[str, Any]) -> str:
    """The JSON of ``az account get-access-token``, for tools that parse it.

    ``expiresOn`` is local time without a zone (``YYYY-MM-DD HH:MM:SS.ffffff``)
    as az prints it; ``expires_on`` is epoch seconds (az >= 2.54), which is
    what azure-identity's AzureCliCredential prefers when present.
    """
    expires_on = int(body["expires_on"])
    return jsonlite.dumps(
        {
            "accessToken": body["access_token"],
            "expiresOn": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.localtime(expires_on)),
            "expires_on": expires_on,
            "tenant": body.get("tenant_id"),
            "tokenType": body.get("token_type") or "Bearer",
        },
        indent=2,
    )


def rfc3339(epoch: float) -> str:
    """UTC RFC 3339 timestamp with second precision, e.g. ``2026-01-02T03:04:05Z``.

    The one formatter of an epoch for both sides (the daemon words a JWT's
    ``exp`` with it too). An instant the platform's ``time_t`` cannot hold (a
    forged ``exp`` of -1e300, infinity) is written as its number instead of
    raising: it is quoted in an error message, which must still be sent.
    """
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))
    except (OverflowError, ValueError, OSError):
        return f"epoch {epoch:g}"


def exec_api_version(env_value: str | None) -> str:
    """The ExecCredential apiVersion kubectl asked for in ``KUBERNETES_EXEC_INFO``.

    Absent or empty -> v1. Malformed JSON or an unsupported version is a usage
    error (exit 2): kubectl shows the message to the user.
    """
    if env_value is None or not env_value.strip():
        return EXEC_API_V1
    try:
        info = jsonlite.loads(env_value)
    except ValueError:
        raise ClientError("KUBERNETES_EXEC_INFO is not valid JSON", EXIT_USAGE) from None
    if not isinstance(info, dict):
        raise ClientError("KUBERNETES_EXEC_INFO is not a JSON object", EXIT_USAGE)
    version = info.get("apiVersion", EXEC_API_V1)
    if not isinstance(version, str) or version not in EXEC_APIS:
        raise ClientError(
            f"KUBERNETES_EXEC_INFO apiVersion {quoted(version)} is not supported "
            f"(supported: {', '.join(EXEC_APIS)})",
            EXIT_USAGE,
        )
    kind = info.get("kind", "ExecCredential")
    if kind != "ExecCredential":
        raise ClientError(
            f"KUBERNETES_EXEC_INFO kind {quoted(kind)} is not ExecCredential", EXIT_USAGE
        )
    return version


def exec_expiry(expires_on: float, now: float) -> float:
    """When kubectl should consider the token expired: a safety margin early.

    The margin is min(60 s, a tenth of the remaining lifetime), so that a
    short-lived token is not reported as already expired.
    """
    remaining = max(0.0, expires_on - now)
    return expires_on - min(MAX_EXPIRY_MARGIN_S, remaining / 10)


def exec_credential(body: dict[str, Any], api_version: str, now: float | None = None) -> str:
    """The ExecCredential JSON kubectl reads from an exec plugin's stdout."""
    status: dict[str, Any] = {"token": body["access_token"]}
    expires_on = body.get("expires_on")
    if isinstance(expires_on, (int, float)) and not isinstance(expires_on, bool):
        status["expirationTimestamp"] = rfc3339(
            exec_expiry(expires_on, time.time() if now is None else now)
        )
    return jsonlite.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "status": status}, indent=2
    )


def humanize_seconds(seconds: float) -> str:
    """``1h02m``, ``5m03s``, ``42s``; negative values read ``expired``."""
    if seconds < 0:
        return "expired"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
