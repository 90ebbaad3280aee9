"""Autostart: spawn, wait, lock, failure reporting (with stand-in daemons)."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_fakes import TOKEN, FakeDaemon, token_body
from log_audit import scan_tree
from tooling import ROOT, SUPPORT

from agentid_client import autostart, daemon_api, jsonlite
from agentid_client.cli import CLI
from agentid_client.contract import WARM_REQUEST_ENV

# A stand-in daemon: the shared fake, serving until killed; like the real one
# it reports "ready" on the start report pipe once it listens.
FAKE_DAEMON = (
    "import os, sys, time; sys.path.insert(0, {tests!r});"
    "from client_fakes import FakeDaemon;"
    "f = FakeDaemon(os.environ['AGENTID_HELPER_SOCKET']).__enter__();"
    "open(os.environ['AGENTID_HELPER_SOCKET'] + '.pid', 'w').write(str(os.getpid()));"
    "fd = int(os.environ['AGENTID_HELPER_READY_FD']); os.write(fd, b'ready\\n'); os.close(fd);"
    "time.sleep(60)"
)


@pytest.fixture
def sockdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="aidc-as-")
    sock = os.path.join(directory, "sub", "dir", "agentid-helper.sock")
    monkeypatch.setenv("AGENTID_HELPER_SOCKET", sock)
    monkeypatch.delenv("AGENTID_HELPER_NO_AUTOSTART", raising=False)
    yield sock
    pidfile = sock + ".pid"
    if os.path.exists(pidfile):
        os.kill(int(Path(pidfile).read_text()), signal.SIGKILL)
    scan_tree(Path(directory))  # session-wide log audit
    shutil.rmtree(directory, ignore_errors=True)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return CLI(io.StringIO(), out, err).run(argv), out.getvalue(), err.getvalue()


def test_autostart_spawns_and_serves(sockdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autostart, "_DAEMON_CODE", FAKE_DAEMON.format(tests=str(SUPPORT)))
    code, out, err = run(["get"])
    assert code == 0, err
    assert out.strip().count(".") == 2
    directory = os.path.dirname(sockdir)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(directory)).st_mode & 0o777 == 0o700
    assert os.path.exists(os.path.join(directory, autostart.LOCK_NAME))
    assert autostart.answers(sockdir)
    pid = int(Path(sockdir + ".pid").read_text())
    assert os.getsid(pid) == pid  # detached into its own session
    # a second call finds the running daemon: no new spawn
    monkeypatch.setattr(autostart, "_DAEMON_CODE", "raise SystemExit(9)")
    assert run(["get"])[0] == 0


def test_daemon_that_dies_is_reported(sockdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        autostart, "_DAEMON_CODE", "import sys; sys.stderr.write('boom\\n'); sys.exit(5)"
    )
    code, out, err = run(["get"])
    assert (code, out) == (3, "")
    assert "the daemon exited with status 5 while starting" in err.splitlines()[0]
    log = os.path.join(os.path.dirname(sockdir), autostart.LOG_NAME)
    assert f"see {log}" in err
    assert Path(log).read_text() == "boom\n"
    assert os.stat(log).st_mode & 0o777 == 0o600


def test_daemon_that_never_listens_times_out(sockdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autostart, "_DAEMON_CODE", "import time; time.sleep(30)")
    monkeypatch.setattr(autostart, "START_TIMEOUT_S", 0.3)
    spawned = []
    real_spawn = autostart.spawn

    def spawn(log_path: str, socket_path: str, ready_fd: int, warm: str | None = None, **kw):  # type: ignore[no-untyped-def]
        proc = real_spawn(log_path, socket_path, ready_fd, warm, **kw)
        spawned.append(proc)
        return proc

    monkeypatch.setattr(autostart, "spawn", spawn)
    try:
        code, _, err = run(["get"])
    finally:
        for proc in spawned:  # a slow daemon is left running by design; not in a test
            proc.kill()
            proc.wait(5)
    assert code == 3
    assert "did not listen within 0.3 s" in err


def test_daemon_log_gets_stdout_and_rotates(sockdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's JSON lines (stdout) land in the log; a big old log moves to .1 first."""
    directory = os.path.dirname(sockdir)
    os.makedirs(directory, mode=0o700)
    log = os.path.join(directory, autostart.LOG_NAME)
    Path(log).write_text("x" * (autostart.LOG_ROTATE_BYTES + 1))
    monkeypatch.setattr(
        autostart, "_DAEMON_CODE", 'import sys; print(\'{"event": "started"}\'); sys.exit(5)'
    )
    code, _, _ = run(["get"])
    assert code == 3
    assert Path(log).read_text() == '{"event": "started"}\n'
    assert Path(log + ".1").stat().st_size == autostart.LOG_ROTATE_BYTES + 1


