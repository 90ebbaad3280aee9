"""``agent`` / ``agent-user`` end to end: the real client, an autostarted daemon and
the emulator's Graph over HTTPS (MSAL for the blueprint's Graph token), with a
replication delay: create --save-profile, get through the delay, list, delete,
then the directory's refusal (exit 4); config comments survive; bad input exits
2 with Graph's reason; the daemon keeps serving; the socket API directly."""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from client_stack import Env, client_stack
from emulator_harness import Emulator

from agentid_client import daemon_api

DELAY_S = 2.0
COMMENT = "# my precious comment: keep me"


@pytest.fixture
def stack(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> Iterator[tuple[Env, Emulator]]:
    emu = emulator_factory(replication_delay_s=DELAY_S)
    with client_stack(emu, tmp_path) as env:
        text = env.config.read_text().replace(
            "[defaults]\n",
            f'{COMMENT}\n[defaults]\ngraph_endpoint = "{emu.info["graph_endpoint"]}"'
            "  # the emulator\n",
        )
        env.config.write_text(text)
        env.config.chmod(0o600)
        yield env, emu


def _ok(proc: object) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stderr)  # type: ignore[attr-defined]
    return str(proc.stdout)  # type: ignore[attr-defined]


def test_create_save_get_list_delete(stack: tuple[Env, Emulator]) -> None:
    env, emu = stack
    out = _ok(
        env.run(
            "agent",
            "create",
            "--profile",
            "app",
            "--name",
            "build bot",
            "--sponsor",
            emu.user_upn,
            "--save-profile",
            "bot",
            "--json",
        )
    )
    created = json.loads(out)
    app_id = created["app_id"]
    assert created["saved_profile"] == "bot" and created["display_name"] == "build bot"
    text = env.config.read_text()
    assert COMMENT in text and "# the emulator" in text  # comments and layout kept
    assert "[profiles.bot]" in text and app_id in text
    assert stat.S_IMODE(env.config.stat().st_mode) == 0o600  # mode kept

    started = time.monotonic()
    got = env.run("get", "--profile", "bot", "--format", "json")  # waits out replication
    body = json.loads(_ok(got))
    assert body["agent_identity_app_id"] == app_id
    assert time.monotonic() - started < 30

    listed = json.loads(_ok(env.run("agent", "list", "--profile", "app", "--json")))
    assert app_id in {a["app_id"] for a in listed}

    _ok(env.run("agent", "delete", "--profile", "app", "--agent-identity-app-id", app_id))
    time.sleep(DELAY_S + 0.5)  # the deletion replicates too
    refused = env.run("get", "--profile", "bot", "--force-refresh")
    assert refused.returncode == 4, refused.stderr
    assert "700016" in refused.stderr
    assert COMMENT in env.config.read_text()
    # the daemon keeps serving the other profiles
    _ok(env.run("get", "--profile", "app"))


