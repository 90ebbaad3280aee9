"""The units under a real ``systemd --user`` (tests/support/systemd_user_manager.py boots one).

One user manager and one emulator for the module, as the throwaway user
``agentid-systemd``; the project is installed for that user with ``pip install .``.
The tests run in file order and each leaves the units installed and healthy
for the next (the last one uninstalls):

- ``systemd install --now``, then a socket-activated ``get``;
- re-installing unchanged units does not restart the daemon;
- ``systemctl --user reload``: the config is re-read, tokens are kept (was: 226/NAMESPACE);
- a restart during 8x40 parallel gets with a slow identity provider: 0 failures;
- the watchdog restarts a SIGSTOPped daemon; the client waiting meanwhile gets its token;
- a crash loop fails clients within seconds, with the systemctl hint (was: 120 s, exit 3);
- with the socket stopped the client asks systemd instead of autostarting a daemon;
- ``stop`` stops the socket and the service; the next ``get`` starts them again;
- ``systemd uninstall``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_harness import Emulator, start_emulator
from helper_stack import emulator_profile, toml_dumps
from machine_users import SYSTEMD_USER, require_user
from systemd_user_manager import UserManager, user_manager

pytestmark = pytest.mark.integration

GRAPH = "https://graph.microsoft.com"
SERVICE = "agentid-helper.service"
SOCKET = "agentid-helper.socket"
DROPIN_DIR = ".config/systemd/user/agentid-helper.service.d"


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    user = require_user(SYSTEMD_USER)
    log = tmp_path_factory.mktemp("systemd-user") / "manager.log"
    with user_manager(user, log) as um:
        _reset_home(um)
        try:
            yield um
        finally:
            um.systemctl("disable", "--now", SOCKET, SERVICE)
            _reset_home(um)


def _reset_home(um: UserManager) -> None:
    """The user's config and units from earlier runs go (the venv cache stays)."""
    for rel in (".config/agentid-helper", ".config/systemd"):
        shutil.rmtree(um.home / rel, ignore_errors=True)


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, emulator_key_template: Path
) -> Iterator[Emulator]:
    workdir = tmp_path_factory.mktemp("emulator-systemd")
    emu = start_emulator(workdir, key_template=emulator_key_template)
    try:
        yield emu
    finally:
        emu.stop()


def _write_as_user(um: UserManager, rel: str, text: str, mode: int = 0o600) -> Path:
    path = um.home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in [path.parent, *path.parent.parents]:
        if parent == um.home:
            break
        os.chown(parent, um.user.pw_uid, um.user.pw_gid)
    path.write_text(text)
    os.chown(path, um.user.pw_uid, um.user.pw_gid)
    path.chmod(mode)
    return path


def _write_config(um: UserManager, emu: Emulator, *, extra_profile: bool = False) -> None:
    cfg = ".config/agentid-helper"
    ca = _write_as_user(um, f"{cfg}/emulator-ca.pem", Path(emu.ca_bundle).read_text(), 0o644)
    secret = _write_as_user(um, f"{cfg}/bp.secret", emu.blueprint_secret)
    credential = {"secret_file": str(secret)}
    profiles = {"app": emulator_profile(emu.info, resource=GRAPH, credential=credential)}
    if extra_profile:
        profiles["app2"] = emulator_profile(
            emu.info, resource="https://vault.azure.net", credential=credential
        )
    config: dict[str, Any] = {
        "default_profile": "app",
        "defaults": {
            "tenant_id": emu.tenant_id,
            "authority_host": emu.authority_host,
            "ca_bundle": str(ca),
        },
        "profiles": profiles,
    }
    _write_as_user(um, f"{cfg}/config.toml", toml_dumps(config))


def _client(um: UserManager, *args: str, timeout: float = 120.0) -> Any:
    return um.run(["agentid-helper", *args], timeout=timeout)


def _describe(um: UserManager, proc: Any) -> str:
    status = um.systemctl("status", SOCKET, SERVICE).stdout
    out = "<holds a token>" if "access_token" in proc.stdout else proc.stdout[-500:]
    return (
        f"exit {proc.returncode}\nstdout: {out}"
        f"\nstderr: {proc.stderr[-2000:]}\n--- systemctl status\n{status}"
        f"\n--- manager log\n{um.log_text()[-3000:]}"
    )


