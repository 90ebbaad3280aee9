"""Hot-path commands import no third-party module (and not json/typing/argparse).

Each command runs in a fresh interpreter against the fake daemon; the
interpreter then reports which forbidden modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_fakes import TOKEN, FakeDaemon

FORBIDDEN = (
    "trio",
    "msal",
    "structlog",
    "keyring",
    "platformdirs",
    "h11",
    "requests",
    "agentid_daemon",
    "argparse",
    "json",
    "typing",
    "http",
    "subprocess",
    "tomllib",
)

PROBE = """
import os, sys
fd = int(sys.argv[1])
forbidden = sys.argv[2].split(",")
argv = sys.argv[3:]
def report(*_args):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
    os.write(fd, (",".join(loaded) + "\\n").encode())
if argv[0] == "exec":
    def fake_exec(*args):
        report()
        os._exit(0)
    os.execvpe = fake_exec
from agentid_client.cli import main
code = main(argv)
report()
sys.exit(code)
"""


@pytest.mark.parametrize(
    "argv,stdin,allowed",
    [
        (["get"], "", ()),
        (["get", "--format", "header", "--scope", "x/.default"], "", ()),
        (["kubectl-credential", "--profile", "aks"], "", ()),
        (["exec", "--", "true"], "", ()),
        (["git-credential", "--profile", "p", "get"], "protocol=https\nhost=h\n\n", ()),
        (
            ["git-credential", "get"],
            "protocol=https\nhost=dev.azure.com\n\n",
            ("tomllib", "typing"),
        ),  # tomllib needs typing
    ],
)
def test_hot_path_imports(
    fake_daemon: FakeDaemon, tmp_path: Path, argv: list[str], stdin: str, allowed: tuple[str, ...]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[git."dev.azure.com"]\nprofile = "ado"\n')
    env = dict(
        os.environ,
        AGENTID_HELPER_CONFIG=str(cfg),
        KUBERNETES_EXEC_INFO='{"apiVersion":"client.authentication.k8s.io/v1beta1"}',
    )
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", PROBE, str(write_fd), ",".join(FORBIDDEN), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            pass_fds=(write_fd,),
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        report = fh.read().strip()
    assert proc.returncode == 0, proc.stderr
    if argv[0] != "exec":
        assert TOKEN in proc.stdout
    loaded = [m for m in report.split(",") if m and m.split(".")[0] not in allowed]
    assert loaded == [], f"hot path {argv[0]} imported {loaded}"
