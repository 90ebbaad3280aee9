"""Fixtures for the real-tool integration tests (kubectl, git, Secret Service).

The helper modules (tests/support: helper_stack.py, git_http_server.py, ...) are
imported by bare name (pyproject's pytest ``pythonpath``; there is deliberately
no ``__init__.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helper_stack import DaemonProcess, HelperSandbox
from secret_service import SecretService, missing_tools
from tls_certs import ServerTls, make_server_tls


@pytest.fixture
def sandbox(tmp_path: Path) -> HelperSandbox:
    """A private HOME/XDG/config/socket environment for the client and daemon."""
    return HelperSandbox.create(tmp_path / "helper")


@pytest.fixture
def start_daemon(sandbox: HelperSandbox) -> Iterator[Callable[[], DaemonProcess]]:
    """``start_daemon()`` runs ``agentid-helperd`` in the sandbox; stopped at teardown."""
    started: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        daemon = DaemonProcess(sandbox)
        started.append(daemon)
        return daemon.start()

    try:
        yield start
    finally:
        for daemon in started:
            with contextlib.suppress(Exception):
                daemon.stop()


@pytest.fixture
def server_tls(tmp_path: Path) -> ServerTls:
    """CA + 127.0.0.1 certificate for a fake HTTPS server."""
    return make_server_tls(tmp_path / "server-tls")


@pytest.fixture
def secret_service(sandbox: HelperSandbox, tmp_path: Path) -> Iterator[SecretService]:
    """An unlocked gnome-keyring on a private session bus, wired into ``sandbox.env``."""
    missing = missing_tools()
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run scripts/setup.sh (Debian: dbus-daemon, "
            "gnome-keyring)",
            pytrace=False,
        )
    service = SecretService(sandbox.env, tmp_path / "secret-service")
    with service:
        sandbox.env.update(service.env)
        # Let keyring choose its backend the way it would for a user.
        sandbox.env.pop("PYTHON_KEYRING_BACKEND", None)
        yield service
