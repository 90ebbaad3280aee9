"""loopback_peers: the sock_diag lookup of a loopback peer's uid, and the admission it drives.

Real sockets on loopback throughout: the peer of a connection this process
opened is this process's uid. Where netlink is refused (tests/support/no_netlink.py:
a seccomp filter, as a sandbox's) the daemon says so in ``status`` and
``doctor``. The two-uid cases are in
tests/daemon/identity_endpoint/test_trust_tcp_endpoint_peers.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from tooling import SUPPORT

from agentid_daemon.config.loader import load_config
from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.identity_endpoint.service import IdentitySessions
from agentid_daemon.server.loopback_peers import (
    NETLINK_SOCK_DIAG,
    TCP_ESTABLISHED,
    LoopbackAdmission,
    NotLoopback,
    PeerLookupError,
    PeerNotFound,
    diag_request,
    is_loopback,
    loopback_peer_uid,
    parse_diag_answer,
    probe_sock_diag,
)
from agentid_daemon.server.protocol import HttpServer, Limits, Response

NO_NETLINK = SUPPORT / "no_netlink.py"


def connected_pair(family: int, host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    """(server, accepted, client) on loopback; the caller closes them."""
    server = socket.create_server((host, 0), family=family)
    client = socket.create_connection(server.getsockname()[:2], timeout=5)
    accepted, _ = server.accept()
    return server, accepted, client


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_the_peer_of_our_own_connection_is_our_uid(family: int, host: str) -> None:
    server, accepted, client = connected_pair(family, host)
    with server, accepted, client:
        assert loopback_peer_uid(family, accepted.getsockname(), accepted.getpeername()) == (
            os.getuid()
        )


def test_other_loopback_addresses_of_127_0_0_0_8_are_looked_up() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.bind(("127.0.0.2", 0))
    client.connect(server.getsockname())
    accepted, peer = server.accept()
    with server, accepted, client:
        assert peer[0] == "127.0.0.2"
        assert loopback_peer_uid(socket.AF_INET, accepted.getsockname(), peer) == os.getuid()


def test_the_parser_reads_the_kernels_answer_for_the_exact_socket() -> None:
    server, accepted, client = connected_pair(socket.AF_INET, "127.0.0.1")
    with server, accepted, client:
        peer, local = accepted.getpeername(), accepted.getsockname()
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        with nl:
            nl.send(diag_request(socket.AF_INET, peer, local, seq=4242))
            data = nl.recv(8192)
    answer = parse_diag_answer(data, 4242)
    assert (answer.family, answer.state, answer.uid) == (
        socket.AF_INET,
        TCP_ESTABLISHED,
        os.getuid(),
    )
    assert (answer.sport, answer.dport) == (peer[1], local[1])
    assert answer.src[:4] == socket.inet_aton(peer[0]) and answer.dst[:4] == socket.inet_aton(
        local[0]
    )
    with pytest.raises(PeerLookupError, match="no answer"):
        parse_diag_answer(data, 4243)  # another request's
    with pytest.raises(PeerLookupError, match="no answer"):
        parse_diag_answer(data[:40], 4242)  # cut short


def test_no_socket_for_the_address_is_not_found() -> None:
    server, accepted, client = connected_pair(socket.AF_INET, "127.0.0.1")
    with server, accepted, client:
        local, peer = accepted.getsockname(), accepted.getpeername()
    with pytest.raises(PeerNotFound):
        loopback_peer_uid(socket.AF_INET, local, ("127.0.0.1", peer[1]))


def test_a_peer_in_time_wait_is_not_taken_for_root() -> None:
    """The kernel reports uid 0 for TIME_WAIT sockets: their owner is gone."""
    server, accepted, client = connected_pair(socket.AF_INET, "127.0.0.1")
    local, peer = accepted.getsockname(), accepted.getpeername()
    with server:
        client.close()  # the peer closes first: its side goes to TIME_WAIT
        assert accepted.recv(1) == b""
        accepted.close()
        time.sleep(0.05)
        with pytest.raises(PeerNotFound):
            loopback_peer_uid(socket.AF_INET, local, peer)


def test_a_peer_off_loopback_is_refused_without_asking() -> None:
    with pytest.raises(NotLoopback):
        loopback_peer_uid(socket.AF_INET, ("127.0.0.1", 8081), ("192.0.2.7", 40000))
    with pytest.raises(NotLoopback):
        loopback_peer_uid(socket.AF_INET6, ("::1", 8081), ("2001:db8::1", 40000, 0, 0))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:192.0.2.1", False),
        ("10.0.0.1", False),
        ("fe80::1%lo", False),
        ("not an address", False),
    ],
)
def test_which_peer_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_probe_succeeds_here_and_names_the_reason_without_netlink() -> None:
    assert probe_sock_diag() is None
    code = (
        "from agentid_daemon.server.loopback_peers import probe_sock_diag; print(probe_sock_diag())"
    )
    done = subprocess.run(
        [sys.executable, str(NO_NETLINK), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "no NETLINK_SOCK_DIAG: Address family not supported by protocol"


def test_the_admission_refuses_our_uid_when_it_is_not_the_one_it_serves() -> None:
    """An endpoint of another uid (own_uid) refuses us; listing our uid admits us."""

    async def main() -> None:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        other = os.getuid() + 1
        for admission, refused in (
            (LoopbackAdmission(own_uid=other), True),
            (LoopbackAdmission([os.getuid()], own_uid=other, max_per_peer=3), False),
        ):
            admission.probe()
            client = await trio.open_tcp_stream("127.0.0.1", port)
            stream = await listener.accept()
            verdict = admission.admit(stream)
            assert (verdict.refusal is not None) is refused
            assert verdict.max_held == (None if refused else 3)
            assert admission.status()["refused_connections"] == int(refused)
            await stream.aclose()
            await client.aclose()
        await listener.aclose()

    trio.run(main)


# ---- HttpServer with an Admission: first byte, eviction ----------------------------


async def hello(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Response:
    return Response.json(200, {"ok": True})


REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def serving(
    nursery: trio.Nursery, limits: Limits
) -> tuple[HttpServer, int, trio.SocketListener]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    admission = LoopbackAdmission()
    admission.probe()
    server = HttpServer(hello, limits=limits, admission=admission)
    await nursery.start(server.serve, listener)
    return server, listener.socket.getsockname()[1], listener


async def ask(port: int) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(REQUEST)
        reply = b""
        while chunk := await stream.receive_some(65536):
            reply += chunk
    return reply


def test_a_silent_connection_is_dropped_after_the_first_byte_deadline() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            _, port, _ = await serving(nursery, Limits(first_byte_timeout_s=0.3))
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(5):
                start = trio.current_time()
                assert await silent.receive_some(10) == b""  # closed, unanswered
                assert trio.current_time() - start < 3
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_at_capacity_a_newcomer_takes_the_place_of_the_oldest_silent_connection() -> None:
    """Was: silent connections held every slot until request_timeout_s."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            limits = Limits(max_connections=2, request_timeout_s=60, first_byte_timeout_s=60)
            server, port, _ = await serving(nursery, limits)
            oldest = await trio.open_tcp_stream("127.0.0.1", port)
            await trio.sleep(0.1)
            newer = await trio.open_tcp_stream("127.0.0.1", port)
            await trio.sleep(0.1)
            with trio.fail_after(5):
                assert (await ask(port)).startswith(b"HTTP/1.1 200 ")
                assert await oldest.receive_some(10) == b""  # it made room
            assert server.evicted == 1
            with trio.move_on_after(0.2) as still_open:
                await newer.receive_some(10)
            assert still_open.cancelled_caught
            nursery.cancel_scope.cancel()

    trio.run(main)