def test_autostarted_daemon_gets_an_allow_listed_environment(
    sockdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's token-bearing variables do not live on in the daemon it starts."""
    monkeypatch.setattr(autostart, "_DAEMON_CODE", FAKE_DAEMON.format(tests=str(SUPPORT)))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.example")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("AGENTID_ACCESS_TOKEN", "client-token-value")
    monkeypatch.setenv("GITHUB_TOKEN", "another-token-value")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/whatever")
    assert run(["get"])[0] == 0
    pid = _wait_for_pid(sockdir + ".pid")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert env["no_proxy"] == "localhost"
    assert env["AZURE_AUTHORITY_HOST"] == "https://login.example"
    assert env["LC_TIME"] == "C"
    assert env["AGENTID_HELPER_SOCKET"] == sockdir  # the very path the client checked
    for name in ("AGENTID_ACCESS_TOKEN", "GITHUB_TOKEN", "NOTIFY_SOCKET"):
        assert name not in env
    assert b"token-value" not in raw
    for name in env:
        assert name in autostart.DAEMON_ENV_NAMES or name.startswith(
            autostart.DAEMON_ENV_PREFIXES
        ), name


def _wait_for_pid(pidfile: str) -> int:
    """The stand-in writes its pid just after it starts listening: wait for it (bounded)."""
    for _ in range(500):
        text = Path(pidfile).read_text() if os.path.exists(pidfile) else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError("the stand-in daemon never wrote its pid")


def test_readme_lists_the_daemon_environment_allow_list() -> None:
    """One source (autostart.DAEMON_ENV_*), its documentation tied to it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Security model", 1)[1].split("\n## ", 1)[0]
    for name in autostart.DAEMON_ENV_NAMES:
        if name.islower():
            assert "also lower case" in section
            continue
        assert f"`{name}`" in section, name
    for prefix in autostart.DAEMON_ENV_PREFIXES:
        assert f"`{prefix}*`" in section, prefix


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["get"], {}),
        (
            ["get", "--profile", "app", "--scope", "api://x/.default"],
            {"profile": "app", "scope": "api://x/.default"},
        ),
    ],
)
def test_autostarted_daemon_is_told_the_request_to_come_and_nothing_more(
    sockdir: str, monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: dict[str, str]
) -> None:
    """The daemon's engine host makes that request's first legs while it starts
    (agentid_daemon.process.engine_host); the client's own value of the variable
    never passes, and neither does any option of the request."""
    monkeypatch.setattr(autostart, "_DAEMON_CODE", FAKE_DAEMON.format(tests=str(SUPPORT)))
    monkeypatch.setenv(WARM_REQUEST_ENV, '{"profile": "planted"}')
    assert run([*argv, "--min-validity", "60"])[0] == 0
    pid = _wait_for_pid(sockdir + ".pid")
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    assert jsonlite.loads(env[WARM_REQUEST_ENV]) == expected


@pytest.mark.parametrize(
    ("method", "target", "payload", "expected"),
    [
        ("POST", "/v1/token", {"profile": "app", "scope": "x"}, {"profile": "app", "scope": "x"}),
        ("POST", "/v1/token", {"scope": ["x", "y"], "min_validity_s": 60}, {"scope": ["x", "y"]}),
        # never a user token; only that a claims challenge came
        (
            "POST",
            "/v1/token",
            {"mode": "OBO", "user_token": "eyJ.secret", "claims": "{}", "force_refresh": True},
            {"mode": "OBO", "claims": True},
        ),
        ("GET", "/v1/status", None, None),
        ("POST", "/v1/agents", {"profile": "app"}, None),
    ],
)
def test_only_a_token_request_is_told_and_never_its_user_token(
    method: str, target: str, payload: object, expected: dict[str, object] | None
) -> None:
    told = daemon_api.warm_request_of(method, target, payload)
    assert (None if told is None else jsonlite.loads(told)) == expected


def test_autostarted_daemon_holds_no_descriptor_of_the_client_and_not_its_directory(
    sockdir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An fd the client inherited without close-on-exec (a jobserver, a harness's pipe)
    does not live on in the daemon, which runs in / while the client stays where it was."""
    monkeypatch.setattr(autostart, "_DAEMON_CODE", FAKE_DAEMON.format(tests=str(SUPPORT)))
    monkeypatch.chdir(tmp_path)
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        assert run(["get"])[0] == 0
        pid = _wait_for_pid(sockdir + ".pid")
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert os.readlink(f"/proc/self/fd/{write_end}") not in held
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.getcwd() == str(tmp_path)
        assert os.get_inheritable(write_end)  # the client's own descriptors are untouched
    finally:
        os.close(read_end)
        os.close(write_end)


# What the client's cold path must not import before it starts a daemon: the first
# call waits for every millisecond of it (issue 22; bench/bench_firstcall.py). These
# are what supervisor, systemd_units and autostart used to pull in (~55 ms).
COLD_PATH_FORBIDDEN = frozenset(
    {"subprocess", "shutil", "pathlib", "hashlib", "tempfile", "typing", "socket"}
    | {"importlib.resources", "threading", "selectors", "zipfile", "bz2", "lzma"}
)

COLD_PROBE = """
import sys
from agentid_client import autostart, cli
forbidden = set(sys.argv[1].split(","))
def spawn(*_args, **_kwargs):
    print(",".join(sorted(forbidden & set(sys.modules))))
    raise SystemExit(0)
autostart.spawn = spawn
sys.exit(cli.main(["get"]))
"""


def test_cold_path_imports_little_before_it_starts_the_daemon(tmp_path: Path) -> None:
    """From the launcher's ``python -I -S`` to the spawn, with the systemd unit path
    consulted (no AGENTID_HELPER_SOCKET): none of the heavy stdlib modules."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "PYTHONPATH": str(ROOT / "client"),
    }
    proc = subprocess.run(
        [sys.executable, "-S", "-c", COLD_PROBE, ",".join(sorted(COLD_PATH_FORBIDDEN))],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"the cold path imported {proc.stdout.strip()}"


# -- the first answer, before the daemon listens (contract.FIRST_ANSWER_FD_ENV) -------

# A stand-in daemon that answers on the client's pair: it keeps the request it read
# (next to the socket) and writes ``answer``; with ``then`` it goes on as FAKE_DAEMON,
# else it never listens and holds the start lock it was given.
PAIR_DAEMON = """
import os, socket, time
sock = os.environ["AGENTID_HELPER_SOCKET"]
open(sock + ".pid", "w").write(str(os.getpid()))
assert os.environ["AGENTID_HELPER_START_LOCK_FD"].isdigit()
pair = socket.socket(fileno=int(os.environ["AGENTID_HELPER_FIRST_ANSWER_FD"]))
request = b""
while chunk := pair.recv(65536):
    request += chunk
open(sock + ".request", "wb").write(request)
pair.sendall({answer!r})
pair.close()
{then}
"""


def pair_daemon(answer: bytes, then: str = "time.sleep(60)") -> str:
    return PAIR_DAEMON.format(answer=answer, then=then)


def _lock_is_held(sockdir: str) -> bool:
    fd = os.open(os.path.join(os.path.dirname(sockdir), autostart.LOCK_NAME), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_first_answer_on_the_pair_is_the_calls_answer(
    sockdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client sends its request's body on the pair and takes the answer that
    comes back, without waiting for the daemon to listen; the start lock stays
    with the starting daemon."""
    answer = jsonlite.dumps(token_body("from-the-pair")).encode()
    monkeypatch.setattr(autostart, "_DAEMON_CODE", pair_daemon(answer))
    code, out, err = run(["get", "--profile", "app", "--min-validity", "60"])
    assert (code, out.strip()) == (0, "from-the-pair"), err
    sent = jsonlite.loads(Path(sockdir + ".request").read_bytes())
    assert sent["profile"] == "app" and sent["min_validity_s"] == 60
    assert not os.path.exists(sockdir)  # it never listened
    assert _lock_is_held(sockdir)  # by the daemon: a second client waits for it


@pytest.mark.parametrize("answer", [b"", b'{"access_token": "cut sh', b"[1, 2]"])
def test_no_or_a_broken_first_answer_sends_the_request_on_the_socket(
    sockdir: str, monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    then = FAKE_DAEMON.format(tests=str(SUPPORT))
    monkeypatch.setattr(autostart, "_DAEMON_CODE", pair_daemon(answer, then))
    code, out, err = run(["get"])
    assert (code, out.strip()) == (0, TOKEN), err


def test_a_command_that_starts_nothing_waits_for_a_start_under_way(
    sockdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flush`` right after a ``get`` answered before its daemon listened: the daemon
    is about to listen (it holds the start lock), not absent."""
    monkeypatch.setattr(autostart, "_DAEMON_CODE", pair_daemon(b""))  # never reports
    directory = os.path.dirname(sockdir)
    os.makedirs(directory, mode=0o700)
    lock = os.open(os.path.join(directory, autostart.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # a start under way

    def listen_then_let_go() -> None:
        time.sleep(0.3)
        fake.__enter__()
        os.close(lock)

    fake = FakeDaemon(sockdir)
    threading.Thread(target=listen_then_let_go, daemon=True).start()
    try:
        code, out, err = run(["flush", "--profile", "bot"])
    finally:
        fake.__exit__(None, None, None)
    assert code == 0, err
    assert "no daemon running" not in out + err
    assert [r["path"] for r in fake.requests] == ["/v1/flush"]


def test_with_no_start_under_way_nothing_running_is_said_at_once(sockdir: str) -> None:
    code, out, _ = run(["flush", "--profile", "bot"])
    assert code == 0 and "no daemon running" in out
