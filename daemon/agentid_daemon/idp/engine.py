"""The five Entra legs through MSAL: one sync method per leg, run in worker threads.

Every method performs exactly one token request (MSAL's own token cache and
HTTP replay memory are disabled, see :mod:`engine_http`), and turns MSAL's
result into an :class:`AcquiredToken` or an :class:`IdentityProviderError`.

MSAL applications are cached per (authority, client id, credential fingerprint,
ca_bundle): building one does discovery I/O. Agent identity apps authenticate
with the T1 token, which changes hourly; rather than one app per T1 they read
it from a per-thread holder the engine fills around each call, so one app
serves every T1 of an agent and concurrent threads never see each other's T1.
The blueprint credential is re-read on every T1 request: a rotated secret gets
a new fingerprint (a new app) and works at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from ..config.claims import merge_capabilities
from ..core.errors import ConfigurationError, IdentityProviderError
from ..core.models import TOKEN_EXCHANGE_SCOPE, AcquiredToken, AgentRef, CredentialSpec
from .credentials import ClientCredential, credential_fingerprint, load_client_credential
from .managed_identity import ManagedIdentitySource
from .msal_http import NeverStoreMapping, NoStoreTokenCache, ProviderSession, TrustStore
from .results import error_from_result, guard_call, redact, token_from_result


class _HeldAssertion:
    """MSAL ``client_assertion`` callable returning this thread's current T1."""

    def __init__(self, local: threading.local) -> None:
        self._local = local

    def __call__(self) -> str:
        value: str | None = getattr(self._local, "assertion", None)
        if not value:
            raise RuntimeError("no client assertion set for this request")
        return value

    def __repr__(self) -> str:
        return "<held client assertion>"


