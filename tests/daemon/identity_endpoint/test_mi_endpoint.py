"""mi_endpoint: the managed identity endpoint's handler, with a fake token source."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from agentid_daemon.core.errors import ConfigurationError, IdentityProviderError, UnknownProfile
from agentid_daemon.identity_endpoint.endpoint import MIEndpoint
from agentid_daemon.identity_endpoint.sessions import IdentitySession, SessionTable, new_header
from agentid_daemon.server.protocol import Response

AGENT = "66666666-7777-8888-9999-000000000000"
TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."


class FakeTokens:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def resolve_selection(self, obj: dict[str, Any]) -> Any:
        if self.error is not None:
            raise self.error
        return SimpleNamespace(agent=SimpleNamespace(agent_identity_app_id=AGENT))

    async def token_payload(self, obj: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(obj)
        ctx.update(source="identity_provider")
        return {"access_token": TOKEN, "expires_on": 1_800_000_000, "token_type": "Bearer"}


@pytest.fixture
def tokens() -> FakeTokens:
    return FakeTokens()


@pytest.fixture
def session() -> IdentitySession:
    return IdentitySession(new_header(), {"profile": "bot"}, label="profile bot", pid=1)


@pytest.fixture
def endpoint(tokens: FakeTokens, session: IdentitySession) -> MIEndpoint:
    table = SessionTable()
    table.add(session)
    return MIEndpoint(table, tokens)


async def get(
    endpoint: MIEndpoint,
    query: str,
    *,
    header: str | None,
    method: str = "GET",
    host: str = "127.0.0.1:5555",
) -> tuple[Response, Any]:
    headers = [("host", host)]
    if header is not None:
        headers.append(("x-identity-header", header))
    resp = await endpoint.handle_request(method, f"/msi/token?{query}", headers, b"")
    return resp, json.loads(resp.body)


Q = "resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01"


async def test_token(endpoint: MIEndpoint, tokens: FakeTokens, session: IdentitySession) -> None:
    resp, body = await get(endpoint, Q, header=session.header)
    assert resp.status == 200
    assert body == {
        "access_token": TOKEN,
        "expires_on": "1800000000",
        "resource": "https://vault.azure.net",
        "token_type": "Bearer",
        "client_id": AGENT,
    }
    assert tokens.asked == [{"profile": "bot", "scope": "https://vault.azure.net/.default"}]


async def test_claims_are_forwarded(
    endpoint: MIEndpoint, tokens: FakeTokens, session: IdentitySession
) -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    from urllib.parse import quote

    resp, _ = await get(endpoint, Q + "&claims=" + quote(claims), header=session.header)
    assert resp.status == 200
    assert tokens.asked[-1]["claims"] == claims


async def test_client_id(
    endpoint: MIEndpoint, tokens: FakeTokens, session: IdentitySession
) -> None:
    ok, _ = await get(endpoint, Q + "&client_id=" + AGENT.upper(), header=session.header)
    assert ok.status == 200
    other, body = await get(
        endpoint, Q + "&client_id=11111111-2222-3333-4444-555555555555", header=session.header
    )
    assert other.status == 400
    assert body["statusCode"] == 400
    assert len(tokens.asked) == 1  # the refused one never asked for a token


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"header": None}, 401),
        ({"header": "wrong"}, 401),
        ({"header": "SESSION", "method": "POST"}, 405),
        ({"header": "SESSION", "method": "HEAD"}, 405),
        ({"header": "SESSION", "host": "attacker.example:5555"}, 403),
        ({"header": "SESSION", "host": ""}, 403),
    ],
)
async def test_refusals(
    endpoint: MIEndpoint,
    tokens: FakeTokens,
    session: IdentitySession,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    if kwargs.get("header") == "SESSION":
        kwargs["header"] = session.header
    resp, body = await get(endpoint, Q, **kwargs)
    assert resp.status == status
    assert body["statusCode"] == status
    assert session.header not in resp.body.decode()
    assert tokens.asked == []


async def test_two_headers_are_refused(endpoint: MIEndpoint, session: IdentitySession) -> None:
    headers = [
        ("host", "127.0.0.1"),
        ("x-identity-header", session.header),
        ("x-identity-header", session.header),
    ]
    resp = await endpoint.handle_request("GET", f"/msi/token?{Q}", headers, b"")
    assert resp.status == 401


async def test_other_path(endpoint: MIEndpoint, session: IdentitySession) -> None:
    resp = await endpoint.handle_request(
        "GET",
        "/metadata/identity/oauth2/token?" + Q,
        [("host", "127.0.0.1"), ("x-identity-header", session.header)],
        b"",
    )
    assert resp.status == 404


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (
            IdentityProviderError(
                "t1: invalid_client",
                aadsts_codes=(7000215,),
                correlation_id="c0ffee",
                hint="rotate it",
            ),
            502,
            ["AADSTS7000215", "c0ffee", "rotate it"],
        ),
        (IdentityProviderError("t1: down", transient=True, retry_after_s=3.2), 503, ["down"]),
        (ConfigurationError("secret file /x does not exist"), 500, ["/x"]),
        (UnknownProfile("unknown profile 'bot'"), 500, ["unknown profile"]),
    ],
)
async def test_errors_in_app_service_shape(
    endpoint: MIEndpoint,
    tokens: FakeTokens,
    session: IdentitySession,
    error: Exception,
    status: int,
    words: list[str],
) -> None:
    tokens.error = error
    resp, body = await get(endpoint, Q, header=session.header)
    assert resp.status == status
    assert body["statusCode"] == status
    assert all(w in body["message"] for w in words)
    if status == 503:
        assert ("retry-after", "4") in resp.headers


@pytest.mark.parametrize(("asked", "forwarded"), [(0.2, "1"), (5, "5"), (20, "5"), (300, "5")])
async def test_retry_after_is_capped(
    endpoint: MIEndpoint,
    tokens: FakeTokens,
    session: IdentitySession,
    asked: float,
    forwarded: str,
) -> None:
    """The SDKs sleep Retry-After before each of three retries: a long one would block
    them for minutes, so at most MAX_RETRY_AFTER_S (5 s) of it is forwarded."""
    tokens.error = IdentityProviderError("t1: down", transient=True, retry_after_s=asked)
    resp, _ = await get(endpoint, Q, header=session.header)
    assert resp.status == 503
    assert [v for k, v in resp.headers if k == "retry-after"] == [forwarded]


async def test_requests_are_counted(tokens: FakeTokens, session: IdentitySession) -> None:
    from agentid_daemon.core.metrics import Metrics

    metrics = Metrics()
    table = SessionTable()
    table.add(session)
    endpoint = MIEndpoint(table, tokens, metrics)
    await get(endpoint, Q, header=session.header)
    await get(endpoint, Q, header="wrong")
    await endpoint.handle_request("GET", "/elsewhere", [("host", "127.0.0.1")], b"")
    text = metrics.render()
    assert 'agentid_helper_requests_total{endpoint="/msi/token",status="200"} 1' in text
    assert 'agentid_helper_requests_total{endpoint="/msi/token",status="401"} 1' in text
    assert 'agentid_helper_requests_total{endpoint="other",status="404"} 1' in text
    assert session.header not in text
