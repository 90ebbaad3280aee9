"""The CLI end to end against a fake daemon: outputs, requests sent, exit codes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from client_fakes import TOKEN, FakeDaemon, error_body

from agentid_client.cli import CLI, main


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = CLI(io.StringIO(stdin), out, err).run(argv)
    return code, out.getvalue(), err.getvalue()


# -- get -----------------------------------------------------------------------


def test_get_prints_token_and_sends_only_given_fields(fake_daemon: FakeDaemon) -> None:
    code, out, err = run(
        ["get", "--profile", "bot", "--scope", "a/.default b/.default", "--scope=c"]
    )
    assert (code, out, err) == (0, TOKEN + "\n", "")
    assert fake_daemon.token_requests[-1]["json"] == {
        "profile": "bot",
        "scope": "a/.default b/.default c",
    }


def test_get_formats(fake_daemon: FakeDaemon) -> None:
    assert run(["get", "--format", "header"])[1] == f"Authorization: Bearer {TOKEN}\n"
    code, out, _ = run(["get", "--format=json"])
    assert code == 0
    assert json.loads(out)["access_token"] == TOKEN


def test_get_min_validity_force_refresh_mode(fake_daemon: FakeDaemon) -> None:
    code, _, _ = run(
        [
            "get",
            "--min-validity",
            "600",
            "--force-refresh",
            "--mode",
            "AutonomousUser",
            "--user-upn",
            "agent@contoso.com",
            "--tenant-id",
            "t",
            "--blueprint-app-id",
            "b",
            "--agent-identity-app-id",
            "a",
            "--user-object-id",
            "o",
        ]
    )
    assert code == 0
    assert fake_daemon.token_requests[-1]["json"] == {
        "min_validity_s": 600,
        "force_refresh": True,
        "mode": "AutonomousUser",
        "user_upn": "agent@contoso.com",
        "tenant_id": "t",
        "blueprint_app_id": "b",
        "agent_identity_app_id": "a",
        "user_object_id": "o",
    }


def test_get_user_token_from_stdin_never_echoed(fake_daemon: FakeDaemon) -> None:
    code, out, err = run(
        ["get", "--mode", "OBO", "--user-token-file", "-"], stdin="  user.jwt.x \n"
    )
    assert code == 0
    assert fake_daemon.token_requests[-1]["json"]["user_token"] == "user.jwt.x"
    assert "user.jwt.x" not in out + err


def test_get_user_token_from_file(fake_daemon: FakeDaemon, tmp_path: Path) -> None:
    f = tmp_path / "ut"
    f.write_text("abc.def.ghi\n")
    assert run(["get", "--user-token-file", str(f)])[0] == 0
    assert fake_daemon.token_requests[-1]["json"]["user_token"] == "abc.def.ghi"


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "--mode", "Interactive"],
        ["get", "--bogus"],
        ["get", "--profile"],
        ["get", "--min-validity", "soon"],
        ["get", "--min-validity", "-1"],
        ["get", "--format", "yaml"],
        ["get", "extra"],
        ["get", "--force-refresh=yes"],
        ["nope"],
        ["get", "--user-token-file", "/nonexistent/file"],
        ["exec", "--env-var", "1BAD", "--", "true"],
        ["exec"],
        ["git-credential"],
        ["kubeconfig-user"],
        ["flush", "--all", "--profile", "p"],
        ["secret", "set"],
    ],
)
def test_bad_usage_exits_2(fake_daemon: FakeDaemon, argv: list[str]) -> None:
    code, out, err = run(argv)
    assert code == 2, err
    assert out == ""
    assert err.startswith("agentid-helper: error: ")
    assert not fake_daemon.token_requests


def test_unknown_profile_exits_2(fake_daemon: FakeDaemon) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        404, "unknown_profile", "no profile 'x'; known profiles: bot"
    )
    code, out, err = run(["get", "--profile", "x"])
    assert (code, out) == (2, "")
    assert err.splitlines()[0] == (
        "agentid-helper: error: no profile 'x'; known profiles: bot (unknown_profile)"
    )


def test_invalid_request_exits_2(fake_daemon: FakeDaemon) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        400, "invalid_request", "tenant_id is not a GUID", hint="use the directory id"
    )
    code, _, err = run(["get", "--tenant-id", "nope"])
    assert code == 2
    assert "tenant_id is not a GUID" in err
    assert "hint: use the directory id" in err


@pytest.mark.parametrize(
    "status,error", [(502, "identity_provider_error"), (503, "identity_provider_unavailable")]
)
def test_identity_provider_refusal_exits_4(
    fake_daemon: FakeDaemon, status: int, error: str
) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        status,
        error,
        "the blueprint secret is wrong",
        aadsts_codes=[7000215],
        correlation_id="1234-corr",
        hint="store the secret again: agentid-helper secret set",
    )
    code, out, err = run(["get"])
    assert (code, out) == (4, "")
    lines = err.splitlines()
    assert lines[0].startswith("agentid-helper: error: the blueprint secret is wrong")
    assert "AADSTS7000215" in lines[0]
    assert any("1234-corr" in line for line in lines[1:])
    assert any("secret set" in line for line in lines[1:])


def test_configuration_error_exits_5(fake_daemon: FakeDaemon) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: error_body(
        500, "configuration_error", "config.toml: profiles.x.mode: bad"
    )
    assert run(["get"])[0] == 5


def test_no_daemon_autostart_off_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", path)
    monkeypatch.setenv("AGENTID_HELPER_NO_AUTOSTART", "1")
    for argv in (["get"], ["kubectl-credential"], ["exec", "--", "true"]):
        code, out, err = run(argv)
        assert (code, out) == (3, ""), argv
        assert err.splitlines()[0] == (
            f"agentid-helper: error: daemon unreachable at {path} "
            "(autostart disabled: AGENTID_HELPER_NO_AUTOSTART=1)"
        )
        assert "agentid-helper daemon" in err
        assert "systemctl --user start" in err
    code, _, err = run(["status"])  # status never starts a daemon just to report it empty
    assert code == 3
    assert f"no daemon running at {path}" in err  # and, autostart being off, how to start one
    assert "autostart is disabled" in err


def test_flush_without_daemon_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", str(tmp_path / "none.sock"))
    monkeypatch.delenv("AGENTID_HELPER_NO_AUTOSTART", raising=False)
    assert run(["flush", "--all"]) == (0, "no daemon running: nothing cached\n", "")
    assert not (tmp_path / "agentid-helper.lock").exists()  # no autostart for flush


def test_garbage_response_is_an_error_not_a_crash(fake_daemon: FakeDaemon) -> None:
    fake_daemon.routes[("POST", "/v1/token")] = lambda req: b"SPAM\r\n\r\n"
    code, out, err = run(["get"])
    assert code == 3
    assert out == ""
    assert "bad response" in err


# -- kubectl-credential --------------------------------------------------------


@pytest.mark.parametrize(
    "exec_info,api",
    [
        (None, "client.authentication.k8s.io/v1"),
        (
            '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
            '"spec":{"interactive":false}}',
            "client.authentication.k8s.io/v1",
        ),
        (
            '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",'
            '"spec":{}}',
            "client.authentication.k8s.io/v1beta1",
        ),
    ],
)
def test_kubectl_credential(
    fake_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, exec_info: str | None, api: str
) -> None:
    if exec_info is None:
        monkeypatch.delenv("KUBERNETES_EXEC_INFO", raising=False)
    else:
        monkeypatch.setenv("KUBERNETES_EXEC_INFO", exec_info)
    code, out, err = run(["kubectl-credential", "--profile", "aks"])
    assert code == 0, err
    cred = json.loads(out)
    assert cred["apiVersion"] == api
    assert cred["kind"] == "ExecCredential"
    assert cred["status"]["token"] == TOKEN
    assert cred["status"]["expirationTimestamp"].endswith("Z")
    assert fake_daemon.token_requests[-1]["json"] == {"profile": "aks"}


@pytest.mark.parametrize(
    "bad", ["{not json", "[1]", '{"apiVersion":"client.authentication.k8s.io/v1alpha1"}']
)
def test_kubectl_credential_malformed_exec_info(
    fake_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("KUBERNETES_EXEC_INFO", bad)
    code, out, err = run(["kubectl-credential"])
    assert (code, out) == (2, "")
    assert "KUBERNETES_EXEC_INFO" in err.splitlines()[0]
    assert not fake_daemon.token_requests


# -- git-credential ------------------------------------------------------------


@pytest.fixture
def git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        textwrap.dedent("""
        [git."dev.azure.com"]
        profile = "ado"
        [git."github.example.com/team"]
        profile = "team"
    """)
    )
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(cfg))
    return cfg


def test_git_get_username_password(fake_daemon: FakeDaemon, git_config: Path) -> None:
    code, out, err = run(["git-credential", "get"], "protocol=https\nhost=dev.azure.com\n\n")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == ["username=ado", f"password={TOKEN}"]
    assert lines[2].startswith("password_expiry_utc=")
    assert fake_daemon.token_requests[-1]["json"] == {"profile": "ado"}


def test_git_get_authtype(fake_daemon: FakeDaemon, git_config: Path) -> None:
    stdin = (
        "capability[]=authtype\nprotocol=https\nhost=dev.azure.com\n"
        "wwwauth[]=Bearer realm=x\nwwwauth[]=Basic\n\n"
    )
    code, out, _ = run(["git-credential", "get"], stdin)
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == ["capability[]=authtype", "authtype=Bearer", f"credential={TOKEN}"]
    assert not any(line.startswith(("password=", "username=")) for line in lines)


def test_git_path_prefix_and_unmapped(fake_daemon: FakeDaemon, git_config: Path) -> None:
    code, out, _ = run(
        ["git-credential", "get"], "protocol=https\nhost=github.example.com\npath=team/repo.git\n\n"
    )
    assert code == 0
    assert out.startswith("username=team\n")
    for stdin in (
        "protocol=https\nhost=github.example.com\npath=other/repo.git\n\n",
        "protocol=https\nhost=unknown.example\n\n",
        "protocol=http\nhost=dev.azure.com\n\n",
    ):
        assert run(["git-credential", "get"], stdin) == (0, "", "")
    assert len(fake_daemon.token_requests) == 1


def test_git_store_and_unknown_op_are_silent(fake_daemon: FakeDaemon, git_config: Path) -> None:
    stdin = "protocol=https\nhost=dev.azure.com\nusername=ado\npassword=x\n\n"
    assert run(["git-credential", "store"], stdin) == (0, "", "")
    assert run(["git-credential", "frobnicate"], stdin) == (0, "", "")
    assert fake_daemon.requests == []


def test_git_erase_drops_the_token(fake_daemon: FakeDaemon, git_config: Path) -> None:
    stdin = "protocol=https\nhost=dev.azure.com\nusername=ado\npassword=x\n\n"
    assert run(["git-credential", "erase"], stdin) == (0, "", "")
    assert [(r["method"], r["json"]) for r in fake_daemon.requests] == [
        ("DELETE", {"profile": "ado"})
    ]


def test_git_explicit_profile_needs_no_config(
    fake_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(tmp_path / "absent.toml"))
    code, out, _ = run(["git-credential", "--profile", "p", "get"], "protocol=https\nhost=h\n")
    assert code == 0
    assert out.startswith("username=p\npassword=")


def test_git_bad_config_exits_5(
    fake_daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[git\n")
    monkeypatch.setenv("AGENTID_HELPER_CONFIG", str(cfg))
    code, out, err = run(["git-credential", "get"], "protocol=https\nhost=h\n\n")
    assert (code, out) == (5, "")
    assert "does not parse" in err


# -- flush / status ------------------------------------------------------------


def test_flush(fake_daemon: FakeDaemon) -> None:
    code, out, _ = run(["flush", "--profile", "bot"])
    assert (code, out) == (
        0,
        "flushed 3 cached tokens of profile bot (2 resource tokens, 1 T1 exchange token)\n",
    )
    assert run(["flush", "--all"])[0] == 0
    assert run(["flush"])[0] == 0
    assert [(r["method"], r["path"], r["json"]) for r in fake_daemon.requests] == [
        ("POST", "/v1/flush", {"profile": "bot"}),
        ("POST", "/v1/flush", {"all": True}),
        ("POST", "/v1/flush", {"all": False}),  # the default profile, not everything
    ]


def test_status_never_shows_tokens(fake_daemon: FakeDaemon) -> None:
    now = int(time.time())
    entry = {
        "kind": "resource",
        "profile": "bot",
        "mode": "AutonomousApp",
        "agent_identity_app_id": "aaaa",
        "scopes": ["https://graph.microsoft.com/.default"],
        "user": None,
        "expires_on": now + 3000,
        "refresh_on": now + 1000,
        "last_error": None,
    }
    fake_daemon.routes[("GET", "/v1/status")] = lambda req: (
        200,
        {"daemon": {"pid": 7}, "entries": [entry]},
    )
    code, out, _ = run(["status"])
    assert code == 0
    assert "PROFILE" in out
    assert "bot" in out
    assert "AutonomousApp" in out
    code, out, _ = run(["status", "--json"])
    assert json.loads(out)["entries"][0]["profile"] == "bot"


def test_kubeconfig_user(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(["kubeconfig-user", "--profile", "aks", "--name", "bot"])
    assert code == 0
    assert out.startswith('users:\n- name: "bot"\n')
    assert '      - "kubectl-credential"\n      - "--profile"\n      - "aks"\n' in out


def test_help_for_every_command() -> None:
    from agentid_client.commands import COMMANDS

    for name in COMMANDS:
        code, out, _ = run([name, "--help"])
        assert code == 0
        assert "examples:" in out
        assert f"agentid-helper {name}" in out
    code, out, _ = run(["--help"])
    assert code == 0
    assert "git-credential" in out
    assert run(["--version"])[1].startswith("agentid-helper ")


def test_main_entry_point(fake_daemon: FakeDaemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get"]) == 0
    assert capsys.readouterr().out == TOKEN + "\n"


# -- exec (a real child process) ---------------------------------------------


def _client(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentid_client", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_exec_env_and_exit_status(fake_daemon: FakeDaemon) -> None:
    env = dict(os.environ)
    proc = _client(
        [
            "exec",
            "--env-var",
            "TOK",
            "--",
            sys.executable,
            "-c",
            "import os, sys; print(os.environ['TOK']); sys.exit(7)",
        ],
        env,
    )
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (7, TOKEN + "\n", "")
    proc = _client(
        ["exec", sys.executable, "-c", "import os; print(os.environ['AGENTID_ACCESS_TOKEN'])"], env
    )
    assert proc.communicate(timeout=30)[0] == TOKEN + "\n"
    assert proc.returncode == 0


def test_exec_command_not_found(fake_daemon: FakeDaemon) -> None:
    proc = _client(["exec", "--", "/nonexistent/cmd"], dict(os.environ))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 127
    assert "command not found" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_exec_signals_reach_the_command(fake_daemon: FakeDaemon, tmp_path: Path, sig: int) -> None:
    marker = tmp_path / "ready"
    child = textwrap.dedent(f"""
        import signal, sys, pathlib, time
        def handler(signum, frame):
            print("got", signum, flush=True)
            sys.exit(100 + signum)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, handler)
        pathlib.Path({str(marker)!r}).write_text("x")
        time.sleep(60)
    """)
    proc = _client(["exec", "--", sys.executable, "-c", child], dict(os.environ))
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        assert proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert out == f"got {int(sig)}\n"
    assert proc.returncode == 100 + int(sig)


def test_exec_death_by_signal_is_visible(fake_daemon: FakeDaemon) -> None:
    proc = subprocess.run(
        [
            "sh",
            "-c",
            f'{sys.executable} -m agentid_client exec -- sh -c "kill -TERM \\$\\$"; echo $?',
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.strip() == str(128 + signal.SIGTERM)


# -- systemd / daemon dispatch -------------------------------------------------


def test_systemd_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentid_client import systemd_units

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(systemd_units, "install", lambda now: calls.append(("install", now)) or 0)
    monkeypatch.setattr(systemd_units, "uninstall", lambda: calls.append(("uninstall", None)) or 0)
    assert run(["systemd", "install", "--now"])[0] == 0
    assert run(["systemd", "install"])[0] == 0
    assert run(["systemd", "uninstall"])[0] == 0
    assert run(["systemd", "uninstall", "--now"])[0] == 2
    assert run(["systemd"])[0] == 2
    assert calls == [("install", True), ("install", False), ("uninstall", None)]


def test_daemon_passes_arguments_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """`daemon` becomes `python -m agentid_daemon ARGS` (exec: the client never imports it)."""
    import sys

    from agentid_client import cli

    seen: list[tuple[str, list[str]]] = []

    def execv(path: str, argv: list[str]) -> None:
        seen.append((path, list(argv)))
        raise SystemExit(0)  # what the exec'd daemon's exit would be

    monkeypatch.setattr(cli.os, "execv", execv)
    with pytest.raises(SystemExit):
        run(["daemon", "--log-level", "debug", "--config", "/x"])
    assert seen == [
        (
            sys.executable,
            [sys.executable, "-m", "agentid_daemon", "--log-level", "debug", "--config", "/x"],
        )
    ]


_SHOW_MI_ENV = (
    "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
    "('IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'MSI_ENDPOINT', 'MSI_SECRET', "
    "'IDENTITY_SERVER_THUMBPRINT', 'IMDS_ENDPOINT')}))"
)
_SHADOWING = {
    "MSI_ENDPOINT": "http://169.254.169.254/x",
    "MSI_SECRET": "s",
    "IDENTITY_SERVER_THUMBPRINT": "AB",
    "IMDS_ENDPOINT": "http://i",
}


def test_exec_exports_identity_endpoint(fake_daemon: FakeDaemon) -> None:
    from client_fakes import IDENTITY_SESSION

    env = {**os.environ, **_SHADOWING}
    proc = _client(["exec", "--profile", "p", "--", sys.executable, "-c", _SHOW_MI_ENV], env)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out) == {
        "IDENTITY_ENDPOINT": IDENTITY_SESSION["identity_endpoint"],
        "IDENTITY_HEADER": IDENTITY_SESSION["identity_header"],
        "MSI_ENDPOINT": None,
        "MSI_SECRET": None,
        "IDENTITY_SERVER_THUMBPRINT": None,
        "IMDS_ENDPOINT": None,
    }
    (session_req,) = [r for r in fake_daemon.requests if r["path"] == "/v1/identity-sessions"]
    assert session_req["method"] == "POST"
    assert session_req["json"] == {"profile": "p"}


def test_exec_no_identity_endpoint(fake_daemon: FakeDaemon) -> None:
    env = {**os.environ, **_SHADOWING}
    proc = _client(
        ["exec", "--no-identity-endpoint", "--", sys.executable, "-c", _SHOW_MI_ENV], env
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    shown = json.loads(out)
    assert shown["IDENTITY_ENDPOINT"] is None
    assert shown["IDENTITY_HEADER"] is None
    assert shown["MSI_ENDPOINT"] == _SHADOWING["MSI_ENDPOINT"]  # untouched when opted out
    assert not [r for r in fake_daemon.requests if r["path"] == "/v1/identity-sessions"]


def test_exec_session_refused_is_an_error_and_cmd_does_not_run(
    fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    fake_daemon.routes[("POST", "/v1/identity-sessions")] = lambda req: error_body(
        400, "invalid_request", "cannot identify the calling process"
    )
    marker = tmp_path / "ran"
    proc = _client(
        ["exec", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"],
        dict(os.environ),
    )
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot identify the calling process" in err
    assert not marker.exists()
