"""Tests for config loading and request resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentid_daemon.config.loader import Config, default_config_path, load_config
from agentid_daemon.core.errors import ConfigurationError, InvalidRequest, UnknownProfile
from agentid_daemon.core.models import CredentialSpec, Mode

T = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
A = "33333333-3333-3333-3333-333333333333"
U = "44444444-4444-4444-4444-444444444444"
JWT = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"

GOOD = f"""
default_profile = "graph-bot"

[daemon]
idle_timeout_s = 600

[defaults]
tenant_id = "{T}"
authority_host = "https://login.microsoftonline.com"
ca_bundle = "ca.pem"

[profiles.graph-bot]
blueprint_app_id = "{B}"
agent_identity_app_id = "{A}"
scope = "https://graph.microsoft.com/.default"
mode = "AutonomousApp"

[profiles.user-bot]
blueprint_app_id = "{B}"
agent_identity_app_id = "{A}"
mode = "autonomoususer"
user_upn = "Agent@Contoso.com"
scope = "User.Read"
blueprint_credential = {{ secret_file = "secrets/bp" }}

[profiles.obo-bot]
blueprint_app_id = "{B}"
agent_identity_app_id = "{A}"
mode = "OBO"
blueprint_credential = {{ env = "BP_SECRET" }}

[git."dev.azure.com"]
profile = "graph-bot"

[git."dev.azure.com/contoso/repo"]
profile = "user-bot"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write(tmp_path, GOOD), environ={})