class Engine:
    """Token requests through MSAL; see INTERNALS.md for the seam."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        credential_loader: Callable[..., ClientCredential] = load_client_credential,
        max_apps: int = 256,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._load_credential = credential_loader
        self._max_apps = max_apps
        self._lock = threading.Lock()
        self._apps: OrderedDict[tuple[Any, ...], msal.ConfidentialClientApplication] = OrderedDict()
        self._build_locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._sessions: dict[str | None, ProviderSession] = {}
        self._trust = TrustStore()
        self._token_cache = NoStoreTokenCache()
        self._assertions = threading.local()
        self._held_assertion = _HeldAssertion(self._assertions)
        self._managed_identities = ManagedIdentitySource(
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
        )

    # ------------------------------------------------------------- warm-up

    def prepare(self, agent: AgentRef) -> None:
        """Build the MSAL clients ``agent``'s legs use (the blueprint's for T1 and
        the agent identity's), now: each costs one tenant discovery round trip
        (``/.well-known/openid-configuration``) and leaves a kept-alive connection
        to the authority in the shared session. No token is requested.

        A daemon started for a waiting client does this in its engine host
        (:mod:`..process.engine_host`) while it imports the rest of itself, so
        that the first request's legs start at their token requests. A failure
        here (an unreadable secret, an authority that does not answer) raises,
        and the first request meets it again and reports it as it would have.
        """
        if agent.credential.kind != "managed_identity":
            credential = self._load_credential(agent.credential)
            self._app(
                agent, agent.blueprint_app_id, credential, credential_fingerprint(credential), "t1"
            )
        self._agent_app(agent, "autonomous_app")

    # ------------------------------------------------------------- the legs

    def acquire_t1(self, agent: AgentRef, *, assertion: str | None = None) -> AcquiredToken:
        """Blueprint exchange token for ``agent`` (``fmi_path`` = agent identity app id).

        ``assertion``: the blueprint authenticates with this token (a managed
        identity's, see :mod:`.mi_credential`) instead of its credential source.
        """

        def call(app: msal.ConfidentialClientApplication) -> dict[str, Any]:
            return app.acquire_token_for_client(  # type: ignore[no-any-return]
                [TOKEN_EXCHANGE_SCOPE], fmi_path=agent.agent_identity_app_id
            )

        if assertion is not None:
            held = {"client_assertion": self._held_assertion}
            app, session = self._app(agent, agent.blueprint_app_id, held, "held-mi", "t1")
            self._assertions.assertion = assertion
            try:
                return self._run(
                    "t1", session, lambda: call(app), [TOKEN_EXCHANGE_SCOPE], agent.authority_host
                )
            finally:
                self._assertions.assertion = None
        if agent.credential.kind == "managed_identity":
            raise ValueError("a managed identity blueprint credential needs its token")
        credential = self._load_credential(agent.credential)
        app, session = self._app(
            agent, agent.blueprint_app_id, credential, credential_fingerprint(credential), "t1"
        )
        return self._run(
            "t1", session, lambda: call(app), [TOKEN_EXCHANGE_SCOPE], agent.authority_host
        )

    def acquire_blueprint_token(
        self, agent: AgentRef, scopes: tuple[str, ...], *, assertion: str | None = None
    ) -> AcquiredToken:
        """The blueprint's own app-only token for ``scopes`` (client credentials, no
        ``fmi_path``), e.g. Microsoft Graph's ``/.default`` to provision agent
        identities: entra-docs docs/agent-id/identity-platform/
        create-delete-agent-identities.md ("Get an access token using agent identity
        blueprint"). ``agent`` names the blueprint, tenant and authority; its agent
        identity app id is not used. ``assertion`` as for :meth:`acquire_t1`.
        """
        wanted = list(scopes)

        def call(app: msal.ConfidentialClientApplication) -> dict[str, Any]:
            return app.acquire_token_for_client(wanted)  # type: ignore[no-any-return]

        leg = "blueprint_app"
        if assertion is not None:
            held = {"client_assertion": self._held_assertion}
            app, session = self._app(agent, agent.blueprint_app_id, held, "held-mi", leg)
            self._assertions.assertion = assertion
            try:
                return self._run(leg, session, lambda: call(app), wanted, agent.authority_host)
            finally:
                self._assertions.assertion = None
        if agent.credential.kind == "managed_identity":
            raise ValueError("a managed identity blueprint credential needs its token")
        credential = self._load_credential(agent.credential)
        app, session = self._app(
            agent, agent.blueprint_app_id, credential, credential_fingerprint(credential), leg
        )
        return self._run(leg, session, lambda: call(app), wanted, agent.authority_host)

    def provider_session(self, ca_bundle: str | None) -> ProviderSession:
        """The HTTPS session for ``ca_bundle``'s trust (system roots plus the bundle,
        winning over ``REQUESTS_CA_BUNDLE``), shared with other HTTPS callers such
        as the Graph client."""
        return self._session(ca_bundle)

    def acquire_managed_identity(self, credential: CredentialSpec) -> AcquiredToken:
        """The managed identity's token for ``api://AzureADTokenExchange`` (T1's assertion)."""
        return self._managed_identities.acquire(credential)

    # ``claims``: a claims challenge (compact JSON, see claims.py), passed as
    # MSAL's ``claims_challenge``; MSAL merges the app's client_capabilities in.

    def acquire_autonomous_app(
        self, agent: AgentRef, t1: str, scopes: tuple[str, ...], *, claims: str | None = None
    ) -> AcquiredToken:
        return self._as_agent(
            "autonomous_app",
            agent,
            t1,
            scopes,
            lambda app: app.acquire_token_for_client(list(scopes), claims_challenge=claims),
        )

    def acquire_obo(
        self,
        agent: AgentRef,
        t1: str,
        user_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        """OBO with T1 as the client assertion; MSAL asks for ``offline_access``,
        so the result carries the refresh token a long-running session keeps."""
        return self._as_agent(
            "obo",
            agent,
            t1,
            scopes,
            lambda app: app.acquire_token_on_behalf_of(
                user_token, list(scopes), claims_challenge=claims
            ),
        )

    def acquire_obo_refresh(
        self,
        agent: AgentRef,
        t1: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        """The refresh-token grant of an agent identity, T1 as the client assertion
        (agent-on-behalf-of-oauth-flow.md, "Refresh token support")."""
        # acquire_token_by_refresh_token sends neither claims nor capabilities
        # on its own: merge them as MSAL's other legs do.
        merged = merge_capabilities(agent.client_capabilities, claims)
        data = {"claims": merged} if merged else {}
        return self._as_agent(
            "obo_refresh",
            agent,
            t1,
            scopes,
            lambda app: app.acquire_token_by_refresh_token(refresh_token, list(scopes), data=data),
        )

    def acquire_t2(self, agent: AgentRef, t1: str) -> AcquiredToken:
        return self._as_agent(
            "t2",
            agent,
            t1,
            (TOKEN_EXCHANGE_SCOPE,),
            lambda app: app.acquire_token_for_client([TOKEN_EXCHANGE_SCOPE]),
        )

    def acquire_user_fic(
        self,
        agent: AgentRef,
        t1: str,
        t2: str,
        scopes: tuple[str, ...],
        *,
        user_upn: str | None,
        user_object_id: str | None,
        claims: str | None = None,
    ) -> AcquiredToken:
        if bool(user_upn) == bool(user_object_id):
            raise ValueError("exactly one of user_upn and user_object_id is required")
        return self._as_agent(
            "user_fic",
            agent,
            t1,
            scopes,
            lambda app: app.acquire_token_by_user_federated_identity_credential(
                list(scopes),
                t2,
                username=user_upn,
                user_object_id=user_object_id,
                claims_challenge=claims,
            ),
        )

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._apps.clear()
        for session in sessions:
            session.close()
        self._managed_identities.close()

    # ------------------------------------------------------------- internals

    def _as_agent(
        self,
        leg: str,
        agent: AgentRef,
        t1: str,
        scopes: tuple[str, ...],
        call: Callable[[msal.ConfidentialClientApplication], dict[str, Any]],
    ) -> AcquiredToken:
        if not t1:
            raise ValueError("a T1 token is required")
        app, session = self._agent_app(agent, leg)
        self._assertions.assertion = t1
        try:
            return self._run(leg, session, lambda: call(app), list(scopes), agent.authority_host)
        finally:
            self._assertions.assertion = None

    def _agent_app(
        self, agent: AgentRef, leg: str
    ) -> tuple[msal.ConfidentialClientApplication, ProviderSession]:
        """The agent identity's MSAL app: T1 (held per thread) is its client assertion."""
        return self._app(
            agent,
            agent.agent_identity_app_id,
            {"client_assertion": self._held_assertion},
            "held-t1",
            leg,
            capabilities=agent.client_capabilities,
        )

    def _session(self, ca_bundle: str | None) -> ProviderSession:
        with self._lock:
            session = self._sessions.get(ca_bundle)
        if session is not None:
            return session
        session = ProviderSession(
            trust=self._trust.context(ca_bundle) if ca_bundle else None,
            connect_timeout_s=self._connect_timeout_s,
            read_timeout_s=self._read_timeout_s,
        )
        with self._lock:
            return self._sessions.setdefault(ca_bundle, session)

    def _app(
        self,
        agent: AgentRef,
        client_id: str,
        credential: ClientCredential,
        fingerprint: str,
        leg: str,
        *,
        capabilities: tuple[str, ...] = (),
    ) -> tuple[msal.ConfidentialClientApplication, ProviderSession]:
        """The MSAL app of ``client_id``; ``capabilities`` only for the agent's own
        legs (the blueprint's exchange token is no CAE resource's business)."""
        authority = f"{agent.authority_host}/{agent.tenant_id}"
        key = (authority, client_id, fingerprint, agent.ca_bundle, capabilities)
        session = self._session(agent.ca_bundle)
        with self._lock:
            app = self._apps.get(key)
            if app is not None:
                self._apps.move_to_end(key)
                return app, session
            build_lock = self._build_locks.setdefault(key, threading.Lock())
        with build_lock:  # one discovery per key, other keys proceed in parallel
            try:
                with self._lock:
                    app = self._apps.get(key)
                if app is None:
                    app = self._run_build(
                        leg, session, authority, client_id, credential, capabilities
                    )
                with self._lock:
                    self._apps[key] = app
                    self._apps.move_to_end(key)
                    while len(self._apps) > self._max_apps:
                        self._apps.popitem(last=False)
            finally:
                with self._lock:
                    self._build_locks.pop(key, None)
        return app, session

    def _run_build(
        self,
        leg: str,
        session: ProviderSession,
        authority: str,
        client_id: str,
        credential: ClientCredential,
        capabilities: tuple[str, ...] = (),
    ) -> msal.ConfidentialClientApplication:
        host = authority.split("://", 1)[1].split("/", 1)[0].lower()
        kwargs: dict[str, Any] = {}
        if host not in WELL_KNOWN_AUTHORITY_HOSTS:
            kwargs["instance_discovery"] = False
        if capabilities:
            kwargs["client_capabilities"] = list(capabilities)
        msal_credential = credential
        if isinstance(credential, dict) and "private_key" in credential:
            msal_credential = {
                "private_key": credential["private_key"],
                "public_certificate": credential["public_certificate"],
            }

        def build() -> msal.ConfidentialClientApplication:
            return msal.ConfidentialClientApplication(
                client_id,
                client_credential=msal_credential,
                authority=authority,
                token_cache=self._token_cache,
                http_client=session,
                http_cache=NeverStoreMapping(),
                **kwargs,
            )

        try:
            return guard_call(leg, session, build, discovery=authority, authority=authority)
        except (ValueError, TypeError) as exc:
            # MSAL's own checks (credential shape, unreadable discovery document).
            raise ConfigurationError(
                f"{leg}: cannot set up the MSAL client for {client_id} at {authority}: "
                f"{redact(str(exc))}"
            ) from None

    def _run(
        self,
        leg: str,
        session: ProviderSession,
        call: Callable[[], dict[str, Any]],
        scopes: list[str],
        authority_host: str,
    ) -> AcquiredToken:
        sent = time.time()
        result = guard_call(leg, session, call, authority=authority_host)
        if not isinstance(result, dict):
            raise IdentityProviderError(f"{leg}: no response from MSAL", transient=True, leg=leg)
        if "access_token" in result:
            return token_from_result(leg, result, sent, scopes)
        raise error_from_result(leg, result, session.last, origin=session.origin or authority_host)