def _main_pid(um: UserManager) -> int:
    return int(um.show(SERVICE, "MainPID") or 0)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _add_dropin(um: UserManager, name: str, text: str) -> None:
    _write_as_user(um, f"{DROPIN_DIR}/{name}", text, 0o644)
    assert um.systemctl("daemon-reload").returncode == 0


def _remove_dropin(um: UserManager, name: str) -> None:
    (um.home / DROPIN_DIR / name).unlink(missing_ok=True)
    assert um.systemctl("daemon-reload").returncode == 0


def test_install_now_then_a_socket_activated_get(manager: UserManager, emulator: Emulator) -> None:
    um = manager
    _write_config(um, emulator)
    install = _client(um, "systemd", "install", "--now")
    assert install.returncode == 0, _describe(um, install)
    assert um.systemctl("is-active", SOCKET).stdout.strip() == "active"
    assert _main_pid(um) == 0  # nothing runs until a client connects
    got = _client(um, "get", "--format", "json")
    assert got.returncode == 0, _describe(um, got)
    assert '"access_token"' in got.stdout
    pid = _main_pid(um)
    assert pid > 0
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "agentid-helperd"
    status = _client(um, "status")
    assert status.returncode == 0
    assert "run by systemd unit agentid-helper.service" in status.stdout
    doctor = _client(um, "doctor")
    assert "systemd units installed: agentid-helper.socket active" in doctor.stdout, doctor.stdout
    # Re-installing unchanged units leaves the daemon (and its cache) alone.
    again = _client(um, "systemd", "install", "--now")
    assert again.returncode == 0, again.stdout
    assert "try-restart" not in again.stdout, again.stdout
    assert _main_pid(um) == pid


def test_reload_rereads_config_and_keeps_tokens(manager: UserManager, emulator: Emulator) -> None:
    """Was: `systemctl --user reload` failed with 226/NAMESPACE (PrivateIPC= + PrivateUsers=)."""
    um = manager
    pid = _main_pid(um)
    _write_config(um, emulator, extra_profile=True)
    reload = um.systemctl("reload", SERVICE)
    assert reload.returncode == 0, _describe(um, reload)
    assert _main_pid(um) == pid
    _wait(lambda: "app2" in _client(um, "status", "--json").stdout, 30, "the reloaded config")
    cached = _client(um, "get", "--format", "json")
    assert cached.returncode == 0, _describe(um, cached)
    assert '"source": "cache"' in cached.stdout, _describe(um, cached)


def test_restart_during_parallel_gets_with_a_slow_idp(
    manager: UserManager, emulator: Emulator
) -> None:
    """8 workers x 40 gets while the service restarts twice: every get exits 0."""
    um = manager
    emulator.set_faults(delay_s=2)
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            proc = _client(um, "get", "--profile", "app", "--timeout", "90", timeout=120)
            with lock:
                done[0] += 1
                if proc.returncode != 0:
                    failures.append(f"{proc.returncode}: {proc.stderr[-300:]}")

    try:
        assert _client(um, "flush", "--all").returncode == 0  # the next get is a slow acquisition
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        _wait(lambda: done[0] >= 8 or failures, 120, "the first gets")
        first = _main_pid(um)
        assert um.systemctl("restart", SERVICE).returncode == 0  # cache hits in flight
        assert _client(um, "flush", "--all").returncode == 0
        _wait(lambda: done[0] >= 120 or failures, 240, "more gets")
        assert um.systemctl("restart", SERVICE).returncode == 0  # an acquisition in flight
        for t in threads:
            t.join(timeout=600)
        second = _main_pid(um)
    finally:
        emulator.clear_faults()
    assert not failures, failures[:5]
    assert done[0] == 320
    assert second not in (0, first)