def test_missing_file_is_empty_config(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml", environ={})
    assert cfg.profiles == {}
    assert cfg.default_profile is None
    assert cfg.daemon.idle_timeout_s == 3600


def test_loads_everything(config: Config, tmp_path: Path) -> None:
    assert config.daemon.idle_timeout_s == 600
    assert config.profile_names() == ["graph-bot", "obo-bot", "user-bot"]
    assert config.defaults.ca_bundle == str(tmp_path / "ca.pem")
    assert config.profiles["user-bot"].blueprint_credential == CredentialSpec(
        "secret_file", str(tmp_path / "secrets" / "bp")
    )


def test_resolve_default_profile(config: Config, tmp_path: Path) -> None:
    req = config.resolve({})
    assert req.profile == "graph-bot"
    assert req.mode is Mode.AUTONOMOUS_APP
    assert req.scopes == ("https://graph.microsoft.com/.default",)
    assert req.agent.tenant_id == T
    assert req.agent.agent_identity_app_id == A
    assert req.agent.credential == CredentialSpec("keyring", B)
    assert req.agent.ca_bundle == str(tmp_path / "ca.pem")


def test_request_fields_win(config: Config) -> None:
    other = "55555555-5555-5555-5555-555555555555"
    req = config.resolve({"agent_identity_app_id": other.upper(), "scope": "api://X/.default"})
    assert req.agent.agent_identity_app_id == other
    assert req.scopes == ("api://x/.default",)


def test_autonomous_user_profile(config: Config) -> None:
    req = config.resolve({"profile": "user-bot"})
    assert req.mode is Mode.AUTONOMOUS_USER
    assert req.user_upn == "agent@contoso.com"
    assert req.scopes == ("User.Read",)


def test_request_user_replaces_profile_user(config: Config) -> None:
    req = config.resolve({"profile": "user-bot", "user_object_id": U})
    assert req.user_object_id == U
    assert req.user_upn is None


def test_autonomous_user_needs_a_user(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="--user-upn or --user-object-id"):
        config.resolve({"mode": "AutonomousUser"})


def test_autonomous_user_rejects_both(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="not both"):
        config.resolve({"mode": "AutonomousUser", "user_upn": "a@b.c", "user_object_id": U})


def test_user_fields_only_with_autonomous_user(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="only valid with mode AutonomousUser"):
        config.resolve({"user_upn": "a@b.c"})


def test_obo_needs_user_token(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="user's token"):
        config.resolve({"profile": "obo-bot"})
    req = config.resolve({"profile": "obo-bot", "user_token": JWT})
    assert req.user_token == JWT
    assert JWT not in repr(req)
    assert req.agent.credential == CredentialSpec("env", "BP_SECRET")


def test_user_token_refused_outside_obo(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="only valid with mode OBO"):
        config.resolve({"user_token": JWT})


def test_app_only_short_scope_refused(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="AADSTS1002012"):
        config.resolve({"scope": "User.Read"})


def test_unknown_profile_lists_known(config: Config) -> None:
    pattern = r"did you mean 'graph-bot'.*known profiles: graph-bot"
    with pytest.raises(UnknownProfile, match=pattern):
        config.resolve({"profile": "graph-bt"})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"tenant_id": 5}, "tenant_id must be a string"),
        ({"blueprint_app_id": "x"}, "not a GUID"),
        ({"mode": "nope"}, "not a mode"),
        ({"scope": ["a", 3]}, "scope"),
        ({"scoep": "x"}, "did you mean 'scope'"),
        ({"profile": 3}, "profile must be a string"),
    ],
)
def test_bad_request_fields(config: Config, fields: dict, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        config.resolve(fields)


def test_request_options_and_nulls_are_ignored(config: Config) -> None:
    req = config.resolve({"min_validity_s": 10, "force_refresh": True, "scope": None})
    assert req.profile == "graph-bot"


def test_not_a_mapping(config: Config) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        config.resolve(["x"])  # type: ignore[arg-type]


def test_flag_only_request_on_empty_config() -> None:
    cfg = Config.empty(environ={"AZURE_TENANT_ID": "contoso.onmicrosoft.com"})
    req = cfg.resolve({"blueprint_app_id": B, "agent_identity_app_id": A})
    assert req.agent.tenant_id == "contoso.onmicrosoft.com"
    assert req.agent.authority_host == "https://login.microsoftonline.com"
    assert req.profile is None


def test_missing_ids_name_the_flags() -> None:
    with pytest.raises(InvalidRequest, match=r"--tenant-id.*AZURE_TENANT_ID"):
        Config.empty(environ={}).resolve({"blueprint_app_id": B, "agent_identity_app_id": A})


def test_env_defaults_are_below_the_file(tmp_path: Path) -> None:
    env = {"AZURE_TENANT_ID": "other.example.com", "AZURE_AUTHORITY_HOST": "https://e.example"}
    cfg = load_config(write(tmp_path, GOOD), environ=env)
    req = cfg.resolve({})
    assert req.agent.tenant_id == T
    assert req.agent.authority_host == "https://login.microsoftonline.com"
    cfg = load_config(tmp_path / "none.toml", environ=env)
    assert cfg.env_defaults.authority_host == "https://e.example"


def test_bad_env_default() -> None:
    with pytest.raises(ConfigurationError, match="AZURE_AUTHORITY_HOST"):
        load_config("/nonexistent/x.toml", environ={"AZURE_AUTHORITY_HOST": "http://x"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x = [", "invalid TOML"),
        ("defualt_profile = 'a'", "unknown key.*did you mean 'default_profile'"),
        ("[daemon]\nidle_timeout = 5", r"\[daemon\] key 'idle_timeout'.*idle_timeout_s"),
        ("[daemon]\nidle_timeout_s = -1", "positive"),
        ("[defaults]\ntenant_id = 'common'", r"\[defaults\] key 'tenant_id'.*multi-tenant"),
        ("[defaults]\nauthority_host = 'http://x'", "https"),
        (f"[profiles.p]\nblueprint_app_id = '{B}x'", r"\[profiles.p\] key 'blueprint_app_id'"),
        ("[profiles.p]\nmode = 'Auto'", "not a mode"),
        ("[profiles.p]\nscope = ''", "empty"),
        ("[profiles.p]\nuser_token = 'a.b.c'", "unknown key"),
        ("[profiles.p]\nblueprint_credential = 'vault'", "not a credential source"),
        ("[profiles.p]\nblueprint_credential = { secret_fil = '/x' }", "mean 'secret_file'"),
        ("[profiles.p]\nblueprint_credential = { env = '1x' }", "environment variable name"),
        ("[profiles.p]\nblueprint_credential = { env = 'A', secret_file = '/x' }", "exactly one"),
        ("[profiles.p]\nuser_upn = 'a@b.c'\nuser_object_id = '" + U + "'", "not both"),
        ("default_profile = 'nope'", "no profile 'nope'"),
        ("[profiles.p]\n[git.'h']\nprofile = 'q'", "no profile 'q'"),
        ("[git.'h']\nprofil = 'q'", "did you mean 'profile'"),
        ("profiles = 5", "must be a table"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=match) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_path_expands_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/creds")
    text = "[profiles.p]\nblueprint_credential = { secret_file = '$CREDENTIALS_DIRECTORY/bp' }"
    path = write(tmp_path, text)
    cfg = load_config(path, environ={})
    assert cfg.profiles["p"].blueprint_credential == CredentialSpec("secret_file", "/run/creds/bp")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    # A credential path naming an unset variable is kept as written: only that
    # profile fails, when used (see test_credentials), not the whole file.
    cfg = load_config(path, environ={})
    assert cfg.profiles["p"].blueprint_credential == CredentialSpec(
        "secret_file", "$CREDENTIALS_DIRECTORY/bp"
    )


def test_ca_bundle_with_unset_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_DIR_VAR", raising=False)
    path = write(tmp_path, "[defaults]\nca_bundle = '$NO_SUCH_DIR_VAR/ca.pem'")
    with pytest.raises(ConfigurationError, match="unset environment variable"):
        load_config(path, environ={})


def test_unreadable_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        load_config(tmp_path, environ={})


def test_default_config_path(tmp_path: Path) -> None:
    assert default_config_path({"AGENTID_HELPER_CONFIG": "/x/c.toml"}) == Path("/x/c.toml")
    assert default_config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "agentid-helper" / "config.toml"
    )


def test_load_uses_env_path(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load_config(environ={"AGENTID_HELPER_CONFIG": str(path)})
    assert cfg.path == str(path)
    assert cfg.default_profile == "graph-bot"


SIDECAR_PROFILE = """
[profiles.bot]
blueprint_app_id = "11111111-2222-3333-4444-555555555555"
agent_identity_app_id = "66666666-7777-8888-9999-000000000000"
tenant_id = "contoso.onmicrosoft.com"
"""


def test_sidecar_daemon_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        SIDECAR_PROFILE
        + """
[daemon]
managed_identity_listen = "127.0.0.1:8081"
managed_identity_header_file = "run/header"
managed_identity_profile = "bot"
""",
    )
    daemon = load_config(path).daemon
    assert daemon.managed_identity_listen == ("127.0.0.1", 8081)
    assert daemon.managed_identity_header_file == str(tmp_path / "run" / "header")
    assert daemon.managed_identity_profile == "bot"


@pytest.mark.parametrize(
    ("daemon", "match"),
    [
        ('managed_identity_listen = "127.0.0.1:8081"', "managed_identity_header_file.*needed too"),
        ('managed_identity_header_file = "/h"', "managed_identity_listen.*needed too"),
        (
            'managed_identity_listen = "0.0.0.0:8081"\nmanaged_identity_header_file = "/h"',
            "not a loopback address",
        ),
        ('managed_identity_listen = 8081\nmanaged_identity_header_file = "/h"', "HOST:PORT"),
        (
            'managed_identity_listen = "127.0.0.1:8081"\nmanaged_identity_header_file = "/h"\n'
            'managed_identity_profile = "nope"',
            "no profile 'nope'",
        ),
        ('managed_identity_profile = "bot"', "needs managed_identity_listen"),
    ],
)
def test_sidecar_daemon_keys_refused(tmp_path: Path, daemon: str, match: str) -> None:
    path = write(tmp_path, SIDECAR_PROFILE + "\n[daemon]\n" + daemon + "\n")
    with pytest.raises(ConfigurationError, match=match):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "location"),
    [
        ('{ managed_identity = "system" }', "system"),
        ('{ managed_identity = "SYSTEM" }', "system"),
        (
            '{ managed_identity = "99999999-9999-4999-8999-99999999999A" }',
            "client_id=99999999-9999-4999-8999-99999999999a",
        ),
        (
            '{ managed_identity = { client_id = "99999999-9999-4999-8999-999999999999" } }',
            "client_id=99999999-9999-4999-8999-999999999999",
        ),
        (
            '{ managed_identity = { object_id = "88888888-8888-4888-8888-888888888888" } }',
            "object_id=88888888-8888-4888-8888-888888888888",
        ),
        (
            '{ managed_identity = { resource_id = "/subscriptions/s/resourcegroups/r/providers/'
            'Microsoft.ManagedIdentity/userAssignedIdentities/n" } }',
            "resource_id=/subscriptions/s/resourcegroups/r/providers/"
            "Microsoft.ManagedIdentity/userAssignedIdentities/n",
        ),
    ],
)
def test_managed_identity_credential(tmp_path: Path, value: str, location: str) -> None:
    path = write(tmp_path, SIDECAR_PROFILE + f"blueprint_credential = {value}\n")
    spec = load_config(path, environ={}).profiles["bot"].blueprint_credential
    assert spec == CredentialSpec("managed_identity", location)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('{ managed_identity = "nope" }', 'must be "system", a client id'),
        ('{ managed_identity = { client_id = "x" } }', "client_id must be a GUID"),
        ('{ managed_identity = { objectid = "x" } }', "did you mean 'object_id'"),
        ('{ managed_identity = { resource_id = "x" } }', "Azure resource id"),
        ('{ managed_identity = { object_id = "a", client_id = "b" } }', "one of"),
        ('"workload-identity"', "did you mean 'workload_identity'"),
    ],
)
def test_managed_identity_credential_refused(tmp_path: Path, value: str, match: str) -> None:
    path = write(tmp_path, SIDECAR_PROFILE + f"blueprint_credential = {value}\n")
    with pytest.raises(ConfigurationError, match=match):
        load_config(path, environ={})


def test_workload_identity_and_azure_client_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[profiles.wi]
agent_identity_app_id = "66666666-7777-8888-9999-000000000000"
blueprint_credential = "workload_identity"
""",
    )
    config = load_config(
        path,
        environ={
            "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
            "AZURE_TENANT_ID": "contoso.onmicrosoft.com",
        },
    )
    req = config.resolve({"profile": "wi"})
    assert req.agent.blueprint_app_id == "11111111-2222-3333-4444-555555555555"
    assert req.agent.credential == CredentialSpec("workload_identity", "")