def test_agent_user_create_save_get_delete(stack: tuple[Env, Emulator]) -> None:
    env, emu = stack
    created = json.loads(
        _ok(
            env.run(
                "agent",
                "create",
                "--profile",
                "app",
                "--name",
                "mailer",
                "--sponsor",
                emu.user_upn,
                "--save-profile",
                "mailer",
                "--json",
            )
        )
    )
    domain = emu.user_upn.rpartition("@")[2]
    upn = f"mailer-user@{domain}"
    user = json.loads(
        _ok(
            env.run(
                "agent-user",
                "create",
                "--profile",
                "mailer",
                "--upn",
                upn,
                "--save-profile",
                "mailer-user",
                "--json",
                timeout=90,
            )
        )
    )
    assert user["upn"] == upn and user["agent_identity_app_id"] == created["app_id"]
    text = env.config.read_text()
    assert "[profiles.mailer-user]" in text and 'mode = "AutonomousUser"' in text
    got = json.loads(_ok(env.run("get", "--profile", "mailer-user", "--format", "json")))
    assert got["mode"] == "AutonomousUser"
    other = env.run("agent-user", "create", "--profile", "mailer", "--upn", "x@fabrikam.example")
    assert other.returncode == 2, other.stderr
    assert "not a verified domain" in other.stderr
    _ok(env.run("agent-user", "delete", "--profile", "mailer", "--upn", upn))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("agent", "delete", "--profile", "app", "--agent-identity-app-id", "nope"), "GUID"),
        (
            ("agent", "create", "--profile", "app", "--name", "n" * 257, "--sponsor", "a@b.com"),
            "at most 256",
        ),
        (("agent", "create", "--profile", "app", "--name", "n"), "--sponsor"),
        (("agent-user", "create", "--profile", "app", "--upn", "no-domain"), "alias@domain"),
        (("agent", "list"), "--profile"),
        (("agent", "list", "--profile", "app", "--name", "x"), "does not apply"),
    ],
)
def test_bad_input_exits_2_before_the_daemon(
    stack: tuple[Env, Emulator], args: tuple[str, ...], message: str
) -> None:
    env, _ = stack
    proc = env.run(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


def test_graph_refusals_carry_graphs_reason(stack: tuple[Env, Emulator]) -> None:
    env, emu = stack
    nobody = env.run(
        "agent", "create", "--profile", "app", "--name", "x", "--sponsor", "nobody@contoso.invalid"
    )
    assert nobody.returncode == 2, nobody.stderr
    assert "Request_ResourceNotFound" in nobody.stderr and "request id" in nobody.stderr
    exists = env.run(
        "agent",
        "create",
        "--profile",
        "app",
        "--name",
        "x",
        "--sponsor",
        emu.user_upn,
        "--save-profile",
        "app",
    )
    assert exists.returncode == 2 and "already exists" in exists.stderr
    missing = env.run(
        "agent",
        "delete",
        "--profile",
        "app",
        "--agent-identity-app-id",
        "11111111-2222-3333-4444-555555555555",
    )
    assert missing.returncode == 4, missing.stderr
    assert "no agent identity" in missing.stderr
    unknown = env.run("agent", "list", "--profile", "nope")
    assert unknown.returncode == 2 and "unknown profile" in unknown.stderr
    _ok(env.run("get", "--profile", "app"))  # still serving


def _raw(sock_path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(sock_path)
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_socket_api(stack: tuple[Env, Emulator]) -> None:
    env, emu = stack
    _ok(env.run("get", "--profile", "app"))  # autostarts the daemon
    created = daemon_api.call(
        "POST",
        "/v1/agents",
        {"profile": "app", "display_name": "api agent", "sponsors": [emu.user_upn]},
        socket_path=env.sock,
        autostart=False,
        timeout=30,
    )
    assert created.status == 201, created.body
    body = created.json()
    assert set(body) == {"app_id", "object_id", "display_name"}
    listed = daemon_api.call(
        "GET", "/v1/agents?profile=app", socket_path=env.sock, autostart=False, timeout=30
    )
    assert listed.status == 200 and body["app_id"] in {a["app_id"] for a in listed.json()["agents"]}
    gone = daemon_api.call(
        "DELETE",
        f"/v1/agents/{body['app_id']}?profile=app",
        socket_path=env.sock,
        autostart=False,
        timeout=30,
    )
    assert gone.status == 204
    bad = daemon_api.call(
        "POST",
        "/v1/agents",
        {"profile": "app", "bogus": 1},
        socket_path=env.sock,
        autostart=False,
        timeout=30,
    )
    assert bad.status == 400 and bad.json()["error"] == "invalid_request"
    no_profile = daemon_api.call(
        "GET", "/v1/agents", socket_path=env.sock, autostart=False, timeout=30
    )
    assert no_profile.status == 400
    answer = _raw(
        env.sock,
        b"GET /v1/agents?profile=app HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_socket_api_bad_queries(stack: tuple[Env, Emulator]) -> None:
    env, _ = stack
    _ok(env.run("get", "--profile", "app"))
    for target in (
        "/v1/agents?profile=app&bogus=1",
        "/v1/agents?" + "&".join(f"profile={i}" for i in range(20)),
    ):
        resp = daemon_api.call("GET", target, socket_path=env.sock, autostart=False, timeout=30)
        assert resp.status == 400, resp.body
    resp = daemon_api.call(
        "DELETE",
        "/v1/agents/not-a-guid?profile=app",
        socket_path=env.sock,
        autostart=False,
        timeout=30,
    )
    assert resp.status == 400 and "GUID" in resp.json()["error_description"]
    resp = daemon_api.call("PUT", "/v1/agents", socket_path=env.sock, autostart=False, timeout=30)
    assert resp.status == 405
    _ok(env.run("get", "--profile", "app"))  # still serving
