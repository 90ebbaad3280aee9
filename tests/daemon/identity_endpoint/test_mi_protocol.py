"""mi_protocol: the App Service managed identity request/response shapes, and a fuzzer."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentid_daemon.config.fields import parse_listen
from agentid_daemon.identity_endpoint import protocol as P


def target(**params: str) -> str:
    return P.PATH + "?" + urllib.parse.urlencode(params)


def test_parse_what_azure_identity_sends() -> None:
    query = P.parse_target(
        target(**{"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"})
    )
    assert query == P.MIQuery(resource="https://graph.microsoft.com")
    assert query.scope == "https://graph.microsoft.com/.default"


def test_parse_client_id_and_claims() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    query = P.parse_target(
        target(
            **{
                "api-version": "2019-08-01",
                "resource": "api://x",
                "client_id": "ABC",
                "claims": claims,
            }
        )
    )
    assert (query.client_id, query.claims) == ("ABC", claims)


@pytest.mark.parametrize(
    ("tgt", "status", "words"),
    [
        ("/other?resource=r&api-version=2019-08-01", 404, "no such endpoint"),
        (P.PATH + "?resource=r", 400, "missing api-version"),
        (P.PATH + "?resource=r&api-version=2017-09-01", 400, "unsupported api-version"),
        (P.PATH + "?api-version=2019-08-01", 400, "missing resource"),
        (P.PATH + "?api-version=2019-08-01&resource=", 400, "missing resource"),
        (P.PATH + "?api-version=2019-08-01&resource=a&resource=b", 400, "repeated"),
        (P.PATH + "?api-version=2019-08-01&resource=a%20b", 400, "resource is malformed"),
        (P.PATH + "?api-version=2019-08-01&resource=%ff", 400, "malformed query"),
        (P.PATH + "?api-version=2019-08-01&resource=r&object_id=x", 400, "object_id"),
        (P.PATH + "?api-version=2019-08-01&resource=r&mi_res_id=x", 400, "mi_res_id"),
        (P.PATH + "?api-version=2019-08-01&resource=r&principal_id=x", 400, "principal_id"),
        (P.PATH + "?" + "&".join(f"k{i}=v" for i in range(40)), 400, "malformed query"),
        (P.PATH + "?resource=" + "a" * 5000, 414, "too long"),
    ],
)
def test_parse_refusals(tgt: str, status: int, words: str) -> None:
    with pytest.raises(P.MIRequestError) as err:
        P.parse_target(tgt)
    assert err.value.status == status
    assert words in err.value.message


def test_unknown_parameters_are_ignored() -> None:
    query = P.parse_target(
        target(**{"api-version": "2019-08-01", "resource": "r", "xms_cc": "cp1"})
    )
    assert query.resource == "r"


@pytest.mark.parametrize(
    ("resource", "scope"),
    [
        ("https://graph.microsoft.com", "https://graph.microsoft.com/.default"),
        ("https://vault.azure.net/.default", "https://vault.azure.net/.default"),
        ("499b84ac-1321-427f-aa17-267ca6975798", "499b84ac-1321-427f-aa17-267ca6975798/.default"),
    ],
)
def test_resource_to_scope(resource: str, scope: str) -> None:
    assert P.resource_to_scope(resource) == scope


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:4000", True),
        ("localhost:1", True),
        ("LOCALHOST", True),
        ("[::1]:80", True),
        ("evil.example:4000", False),
        ("127.0.0.1.evil.example", False),
        ("", False),
        (None, False),
        ("[::1", False),
    ],
)
def test_host_allowed(host: str | None, ok: bool) -> None:
    assert P.host_allowed(host) is ok


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8081", ("127.0.0.1", 8081)),
        ("localhost:9", ("127.0.0.1", 9)),
        ("[::1]:8081", ("::1", 8081)),
        ("127.0.0.2:80", ("127.0.0.2", 80)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0.0.0.0:8081", "not a loopback"),
        ("10.0.0.1:1", "not a loopback"),
        ("example.com:1", "loopback IP"),
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:0", "port"),
        ("127.0.0.1:70000", "port"),
        (":80", "HOST:PORT"),
    ],
)
def test_parse_listen_refusals(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_listen(value)


def test_token_body_expires_on_is_epoch_seconds_as_a_string() -> None:
    body = P.token_body(access_token="t", expires_on=1700000000, resource="r", client_id="c")
    assert body == {
        "access_token": "t",
        "expires_on": "1700000000",
        "resource": "r",
        "token_type": "Bearer",
        "client_id": "c",
    }
    # What MSAL and azure-identity do with it:
    assert int(body["expires_on"]) == 1700000000


# -- fuzzing -------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=80)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_target_parses_or_is_refused(tgt: str) -> None:
    try:
        query = P.parse_target(tgt)
    except P.MIRequestError as exc:
        assert 400 <= exc.status < 500
        assert len(exc.message) < 300
        return
    assert query.resource
    assert query.scope.endswith("/.default")


@settings(max_examples=300, deadline=None)
@given(
    resource=st.text(
        st.characters(codec="utf-8", exclude_categories=("Z", "C")), min_size=1, max_size=100
    ),
    client_id=st.none() | _text,
    extra=st.dictionaries(st.sampled_from(["xms_cc", "foo", "bar"]), _text, max_size=3),
)
def test_fuzz_round_trip(resource: str, client_id: str | None, extra: dict[str, str]) -> None:
    params = {"api-version": P.API_VERSION, "resource": resource, **extra}
    if client_id is not None:
        params["client_id"] = client_id
    tgt = P.PATH + "?" + urllib.parse.urlencode(params)
    try:
        query = P.parse_target(tgt)
    except P.MIRequestError as exc:
        # Only a client id that is not printable, or a resource with spaces, is refused.
        assert exc.status == 400
        assert "client_id" in exc.message or "resource" in exc.message
        return
    assert query.resource == resource.strip()
    assert query.client_id == (client_id or None)
