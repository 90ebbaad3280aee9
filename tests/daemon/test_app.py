"""Tests for app.py: the daemon as a subprocess (health, signals, reload, refusal),
the in-process lifecycle with sd_notify, and end to end against the emulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from daemon_fakes import FakeBroker, FakeCache, load_api_config
from emulator_config import secret_file, write_emulator_config

from agentid_client import transport
from agentid_daemon import app
from agentid_daemon.app import Components, Daemon, main
from agentid_daemon.config.loader import Config
from agentid_daemon.process.sdnotify import Notifier

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


@pytest.fixture(autouse=True)
def in_process_main_keeps_core_limits(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """main() called in this process must not make pytest itself non-dumpable with a hard
    core limit of 0 (raising it back needs CAP_SYS_RESOURCE): record the call instead.
    Daemons in subprocesses harden for real (test_trust_two_uids.py checks /proc)."""
    calls: list[bool] = []
    monkeypatch.setattr(app, "forbid_core_dumps", lambda: calls.append(True))
    return calls


def call(sock: Path, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request with the client's own HTTP reader; the JSON body, or the text."""
    resp = transport.request(str(sock), method, path, body, deadline=time.monotonic() + 30.0)
    ctype = resp.headers.get("content-type", "")
    return resp.status, resp.json() if resp.body and "json" in ctype else resp.body.decode()


class DaemonProc:
    def __init__(self, proc: subprocess.Popen[str], sock: Path) -> None:
        self.proc, self.sock = proc, sock

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=STOP_TIMEOUT_S)
        return self.proc.returncode, out, err


def start_daemon(
    tmp_path: Path, config: Path, *extra: str, env: dict[str, str] | None = None
) -> DaemonProc:
    sock = tmp_path / "run" / "d.sock"
    environ = {**os.environ, "AGENTID_HELPER_SOCKET": str(sock), **(env or {})}
    environ.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentid_daemon",
            "--config",
            str(config),
            "--log-format",
            "json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"daemon exited {proc.returncode}: {err}{out}")
        try:
            if call(sock, "GET", "/readyz")[0] == 200:
                return DaemonProc(proc, sock)
        except (OSError, transport.ConnectFailed):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("daemon did not become ready")
        time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    config = tmp_path / "config.toml"
    config.write_text("")
    d = start_daemon(tmp_path, config)
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.communicate(timeout=STOP_TIMEOUT_S)


def log_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.e2e  # a real daemon process
def test_health_and_sigterm(daemon: DaemonProc) -> None:
    assert call(daemon.sock, "GET", "/healthz") == (200, {"status": "ok"})
    assert os.stat(daemon.sock).st_mode & 0o777 == 0o600
    rc, out, _err = daemon.stop()
    assert rc == 0
    assert not daemon.sock.exists()
    events = [e["event"] for e in log_events(out)]
    assert "daemon ready" in events
    assert "shutting down" in events
    assert "daemon stopped" in events


@pytest.mark.e2e  # a real daemon process
def test_sigint_also_graceful(daemon: DaemonProc) -> None:
    rc, _out, _err = daemon.stop(signal.SIGINT)
    assert rc == 0
    assert not daemon.sock.exists()


