"""The hot path (agentid_client/hotpath.py) against the full client, side by side.

For a corpus of argv x daemon answers, the installed launcher (which runs the
hot path) and the full client (``cli.main`` from ``python -I``) must print the
same stdout and stderr, exit the same and send the daemon the same number of
requests with the same bodies: the hot path either answers exactly as the full
client would, or hands over what it did without repeating it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from client_fakes import FakeDaemon, error_body, short_socket_path, token_body

pytestmark = pytest.mark.e2e

LAUNCHER = Path(sys.executable).parent / "agentid-helper"
FULL = "import sys; from agentid_client.cli import main; sys.exit(main(sys.argv[1:]))"

# One body per answer (token_body reads the clock: both runs get the same bytes).
OK, STALE = token_body(), token_body(stale=True, warning="token expires in 2 min")
ESCAPED = token_body(note='a "quoted" word')
ANSWERS: dict[str, Any] = {
    "ok": lambda req: (200, OK),
    "stale": lambda req: (200, STALE),
    "escaped": lambda req: (200, ESCAPED),
    "unknown_profile": lambda req: error_body(404, "unknown_profile", "no profile 'x'"),
    "idp_502": lambda req: error_body(
        502, "identity_provider_error", "AADSTS700016: app not found", hint="check the app id"
    ),
    "no_token": lambda req: (200, {"token_type": "Bearer"}),
}
GIT_IN = "protocol=https\nhost=dev.azure.com\npath=org/repo\n\n"
ARGVS: list[tuple[list[str], str]] = [
    (["get"], ""),
    (["get", "--profile", "app", "--scope", "a/.default  b", "--scope=c"], ""),
    (["get", "--format", "header", "--mode", "AutonomousApp"], ""),
    (["get", "--format", "json"], ""),
    (["get", "--format", "az", "--timeout", "5"], ""),
    (["get", "--profile", "  "], ""),
    (["get", "--mode", " OBO"], ""),
    (["get", "--bogus"], ""),
    (["get", "--timeout", "0"], ""),
    (["kubectl-credential", "--profile", "aks"], ""),
    (["git-credential", "--profile", "repo", "get"], GIT_IN),
    (["git-credential", "get"], GIT_IN),
    (["git-credential", "get"], "protocol=http\nhost=dev.azure.com\n\n"),
    (["git-credential", "store"], GIT_IN),
]


def _run(argv: list[str], stdin: str, env: dict[str, str], hot: bool) -> tuple[Any, ...]:
    cmd = [str(LAUNCHER), *argv] if hot else [sys.executable, "-I", "-c", FULL, *argv]
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[git."dev.azure.com"]\nprofile = "ado"\n')
    return dict(
        os.environ,
        AGENTID_HELPER_CONFIG=str(cfg),
        AGENTID_HELPER_NO_AUTOSTART="1",
        KUBERNETES_EXEC_INFO='{"apiVersion":"client.authentication.k8s.io/v1beta1"}',
    )


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_hot_path_equals_the_full_client(env: dict[str, str], answer: str) -> None:
    path = short_socket_path()
    env = dict(env, AGENTID_HELPER_SOCKET=path)
    try:
        with FakeDaemon(path) as fake:
            fake.routes[("POST", "/v1/token")] = ANSWERS[answer]
            for argv, stdin in ARGVS:
                outcomes, bodies = [], []
                for hot in (True, False):
                    fake.requests.clear()
                    outcomes.append(_run(argv, stdin, env, hot))
                    bodies.append([r["raw"] for r in fake.requests])
                assert outcomes[0] == outcomes[1], (argv, answer)
                assert bodies[0] == bodies[1], (argv, answer)
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_no_daemon_and_untrusted_directories(env: dict[str, str], tmp_path: Path) -> None:
    """No daemon, a directory others may enter, one owned by another uid, a symlink."""
    base = Path(short_socket_path()).parent
    try:
        cases = {}
        (base / "missing").mkdir(mode=0o700)
        cases["no daemon"] = base / "missing" / "d.sock"
        (base / "open").mkdir(mode=0o755)
        os.chmod(base / "open", 0o755)
        cases["mode 0755"] = base / "open" / "d.sock"
        (base / "theirs").mkdir(mode=0o700)
        os.chown(base / "theirs", 65534, 65534)
        cases["another uid"] = base / "theirs" / "d.sock"
        (base / "link").symlink_to(base / "missing")
        cases["symlink"] = base / "link" / "d.sock"
        for name, sock in cases.items():
            run_env = dict(env, AGENTID_HELPER_SOCKET=str(sock))
            hot = _run(["get"], "", run_env, True)
            assert hot == _run(["get"], "", run_env, False), name
            assert hot[0] == 3, (name, hot)
    finally:
        shutil.rmtree(base, ignore_errors=True)
