"""``AgentIdentityCredential``: the daemon's agent tokens as an azure-core credential.

For Python code written against the Azure SDKs::

    from agentid_client.azure import AgentIdentityCredential
    from azure.keyvault.secrets import SecretClient

    client = SecretClient(vault_url, AgentIdentityCredential("graph-bot"))

It implements azure-core's ``TokenCredential`` (``get_token``) and
``SupportsTokenInfo`` (``get_token_info``) over the daemon's Unix socket,
like ``agentid-helper get``: the daemon caches and refreshes, so calling it
per request is cheap. azure-core is imported only when a token is asked
for: importing this module (and the client's hot paths) stays stdlib-only.

``claims`` (a claims challenge, e.g. from a CAE-enabled resource) is sent as
the request's ``claims`` field; ``enable_cae=True`` (azure-core asks for it
with ``BearerTokenCredentialPolicy(..., enable_cae=True)``) declares the
``cp1`` client capability (the request's ``client_capabilities``), so CAE
resources issue revocable tokens and answer revocations with a challenge
that the policy hands back here. ``tenant_id`` overrides the selection's
tenant, as it does for azure-identity's credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import daemon_api
from .commands import SELECTION_DESTS
from .failures import ClientError
from .transport import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from types import TracebackType

    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

# Keyword arguments the credential accepts: the CLI's selection (less the
# scope, which each get_token call names), the OBO user token itself and an
# OBO session's name.
SELECTION_KEYWORDS = (
    *(d for d in SELECTION_DESTS if d not in ("profile", "scope")),
    "user_token",
    "obo_session",
)
# What enable_cae declares: "cp1", the capability CAE resources look for.
CAE_CAPABILITIES = ("cp1",)


class AgentIdentityCredential:
    """An azure-core credential for one agent identity selection (profile and/or fields).

    :param profile: a profile of config.toml (default: ``default_profile``).
    :keyword selection: ``tenant_id``, ``blueprint_app_id``,
        ``agent_identity_app_id``, ``mode``, ``user_upn``, ``user_object_id``,
        ``user_token`` (OBO), overriding the profile as the CLI flags do.
    :keyword socket_path: the daemon's socket (default: as the CLI finds it).
    :keyword timeout: seconds to wait for the daemon (default
        :data:`.transport.DEFAULT_TIMEOUT_S`, 60).
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        socket_path: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        **selection: str,
    ) -> None:
        unknown = sorted(set(selection) - set(SELECTION_KEYWORDS))
        if unknown:
            raise TypeError(
                f"AgentIdentityCredential got unexpected keyword(s) {', '.join(unknown)}; "
                f"selection keywords are: {', '.join(SELECTION_KEYWORDS)}"
            )
        fields: dict[str, str] = {k: v for k, v in selection.items() if v is not None}
        if profile is not None:
            fields["profile"] = profile
        self._fields = fields
        self._socket_path = socket_path
        self._timeout = timeout

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._fields.items() if k != "user_token"}
        return f"AgentIdentityCredential({shown!r})"

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """azure-core ``TokenCredential.get_token``: a token for ``scopes``."""
        from azure.core.credentials import AccessToken

        info = self._request(scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        """azure-core ``SupportsTokenInfo.get_token_info``; carries ``refresh_on``."""
        opts = options or {}
        return self._request(
            scopes,
            claims=opts.get("claims"),
            tenant_id=opts.get("tenant_id"),
            enable_cae=bool(opts.get("enable_cae")),
        )

    def _request(
        self,
        scopes: tuple[str, ...],
        *,
        claims: str | None,
        tenant_id: str | None,
        enable_cae: bool = False,
    ) -> AccessTokenInfo:
        from azure.core.credentials import AccessTokenInfo
        from azure.core.exceptions import ClientAuthenticationError

        if not scopes:
            raise ValueError("get_token requires at least one scope")
        fields: dict[str, Any] = {**self._fields, "scope": " ".join(scopes)}
        if tenant_id:
            fields["tenant_id"] = tenant_id
        if claims:
            fields["claims"] = claims
        if enable_cae:
            fields["client_capabilities"] = list(CAE_CAPABILITIES)
        try:
            body = daemon_api.get_token(
                fields, socket_path=self._socket_path, timeout=self._timeout
            )
        except ClientError as exc:
            message = "; ".join([exc.message, *exc.hints])
            raise ClientAuthenticationError(message=f"agentid-helper: {message}") from None
        refresh_on = body.get("refresh_on")
        return AccessTokenInfo(
            str(body["access_token"]),
            int(body["expires_on"]),
            token_type=str(body.get("token_type") or "Bearer"),
            refresh_on=int(refresh_on) if isinstance(refresh_on, int | float) else None,
        )

    def close(self) -> None:
        """Nothing to release: every call uses its own connection."""

    def __enter__(self) -> AgentIdentityCredential:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