@pytest.mark.e2e  # a real daemon process
def test_second_daemon_refuses(daemon: DaemonProc, tmp_path: Path) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "agentid_daemon", "--config", str(tmp_path / "config.toml")],
        env={**os.environ, "AGENTID_HELPER_SOCKET": str(daemon.sock)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 5  # the socket path is taken: a configuration conflict
    first_line = second.stderr.splitlines()[0]
    assert "another agentid-helper daemon is already serving on" in first_line
    assert f"pid {daemon.proc.pid}" in first_line
    assert call(daemon.sock, "GET", "/healthz")[0] == 200  # the first one is untouched


def test_bad_config_exit_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("this is = = not toml")
    rc = main(
        ["--config", str(config), "--socket", str(tmp_path / "s.sock"), "--log-format", "json"]
    )
    assert rc == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("agentid-helperd: configuration error:")
    assert not (tmp_path / "s.sock").exists()


def test_lax_socket_dir_exit_5(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    in_process_main_keeps_core_limits: list[bool],
) -> None:
    lax = tmp_path / "lax"
    lax.mkdir()
    lax.chmod(0o777)
    config = tmp_path / "c.toml"
    config.write_text("")
    rc = main(["--config", str(config), "--socket", str(lax / "s.sock"), "--log-format", "json"])
    assert rc == 5
    assert "lets other users in" in capsys.readouterr().err
    assert in_process_main_keeps_core_limits == [True]  # hardened before anything else


def test_usage_error_exit_2() -> None:
    assert main(["--log-format", "xml"]) == 2


PROFILE = """
[profiles.{name}]
tenant_id = "11111111-1111-1111-1111-111111111111"
blueprint_app_id = "22222222-2222-2222-2222-222222222222"
agent_identity_app_id = "33333333-3333-3333-3333-333333333333"
blueprint_credential = {{ env = "NOPE" }}
"""


@pytest.mark.e2e  # a real daemon process
def test_sighup_reload_keeps_old_config_on_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(PROFILE.format(name="one"))
    d = start_daemon(tmp_path, config)
    try:
        assert call(d.sock, "GET", "/v1/status")[1]["daemon"]["profiles"] == ["one"]
        config.write_text(PROFILE.format(name="one") + PROFILE.format(name="two"))
        d.proc.send_signal(signal.SIGHUP)
        _wait_for(
            lambda: call(d.sock, "GET", "/v1/status")[1]["daemon"]["profiles"] == ["one", "two"]
        )
        config.write_text("[profiles.broken\n")
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # give the reload a chance; the old config must stay either way
        assert call(d.sock, "GET", "/v1/status")[1]["daemon"]["profiles"] == ["one", "two"]
        assert call(d.sock, "GET", "/readyz")[0] == 200
    finally:
        rc, out, _ = d.stop()
    assert rc == 0
    events = log_events(out)
    reloaded = [e for e in events if e["event"] == "configuration reloaded"]
    assert reloaded
    assert reloaded[0]["added"] == ["two"]
    assert any(e["event"].startswith("configuration reload failed") for e in events)


@pytest.mark.e2e  # a real daemon process
def test_sighup_with_the_config_file_removed_keeps_every_profile(tmp_path: Path) -> None:
    """A removed (or unreadable) file on SIGHUP is an error, not an empty config."""
    config = tmp_path / "config.toml"
    config.write_text(PROFILE.format(name="one"))
    d = start_daemon(tmp_path, config)

    def daemon_status() -> dict[str, Any]:
        status: dict[str, Any] = call(d.sock, "GET", "/v1/status")[1]["daemon"]
        return status

    try:
        assert daemon_status()["last_reload_error"] is None
        config.unlink()
        d.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: daemon_status()["last_reload_error"] is not None)
        status = daemon_status()
        assert status["profiles"] == ["one"]
        assert status["last_reload_error"] == f"{config}: the file is missing"
        config.mkdir()  # unreadable as a file
        d.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "is a directory" in (daemon_status()["last_reload_error"] or ""))
        assert daemon_status()["profiles"] == ["one"]
        config.rmdir()
        config.write_text(PROFILE.format(name="one") + PROFILE.format(name="two"))
        d.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: daemon_status()["profiles"] == ["one", "two"])
        assert daemon_status()["last_reload_error"] is None
    finally:
        rc, out, _ = d.stop()
    assert rc == 0
    failed = [e for e in log_events(out) if e["event"].startswith("configuration reload failed")]
    # Each bad state is reported by SIGHUP, and may be by the status request
    # that noticed the file change first (config_watch): once or twice each.
    assert "the file is missing" in failed[0]["error"]
    assert {"missing", "directory"} == {
        "missing" if "missing" in e["error"] else "directory" for e in failed
    }
    assert 2 <= len(failed) <= 4


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# ---- in process: lifecycle and sd_notify -----------------------------------------


