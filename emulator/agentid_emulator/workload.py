"""The emulator's own workload-identity issuer (``{authority_host}/_emulator/workload``).

It stands in for a Kubernetes service account issuer or GitHub Actions: it
signs federated assertions that a blueprint with a matching federated identity
credential accepts (``blueprint_credential = { federated_token_file = ... }``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .directory import DEMO_WORKLOAD_SUBJECT, TOKEN_EXCHANGE_AUDIENCE, WORKLOAD_ISSUER_PATH

WORKLOAD_TOKEN_LIFETIME_S = 24 * 3600


def workload_issuer(authority_host: str) -> str:
    return authority_host + WORKLOAD_ISSUER_PATH


def mint_workload_token(
    service: Any,
    *,
    subject: Any = None,
    audience: Any = None,
    lifetime_s: int = WORKLOAD_TOKEN_LIFETIME_S,
) -> str:
    """A federated assertion from the emulator's workload issuer."""
    subject = subject if isinstance(subject, str) and subject else DEMO_WORKLOAD_SUBJECT
    audience = audience if isinstance(audience, str) and audience else TOKEN_EXCHANGE_AUDIENCE
    tenant_id = service.directory.summary.get("tenant_id", "")
    return str(
        service.issuer.mint(
            tenant_id,
            {"aud": audience, "sub": subject},
            lifetime_s=lifetime_s,
            issuer=workload_issuer(service.authority_host),
        )
    )


def write_workload_token(service: Any, path: Path) -> None:
    """Write (0600, atomically) a workload token like a projected service-account token."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(mint_workload_token(service))
    os.replace(tmp, path)