def test_watchdog_restarts_a_stopped_daemon_and_the_waiting_client_gets_its_token(
    manager: UserManager,
) -> None:
    um = manager
    _add_dropin(um, "90-test-watchdog.conf", "[Service]\nWatchdogSec=2s\n")
    try:
        assert um.systemctl("restart", SERVICE).returncode == 0
        warm = _client(um, "get")
        assert warm.returncode == 0, _describe(um, warm)
        stopped = _main_pid(um)
        restarts = int(um.show(SERVICE, "NRestarts") or 0)
        os.kill(stopped, signal.SIGSTOP)
        waiting = um.popen(
            ["agentid-helper", "get", "--timeout", "90"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            code = waiting.wait(timeout=120)
            err = waiting.stderr.read() if waiting.stderr else ""
        finally:
            if waiting.poll() is None:
                waiting.kill()
        assert code == 0, err + um.log_text()[-2000:]
        assert _main_pid(um) not in (0, stopped)
        # Restarted by systemd itself (Restart=on-failure after the watchdog), not by us.
        assert int(um.show(SERVICE, "NRestarts") or 0) > restarts
    finally:
        _remove_dropin(um, "90-test-watchdog.conf")
        um.systemctl("restart", SERVICE)


def test_a_crash_loop_fails_clients_within_seconds_with_the_hint(manager: UserManager) -> None:
    """Was: 203/EXEC restarted forever and every client hung 120 s, then exit 3 with no hint."""
    um = manager
    broken = "[Service]\nExecStart=\nExecStart=/nonexistent/agentid-helperd\n"
    _add_dropin(um, "90-test-broken.conf", broken)
    try:
        um.systemctl("stop", SERVICE)
        um.systemctl("reset-failed", SOCKET, SERVICE)
        started = time.monotonic()
        proc = _client(um, "get", "--timeout", "100", timeout=150)
        elapsed = time.monotonic() - started
        assert proc.returncode == 3, _describe(um, proc)
        assert "systemctl --user status agentid-helper" in proc.stderr
        assert "within 100 s" not in proc.stderr  # failed fast, not at the deadline
        assert elapsed < 100  # a bound (the deadline), not a timing claim
        kubectl = _client(um, "kubectl-credential", "--timeout", "100", timeout=150)
        assert kubectl.returncode == 3
        assert "systemctl --user" in kubectl.stderr
        git = um.run(
            ["agentid-helper", "git-credential", "--profile", "app", "--timeout", "100", "get"],
            input="protocol=https\nhost=dev.azure.com\n\n",
            timeout=150,
        )
        assert git.returncode == 3, git.stderr
        assert "systemctl --user" in git.stderr
    finally:
        _remove_dropin(um, "90-test-broken.conf")
        um.systemctl("reset-failed", SOCKET, SERVICE)
        um.systemctl("start", SOCKET)
    healed = _client(um, "get")
    assert healed.returncode == 0, _describe(um, healed)


def test_with_the_socket_stopped_the_client_asks_systemd(manager: UserManager) -> None:
    """Was: the client autostarted a daemon outside systemd (no $CREDENTIALS_DIRECTORY)."""
    um = manager
    assert um.systemctl("stop", SOCKET, SERVICE).returncode == 0
    proc = _client(um, "get")
    assert proc.returncode == 0, _describe(um, proc)
    assert um.systemctl("is-active", SOCKET).stdout.strip() == "active"
    assert _main_pid(um) > 0
    assert not (um.runtime_dir / "agentid-helper" / "agentid-helperd.log").exists()
    status = _client(um, "status")
    assert "run by systemd unit" in status.stdout


def test_stop_stops_both_units_and_the_next_get_starts_them(manager: UserManager) -> None:
    um = manager
    assert _client(um, "get").returncode == 0
    proc = _client(um, "stop")
    assert proc.returncode == 0, _describe(um, proc)
    assert proc.stdout == (
        f"stopped {SOCKET} and {SERVICE} (systemd); the next command that needs the daemon "
        "starts them again\n"
    )
    for unit in (SOCKET, SERVICE):
        assert um.systemctl("is-active", unit).stdout.strip() != "active"
    again = _client(um, "get")
    assert again.returncode == 0, _describe(um, again)
    assert um.systemctl("is-active", SOCKET).stdout.strip() == "active"


def test_uninstall(manager: UserManager) -> None:
    um = manager
    proc = _client(um, "systemd", "uninstall")
    assert proc.returncode == 0, _describe(um, proc)
    assert not (um.home / ".config/systemd/user" / SERVICE).exists()
    assert um.systemctl("is-active", SOCKET).stdout.strip() != "active"