# ---- config ------------------------------------------------------------------------


def test_allowed_uids_are_read_from_the_daemon_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[daemon]\nmanaged_identity_allowed_uids = [1002, 1001, 1002]\n")
    assert load_config(path).daemon.managed_identity_allowed_uids == (1001, 1002)


@pytest.mark.parametrize("value", ["1001", "[true]", "[-1]", '["1001"]', "[4294967295]"])
def test_allowed_uids_must_be_numeric_uids(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[daemon]\nmanaged_identity_allowed_uids = {value}\n")
    with pytest.raises(ConfigurationError, match="managed_identity_allowed_uids"):
        load_config(path)


# ---- status and doctor, with and without sock_diag ---------------------------------


def test_status_names_who_may_connect(tmp_path: Path) -> None:
    async def main() -> None:
        sessions = IdentitySessions(_NoTokens(), allowed_uids=[4242])
        async with trio.open_nursery() as nursery:
            await nursery.start(sessions.run)
            # A session like exec registers: its own listener, our pidfd.
            with socket.create_server(("127.0.0.1", 0)) as listener:
                await sessions.register(
                    {},
                    os.getpid(),
                    pidfd=os.pidfd_open(os.getpid()),
                    listener_fd=os.dup(listener.fileno()),
                )
                peers = sessions.status()["peers"]
                nursery.cancel_scope.cancel()
        assert peers["peer_check"] == "sock_diag"
        assert peers["allowed_uids"] == sorted({os.getuid(), 4242})

    trio.run(main)


class _NoTokens:
    """A mi_endpoint.TokenSource that is never asked (no request is sent)."""

    def resolve_selection(self, obj: dict[str, object]) -> object:
        raise AssertionError("not asked")

    async def token_payload(
        self, obj: dict[str, object], ctx: dict[str, object]
    ) -> dict[str, object]:
        raise AssertionError("not asked")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def daemon_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    secret = tmp_path / "secret"
    secret.write_text("not-a-real-secret\n")
    secret.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f"""
default_profile = "bot"
[daemon]
managed_identity_listen = "127.0.0.1:{free_port()}"
managed_identity_header_file = "{tmp_path / "header"}"
managed_identity_allowed_uids = [4242]
[defaults]
tenant_id = "11111111-1111-1111-1111-111111111111"
authority_host = "https://127.0.0.1:9"
blueprint_app_id = "22222222-2222-2222-2222-222222222222"
agent_identity_app_id = "33333333-3333-3333-3333-333333333333"
blueprint_credential = {{ secret_file = "{secret}" }}
[profiles.bot]
""")
    config.chmod(0o600)
    run = tmp_path / "run"
    yield {
        **os.environ,
        "AGENTID_HELPER_SOCKET": str(run / "d.sock"),
        "AGENTID_HELPER_CONFIG": str(config),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }


def run_daemon(env: dict[str, str], *, without_netlink: bool) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "agentid_daemon", "--log-format", "json"]
    if without_netlink:
        argv = [sys.executable, str(NO_NETLINK), *argv]
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        status = client(env, "status", "--json")
        if (
            status.returncode == 0
            and json.loads(status.stdout)["daemon"]["managed_identity"]["peers"]["peer_check"]
            != "not probed"
        ):
            return proc
        assert time.monotonic() < deadline, status.stderr
        time.sleep(0.1)


def client(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentid_client", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("without_netlink", [False, True])
def test_status_and_doctor_say_whether_peers_are_checked(
    daemon_home: dict[str, str], without_netlink: bool
) -> None:
    proc = run_daemon(daemon_home, without_netlink=without_netlink)
    try:
        peers = json.loads(client(daemon_home, "status", "--json").stdout)["daemon"][
            "managed_identity"
        ]["peers"]
        text = client(daemon_home, "status").stdout
        doctor = client(daemon_home, "doctor").stdout
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    uids = f"{min(os.getuid(), 4242)}, {max(os.getuid(), 4242)}"
    if without_netlink:
        assert peers["peer_check"] == "unavailable"
        assert peers["peer_check_error"] == (
            "no NETLINK_SOCK_DIAG: Address family not supported by protocol"
        )
        assert "connecting user CANNOT be checked (no NETLINK_SOCK_DIAG" in text
        warning = [line for line in doctor.splitlines() if "managed identity endpoint" in line]
        assert warning and warning[0].startswith("⚠ "), doctor
        assert "CANNOT be checked" in warning[0]
    else:
        assert peers["peer_check"] == "sock_diag" and peers["peer_check_error"] is None
        assert f"connections: from uid {uids} only (checked by sock_diag)" in text
        assert any(
            line.startswith("✔ managed identity endpoint") and "checked by sock_diag" in line
            for line in doctor.splitlines()
        ), doctor


def test_a_reload_applies_a_new_allow_list(daemon_home: dict[str, str]) -> None:
    proc = run_daemon(daemon_home, without_netlink=False)
    config = Path(daemon_home["AGENTID_HELPER_CONFIG"])
    try:
        config.write_text(
            config.read_text().replace(
                "managed_identity_allowed_uids = [4242]", "managed_identity_allowed_uids = [4343]"
            )
        )
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            status = json.loads(client(daemon_home, "status", "--json").stdout)
            allowed = status["daemon"]["managed_identity"]["peers"]["allowed_uids"]
            if 4343 in allowed:
                break
            assert time.monotonic() < deadline, allowed
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert allowed == sorted({os.getuid(), 4343})
