"""The sidecar API's binding (sans-IO) and its sidecar-style configuration."""

from __future__ import annotations

import pytest

from agentid_daemon.config.sidecar_env import ALLOW_OVERRIDES_DEFAULTS, load_sidecar_env
from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.sidecar_api.binding import merged, parse_query, route_of
from agentid_daemon.sidecar_api.problems import Problem

AGENT = "11111111-2222-3333-4444-555555555555"
ENV = {
    "AzureAd__TenantId": "contoso.onmicrosoft.com",
    "AzureAd__ClientId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "DownstreamApis__Graph__BaseUrl": "https://graph.microsoft.com/v1.0/",
    "DownstreamApis__Graph__Scopes__0": "https://graph.microsoft.com/.default",
}


def _merge(target: str, allowed: bool) -> dict[str, object]:
    route = route_of("GET", target)
    api = load_sidecar_env(ENV).downstream_apis.get(route.api_name or "")
    return merged(route, api, parse_query(target), allowed)[1]


def test_microsofts_defaults_gate_the_unauthenticated_routes() -> None:
    assert load_sidecar_env({}).allow_overrides == ALLOW_OVERRIDES_DEFAULTS
    assert ALLOW_OVERRIDES_DEFAULTS["GetAuthorizationHeaderUnauthenticated"] is False
    with pytest.raises(Problem) as caught:
        _merge(f"/AuthorizationHeaderUnauthenticated/Graph?AgentIdentity={AGENT}", False)
    assert caught.value.status == 400
    assert "Sidecar__AllowOverrides__GetAuthorizationHeaderUnauthenticated" in caught.value.detail
    with pytest.raises(Problem, match=r"optionsOverride\.Scopes is not allowed"):
        _merge("/AuthorizationHeaderUnauthenticated/Graph?optionsOverride.Scopes=x", False)


def test_modes_from_the_query() -> None:
    fields = _merge(f"/authorizationheaderunauthenticated/Graph?agentidentity={AGENT}", True)
    assert fields["mode"] == "AutonomousApp" and fields["agent_identity_app_id"] == AGENT
    fields = _merge(
        f"/AuthorizationHeaderUnauthenticated/Graph?AgentIdentity={AGENT}&AgentUsername=a@b.example",
        True,
    )
    assert fields["mode"] == "AutonomousUser" and fields["user_upn"] == "a@b.example"
    assert _merge(f"/AuthorizationHeader/Graph?AgentIdentity={AGENT}", True)["mode"] == "OBO"
    fields = _merge(
        f"/AuthorizationHeader/Graph?AgentIdentity={AGENT}&optionsOverride.RequestAppToken=true"
        "&optionsOverride.AcquireTokenOptions.ForceRefresh=true&optionsOverride.BaseUrl=https://evil",
        True,
    )
    assert fields["mode"] == "AutonomousApp" and fields["force_refresh"] is True


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("/AuthorizationHeader/Nope", "Not able to resolve 'Nope'."),
        (
            f"/AuthorizationHeader/Graph?AgentIdentity={AGENT}&AgentUsername=a@b.example"
            f"&AgentUserId={AGENT}",
            "mutually exclusive",
        ),
        ("/AuthorizationHeader/Graph?AgentUsername=a@b.example", "needs AgentIdentity"),
        ("/AuthorizationHeader/Graph?AgentIdentity=nope", "AgentIdentity"),
        ("/AuthorizationHeader/Graph?optionsOverride.FmiPath=x", "not supported"),
    ],
)
def test_bad_queries_are_400(target: str, words: str) -> None:
    with pytest.raises(Problem) as caught:
        _merge(target, True)
    assert caught.value.status == 400 and words in caught.value.detail


def test_routes_and_methods() -> None:
    assert route_of("GET", "/healthz").name == "healthz"
    with pytest.raises(Problem) as caught:
        route_of("GET", "/DownstreamApi/Graph")
    assert caught.value.status == 405
    with pytest.raises(Problem) as caught:
        route_of("GET", "/nothing")
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"AzureAd__ClientCredentials__0__SourceType": "KeyVault"}, "not supported"),
        ({"AzureAd__Authority": "x"}, "unknown key"),
        ({"Sidecar__AllowOutboundRedirects": "true"}, "never followed"),
        ({"DownstreamApis__G__BaseUrl": "http://plain.example"}, "https://"),
        (
            {
                "AzureAd__ClientCredentials__0__SourceType": "ClientSecret",
                "AzureAd__ClientCredentials__1__SourceType": "ClientSecret",
            },
            "exactly one",
        ),
    ],
)
def test_unsupported_sidecar_settings_are_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_sidecar_env(env)
    assert words in caught.value.description and "\n" not in caught.value.description
