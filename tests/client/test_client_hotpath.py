"""Hot-path commands import no third-party module (and not json/typing/argparse).

Each command runs in a fresh interpreter against the fake daemon; the
interpreter then reports which forbidden modules ended up in ``sys.modules``.
The installed launcher (client/launcher/agentid-helper) is checked from the
outside, under strace: it must start ``python -I -S`` (no site processing)
and open no forbidden module.
"""

from __future__ import annotations

import os
import re
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


def _trace(tmp_path: Path, argv: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    """Run ``argv`` under strace -f: its stdout and the trace's lines."""
    trace = tmp_path / "launcher.trace"
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=execve,openat", "-o", str(trace), *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, trace.read_text().splitlines()


def launcher_trace_problems(lines: list[str]) -> list[str]:
    """What in a launcher's trace shows site processing or a forbidden import."""
    execs = [ln for ln in lines if "execve(" in ln and ln.endswith("= 0")]
    problems = []
    if len(execs) != 2 or '"-I", "-S"' not in execs[1]:
        problems.append(f"expected sh, then python -I -S: {execs}")
    opened = [
        m.group(1)
        for ln in lines
        if (m := re.search(r'openat\([^"]*"([^"]+)"', ln)) and not re.search(r"= -1 \w+", ln)
    ]
    for path in opened:
        name = Path(path).name
        if name.endswith(".pth") and "agentid_helper" not in name:
            problems.append(f"site processing: {path}")
        module = name.split(".")[0] in ("site", "sitecustomize", "_distutils_hack", *FORBIDDEN)
        if module and (name.endswith((".py", ".pyc", ".so")) or Path(path).is_dir()):
            problems.append(f"imported: {path}")
    return problems


def test_the_installed_launcher_runs_get_without_site(
    fake_daemon: FakeDaemon, tmp_path: Path
) -> None:
    """`agentid-helper get` as installed: sh execs `python -I -S` (no .pth files, no
    sitecustomize) and only the standard library and this project are imported."""
    launcher = Path(sys.executable).parent / "agentid-helper"
    out, lines = _trace(tmp_path, [str(launcher), "get"], dict(os.environ))
    assert TOKEN in out
    assert launcher_trace_problems(lines) == []


def test_a_cold_command_gets_the_usual_interpreter(tmp_path: Path) -> None:
    """Anything but a hot command runs as a console script would: site processed."""
    launcher = Path(sys.executable).parent / "agentid-helper"
    out, lines = _trace(tmp_path, [str(launcher), "--version"], dict(os.environ))
    assert out.startswith("agentid-helper ")
    execs = [ln for ln in lines if "execve(" in ln and ln.endswith("= 0")]
    assert len(execs) == 3 and '"-I", "-S"' not in execs[2], execs


#: What each hot command may import beyond `python -I -S -c pass`'s own modules,
#: when agentid_client.hotpath answers it (the launcher's Python part).
HOT_ALLOWED = {
    "get": {"agentid_client", "agentid_client.hotpath", "_socket"},
    "kubectl-credential": {
        "agentid_client",
        "agentid_client.hotpath",
        "_socket",
        "__future__",
        "_json",
        "agentid_client.failures",
        "agentid_client.formats",
        "agentid_client.jsonlite",
        "agentid_client.redact",
    },
    "git-credential": {
        "agentid_client",
        "agentid_client.hotpath",
        "_socket",
        "__future__",
        "agentid_client.contract",
        "agentid_client.failures",
        "agentid_client.gitcred",
    },
}


@pytest.mark.parametrize(
    "argv,stdin",
    [
        (["get", "--profile", "app", "--format", "header"], ""),
        (["kubectl-credential", "--profile", "aks"], ""),
        (["git-credential", "--profile", "p", "get"], "protocol=https\nhost=h\n\n"),
    ],
)
def test_the_hot_path_loads_only_the_floor_and_its_allow_list(
    fake_daemon: FakeDaemon, argv: list[str], stdin: str
) -> None:
    """`-X importtime` lists every import the launcher's Python part makes after
    the interpreter's start: the floor's own modules are loaded by then."""
    launcher = Path(sys.executable).parent / "agentid-helper"
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", str(launcher), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert TOKEN in done.stdout
    floor = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    def imported(stderr: str) -> set[str]:
        return {
            line.rsplit("|", 1)[1].strip()
            for line in stderr.splitlines()
            if line.startswith("import time:") and "cumulative" not in line
        }

    added = imported(done.stderr) - imported(floor.stderr)
    assert added <= HOT_ALLOWED[argv[0]], sorted(added - HOT_ALLOWED[argv[0]])