async def next_message(receiver: trio.socket.SocketType) -> bytes:
    """The next sd_notify message that is not a periodic STATUS= refresh."""
    while (msg := await receiver.recv(4096)).startswith(b"STATUS="):
        pass
    return msg


async def test_lifecycle_notifies_systemd(tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify")
    receiver = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await receiver.bind(notify_path)
    sock = tmp_path / "run" / "d.sock"
    daemon = Daemon(
        Config(path=str(tmp_path / "c.toml")),
        socket_path=sock,
        notifier=Notifier({"NOTIFY_SOCKET": notify_path}),
        components=Components(FakeCache(), FakeBroker(), None),
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            opened = await nursery.start(daemon.run)
            assert opened.path == str(sock)
            assert daemon.state.listening
            ready = (await receiver.recv(4096)).decode()
            assert ready.startswith("READY=1\nSTATUS=0 token(s) cached")
            stream = await trio.open_unix_socket(str(sock))
            await stream.send_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await stream.receive_some(4096)).startswith(b"HTTP/1.1 200")
            await stream.aclose()
            (tmp_path / "c.toml").write_text("")  # an empty file is a valid config
            # (a missing one is not: test_sighup_with_the_config_file_removed_keeps_every_profile)
            assert (await daemon.reload()).result == "unchanged"  # no profiles before either
            assert (await next_message(receiver)).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
            assert (await next_message(receiver)).startswith(b"READY=1")
            await daemon.stop()
        assert (await next_message(receiver)) == b"STOPPING=1"
    assert not sock.exists()
    receiver.close()


async def test_shutdown_removes_socket_then_drains(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "d.sock"
    broker = FakeBroker(gate=trio.Event())
    daemon = Daemon(
        load_api_config(tmp_path),
        socket_path=sock,
        notifier=Notifier({}),
        components=Components(FakeCache(), broker, None),
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            stream = await trio.open_unix_socket(str(sock))
            await stream.send_all(
                b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
            )
            await broker.entered.wait()
            await daemon.stop()
            assert not sock.exists()  # new clients fail fast while we drain
            assert broker.gate is not None
            broker.gate.set()
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in data
            await stream.aclose()


# ---- end to end: daemon subprocess + emulator --------------------------------------


def emulator_config(emu: Any, path: Path) -> None:
    secret = secret_file(emu, path.parent / "bp.secret")
    write_emulator_config(path, emu.info, {"secret_file": str(secret)})


def test_end_to_end_three_modes(emulator: Any, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    emulator_config(emulator, config)
    d = start_daemon(tmp_path, config, env={"REQUESTS_CA_BUNDLE": "/nonexistent"})
    try:
        status, body = call(d.sock, "POST", "/v1/token", {"profile": "app"})
        assert status == 200, body
        assert body["mode"] == "AutonomousApp"
        assert body["source"] == "identity_provider"
        assert body["token_type"] == "Bearer"
        assert body["access_token"].count(".") == 2
        status, again = call(d.sock, "POST", "/v1/token", {"profile": "app"})
        assert status == 200
        assert again["source"] == "cache"
        assert again["access_token"] == body["access_token"]

        user_token = emulator.user_token(emulator.user_upn, audience=emulator.blueprint_app_id)
        status, obo = call(
            d.sock, "POST", "/v1/token", {"profile": "obo", "user_token": user_token}
        )
        assert status == 200, obo
        assert obo["mode"] == "OBO"

        status, user = call(d.sock, "POST", "/v1/token", {"profile": "user"})
        assert status == 200, user
        assert user["mode"] == "AutonomousUser"

        status, st = call(d.sock, "GET", "/v1/status")
        assert status == 200
        assert len(st["entries"]) >= 3
        text = json.dumps(st)
        for tok in (body["access_token"], obo["access_token"], user["access_token"], user_token):
            assert tok not in text
        status, metrics = call(d.sock, "GET", "/metrics")
        assert status == 200
        assert 'endpoint="/v1/token",status="200"' in metrics
        assert call(d.sock, "DELETE", "/v1/token", {"profile": "app"})[0] == 204
        status, fresh = call(d.sock, "POST", "/v1/token", {"profile": "app"})
        assert status == 200
        assert fresh["source"] == "identity_provider"
    finally:
        rc, out, err = d.stop()
    assert rc == 0, err
    for secret in (emulator.blueprint_secret, user_token, body["access_token"]):
        assert secret not in out
        assert secret not in err


def test_status_text_names_entries_last_refresh_and_last_error() -> None:
    from agentid_daemon.process.sdnotify import StatusLine

    activity = StatusLine(cache=FakeCache(entries=2))
    assert activity.text() == "2 token(s) cached; last refresh never"
    activity.on_event("fetch", label="t1", outcome="ok")
    activity.on_event(
        "fetch",
        label="AutonomousApp",
        outcome="error",
        error="IdentityProviderError: AADSTS7000215: Invalid client secret provided.",
    )
    text = activity.text()
    assert text.startswith("2 token(s) cached; last refresh ")
    assert "last error " in text
    assert "AutonomousApp: IdentityProviderError: AADSTS7000215" in text


def test_log_level_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentid_daemon.app import parse_args

    monkeypatch.setenv("AGENTID_HELPER_LOG_LEVEL", "DEBUG")  # a systemd drop-in's Environment=
    assert parse_args([]).log_level == "debug"
    assert parse_args(["--log-level", "warning"]).log_level == "warning"
    monkeypatch.delenv("AGENTID_HELPER_LOG_LEVEL")
    assert parse_args([]).log_level == "info"


async def test_reload_forgets_remembered_resolutions(tmp_path: Path) -> None:
    from agentid_daemon.config.loader import load_config

    path = tmp_path / "config.toml"
    path.write_text(PROFILE.format(name="one"))
    old = load_config(path, environ={})
    daemon = Daemon(
        old,
        config_path=str(path),
        notifier=Notifier(environ={}),
        components=Components(FakeCache(), FakeBroker(), None),
    )
    before = old.resolve({"profile": "one"})
    assert old.resolve({"profile": "one"}) is before  # remembered
    path.write_text(PROFILE.format(name="one").replace("33333333-", "55555555-"))
    with trio.fail_after(10):
        assert (await daemon.reload()).result == "loaded"
    new = daemon.state.config
    assert new is not old
    assert old.remembered == 0
    after = new.resolve({"profile": "one"})
    assert after.agent.agent_identity_app_id.startswith("55555555-")


async def test_sigterm_before_the_receiver_shuts_down_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop during start-up (SIGTERM caught by the early handler) ends run() cleanly."""
    from agentid_daemon import app

    monkeypatch.setattr(app, "_EARLY_TERM", [])
    app._remember_early_term(15, None)  # what the handler main() installs does
    sock = tmp_path / "run" / "d.sock"
    daemon = Daemon(
        Config(path=str(tmp_path / "c.toml")),
        socket_path=sock,
        notifier=Notifier({}),
        components=Components(FakeCache(), FakeBroker(), None),
    )
    with trio.fail_after(10):
        await daemon.run()  # returns by itself: the remembered SIGTERM stops it
    assert not sock.exists()


async def test_reload_applies_idle_timeout_to_the_real_cache(tmp_path: Path) -> None:
    """SIGHUP's reload reaches the real TokenCache (no fake, no hasattr in between)."""
    from agentid_daemon.cache.token_cache import TokenCache
    from agentid_daemon.config.loader import load_config

    path = tmp_path / "config.toml"
    path.write_text("[daemon]\nidle_timeout_s = 600\n")
    daemon = Daemon(
        load_config(path, environ={}), config_path=str(path), notifier=Notifier(environ={})
    )
    assert isinstance(daemon.cache, TokenCache)
    assert daemon.cache.idle_timeout_s == 600
    path.write_text("[daemon]\nidle_timeout_s = 120\n")
    with trio.fail_after(10):
        assert (await daemon.reload()).result == "loaded"
    assert daemon.cache.idle_timeout_s == 120
