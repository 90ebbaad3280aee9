"""The systemd user units and `agentid-helper systemd install|uninstall`."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tooling import ROOT, require_tools

from agentid_client import systemd_units as su
from agentid_client.systemd_units import SERVICE_TEMPLATE, SOCKET_TEMPLATE

REPO = ROOT
DAEMON = str(Path(sys.executable).parent / "agentid-helperd")
MAX_EXPOSURE = 4.0
MAX_DEFAULT_EXPOSURE = 2.0


@pytest.fixture
def needs_analyze() -> None:
    require_tools("systemd-analyze")


FAKE_SYSTEMCTL = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_SYSTEMCTL_LOG"
case " $* " in *" $FAKE_SYSTEMCTL_FAIL_ON "*)
  echo "Failed to connect to bus: No medium found" >&2; exit 1;;
esac
exit 0
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME/XDG_CONFIG_HOME and a fake systemctl first on PATH."""
    h = tmp_path / "home"
    (h / "cfg").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / "cfg"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_LOG", str(tmp_path / "systemctl.log"))
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL_ON", "--never--")
    monkeypatch.setenv("USER", "agent-test")
    return h


def systemctl_calls(home: Path) -> list[str]:
    log = home.parent / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def run_install(now: bool, tmp_path: Path, **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kw.setdefault("proc_sys", tmp_path / "no-proc-sys")
    code = su.install(now, daemon_path=DAEMON, out=out, err=err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def run_uninstall() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return su.uninstall(out=out, err=err), out.getvalue(), err.getvalue()


# --- the unit texts ------------------------------------------------------------


UNITS_DIR = REPO / "systemd"


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return out.split()


def test_units_are_read_from_the_top_level_systemd_folder() -> None:
    assert (UNITS_DIR / su.SOCKET_UNIT).read_text() == SOCKET_TEMPLATE
    assert (UNITS_DIR / su.SERVICE_UNIT).read_text() == SERVICE_TEMPLATE


def test_units_ship_once() -> None:
    """No second copy of a unit anywhere in the repository (files or embedded text)."""
    names = [f for f in tracked_files() if f.endswith((su.SOCKET_UNIT, su.SERVICE_UNIT))]
    assert sorted(names) == [
        "systemd/agentid-helper.service",
        "systemd/agentid-helper.socket",
    ]
    marker = "FileDescriptorName=agentid-helper"  # a line only the socket unit has
    sources = [f for f in tracked_files() if f.endswith(".py") and not f.startswith("tests/")]
    assert [f for f in sources if marker in (REPO / f).read_text()] == []


def test_socket_unit_pins_modes_and_name() -> None:
    lines = set(SOCKET_TEMPLATE.splitlines())
    for expected in (
        "ListenStream=%t/agentid-helper/agentid-helper.sock",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "FileDescriptorName=agentid-helper",
        "Accept=no",
        "WantedBy=sockets.target",
    ):
        assert expected in lines


def test_service_unit_essentials() -> None:
    lines = set(SERVICE_TEMPLATE.splitlines())
    for expected in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "WatchdogSec=30s",
        "TimeoutStopSec=15s",
        "Requires=agentid-helper.socket",
        "Also=agentid-helper.socket",
        "UMask=0077",
        "PrivateUsers=yes",
    ):
        assert expected in lines


def test_render_service_substitutes_absolute_daemon_path() -> None:
    text = su.render_service("/opt/agent id/bin/agentid-helperd")
    assert 'ExecStart="/opt/agent id/bin/agentid-helperd"\n' in text
    assert su.DEFAULT_EXEC not in text
    assert su.is_generated_unmodified(text)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/bin/agentid-helperd", "/usr/bin/agentid-helperd"),
        ("/home/a%b/bin/d", "/home/a%%b/bin/d"),
        ("/home/$USER/bin/d", "/home/$$USER/bin/d"),
        ('/we"ird\\path/d', '"/we\\"ird\\\\path/d"'),
    ],
)
def test_quote_exec_path(path: str, expected: str) -> None:
    assert su.quote_exec_path(path) == expected


@pytest.mark.parametrize("bad", ["agentid-helperd", "bin/agentid-helperd", "/a\nb"])
def test_quote_exec_path_rejects(bad: str) -> None:
    with pytest.raises(su.InstallError):
        su.quote_exec_path(bad)


def test_generated_mark_detects_edits() -> None:
    text = su.render_socket()
    assert su.is_generated_unmodified(text)
    assert not su.is_generated_unmodified(text.replace("0600", "0666"))
    assert not su.is_generated_unmodified(SOCKET_TEMPLATE)


def test_userns_detection(tmp_path: Path) -> None:
    assert su.userns_unusable_reason(tmp_path) is None
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel/apparmor_restrict_unprivileged_userns").write_text("0\n")
    (tmp_path / "kernel/unprivileged_userns_clone").write_text("1\n")
    assert su.userns_unusable_reason(tmp_path) is None
    (tmp_path / "kernel/apparmor_restrict_unprivileged_userns").write_text("1\n")
    assert "AppArmor" in (su.userns_unusable_reason(tmp_path) or "")


def test_find_daemon_prefers_this_interpreter_bin_dir() -> None:
    assert su.find_daemon() == DAEMON


# --- install / uninstall with a fake systemctl ---------------------------------------


def test_install_writes_units_and_reloads(home: Path, tmp_path: Path) -> None:
    code, out, err = run_install(False, tmp_path)
    assert code == 0, err
    unit_dir = home / "cfg/systemd/user"
    service = (unit_dir / "agentid-helper.service").read_text()
    assert f"ExecStart={DAEMON}\n" in service
    assert (unit_dir / "agentid-helper.socket").read_text() == su.render_socket()
    assert stat.S_IMODE((unit_dir / "agentid-helper.service").stat().st_mode) == 0o644
    assert systemctl_calls(home) == ["--user daemon-reload"]
    assert "wrote" in out
    assert "enable --now agentid-helper.socket" in out
    assert "loginctl enable-linger agent-test" in out
    assert not list(unit_dir.glob(".*"))  # no temp files left behind


def test_install_now_enables_socket_and_restarts_running_daemon(home: Path, tmp_path: Path) -> None:
    code, _, err = run_install(True, tmp_path)
    assert code == 0, err
    assert systemctl_calls(home) == [
        "--user daemon-reload",
        "--user enable --now agentid-helper.socket",
        "--user try-restart agentid-helper.service",
    ]


def test_reinstall_is_idempotent_and_updates_our_own_files(home: Path, tmp_path: Path) -> None:
    run_install(False, tmp_path)
    code, out, _ = run_install(False, tmp_path)
    assert code == 0
    assert out.count("unchanged") == 2
    out_, err = io.StringIO(), io.StringIO()
    assert (
        su.install(
            False,
            daemon_path="/other/agentid-helperd",
            out=out_,
            err=err,
            proc_sys=tmp_path / "none",
        )
        == 0
    )
    assert "updated" in out_.getvalue()
    assert "backed up" not in out_.getvalue()
    assert not list((home / "cfg/systemd/user").glob("*.bak-*"))


def test_install_backs_up_a_user_modified_unit(home: Path, tmp_path: Path) -> None:
    run_install(False, tmp_path)
    unit = home / "cfg/systemd/user/agentid-helper.service"
    unit.write_text(unit.read_text().replace("RestartSec=1s", "RestartSec=9s"))
    code, out, _ = run_install(False, tmp_path)
    assert code == 0
    backups = list(unit.parent.glob("agentid-helper.service.bak-*"))
    assert len(backups) == 1
    assert "RestartSec=9s" in backups[0].read_text()
    assert "backed up locally modified" in out
    assert str(backups[0]) in out
    assert su.is_generated_unmodified(unit.read_text())


def test_install_adds_and_removes_the_no_userns_dropin(home: Path, tmp_path: Path) -> None:
    proc = tmp_path / "proc-sys"
    (proc / "user").mkdir(parents=True)
    (proc / "user/max_user_namespaces").write_text("0\n")
    code, out, _ = run_install(False, tmp_path, proc_sys=proc)
    dropin = home / "cfg/systemd/user/agentid-helper.service.d" / su.NO_USERNS_DROPIN
    assert code == 0
    assert "PrivateUsers=no" in dropin.read_text()
    assert "PrivateUsers= turned off" in out
    (proc / "user/max_user_namespaces").write_text("1000\n")
    run_install(False, tmp_path, proc_sys=proc)
    assert not dropin.exists()


def test_install_without_user_manager_prints_the_commands(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL_ON", "daemon-reload")
    code, _, err = run_install(True, tmp_path)
    assert code == su.EXIT_MANAGER_UNREACHABLE
    assert "Failed to connect to bus" in err.splitlines()[0]
    assert "  systemctl --user daemon-reload" in err
    assert "  systemctl --user enable --now agentid-helper.socket" in err
    assert (home / "cfg/systemd/user/agentid-helper.service").exists()
    # Without --now the units are installed: a warning, not a failure.
    code, _, err = run_install(False, tmp_path)
    assert code == 0
    assert "systemctl --user daemon-reload" in err


def test_install_without_systemctl(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(su.shutil, "which", lambda name: None)
    code, _, err = run_install(True, tmp_path)
    assert code == su.EXIT_MANAGER_UNREACHABLE
    assert "systemctl not found" in err


def test_install_reports_unwritable_unit_dir(home: Path, tmp_path: Path) -> None:
    (home / "cfg/systemd").write_text("not a directory")
    code, _, err = run_install(False, tmp_path)
    assert code == su.EXIT_CONFIG
    assert err.startswith("agentid-helper: cannot write units")


def test_uninstall_stops_disables_and_removes(home: Path, tmp_path: Path) -> None:
    run_install(True, tmp_path)
    user_dropin = home / "cfg/systemd/user/agentid-helper.service.d/override.conf"
    user_dropin.parent.mkdir()
    user_dropin.write_text("[Service]\nEnvironment=X=1\n")
    (home.parent / "systemctl.log").unlink()
    code, out, err = run_uninstall()
    assert code == 0, err
    assert systemctl_calls(home) == [
        "--user disable --now agentid-helper.socket agentid-helper.service",
        "--user daemon-reload",
    ]
    unit_dir = home / "cfg/systemd/user"
    assert not (unit_dir / "agentid-helper.service").exists()
    assert not (unit_dir / "agentid-helper.socket").exists()
    assert user_dropin.exists()  # the user's own drop-in is theirs to remove
    assert out.count("removed") == 2


def test_uninstall_keeps_user_edits_as_backup(home: Path, tmp_path: Path) -> None:
    run_install(False, tmp_path)
    sock = home / "cfg/systemd/user/agentid-helper.socket"
    sock.write_text(sock.read_text() + "# mine\n")
    code, out, _ = run_uninstall()
    assert code == 0
    assert not sock.exists()
    assert "moved locally modified" in out
    assert len(list(sock.parent.glob("agentid-helper.socket.bak-*"))) == 1


def test_uninstall_when_nothing_installed(home: Path) -> None:
    code, out, _ = run_uninstall()
    assert code == 0
    assert "nothing to remove" in out
    assert systemctl_calls(home) == []


def test_uninstall_without_user_manager_still_removes_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_install(False, tmp_path)
    wants = home / "cfg/systemd/user/sockets.target.wants"
    wants.mkdir()
    (wants / "agentid-helper.socket").symlink_to("../agentid-helper.socket")
    (wants / "other.socket").symlink_to("/elsewhere/other.socket")
    monkeypatch.setenv("FAKE_SYSTEMCTL_FAIL_ON", "disable")
    code, _, err = run_uninstall()
    assert code == 0
    assert err.startswith("agentid-helper: warning: `systemctl --user disable --now")
    assert not (home / "cfg/systemd/user/agentid-helper.service").exists()
    assert not (wants / "agentid-helper.socket").is_symlink()  # no dangling enable link
    assert (wants / "other.socket").is_symlink()
    assert "--user daemon-reload" not in systemctl_calls(home)[-1]


# --- systemd's own tools on the installed units ----------------------------------------


def _analyze_env(home: Path) -> dict[str, str]:
    run = home / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_RUNTIME_DIR": str(run),
        "LANG": "C.UTF-8",
    }


def _installed(home: Path, tmp_path: Path, *, no_userns: bool) -> Path:
    proc = tmp_path / "proc-sys"
    if no_userns:
        (proc / "kernel").mkdir(parents=True)
        (proc / "kernel/apparmor_restrict_unprivileged_userns").write_text("1\n")
    code, _, err = run_install(False, tmp_path, proc_sys=proc)
    assert code == 0, err
    return home / "cfg/systemd/user"


@pytest.mark.integration
@pytest.mark.usefixtures("needs_analyze")
@pytest.mark.parametrize("no_userns", [False, True], ids=["userns", "no-userns-dropin"])
def test_systemd_analyze_verify_is_clean(home: Path, tmp_path: Path, no_userns: bool) -> None:
    unit_dir = _installed(home, tmp_path, no_userns=no_userns)
    proc = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--user",
            "--man=no",
            "--generators=no",
            str(unit_dir / "agentid-helper.socket"),
            str(unit_dir / "agentid-helper.service"),
        ],
        env=_analyze_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # verify exits 0 on warnings: any output is a finding


@pytest.mark.integration
@pytest.mark.usefixtures("needs_analyze")
@pytest.mark.parametrize("no_userns", [False, True], ids=["userns", "no-userns-dropin"])
def test_systemd_analyze_security_exposure(home: Path, tmp_path: Path, no_userns: bool) -> None:
    unit_dir = _installed(home, tmp_path, no_userns=no_userns)
    proc = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--user",
            "--offline=true",
            "--no-pager",
            str(unit_dir / "agentid-helper.service"),
        ],
        env=_analyze_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for agentid-helper\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    score = float(m.group(1))
    print(
        f"\nsystemd-analyze security exposure ({'no-userns' if no_userns else 'default'}): {score}"
    )
    assert score <= MAX_EXPOSURE
    if not no_userns:  # the sandbox the issue asked to keep: at or below 2.0
        assert score <= MAX_DEFAULT_EXPOSURE


def _unit_seconds(key: str) -> float:
    (line,) = [x for x in su.SERVICE_TEMPLATE.splitlines() if x.startswith(key + "=")]
    value = line.split("=", 1)[1]
    assert value.endswith("s"), line
    return float(value[:-1])


def test_shutdown_grace_fits_in_timeout_stop_sec() -> None:
    """On SIGTERM the daemon drains for its grace, then exits before systemd's SIGKILL."""
    from agentid_daemon.server.protocol import Limits

    margin = 3.0  # closing the socket, the cache and the log after the drain
    assert Limits().shutdown_grace_s <= _unit_seconds("TimeoutStopSec") - margin


def test_a_service_that_cannot_start_gives_up_within_seconds() -> None:
    """Was: RestartSec=2s never tripped the default start limit: clients hung 120 s."""
    lines = su.SERVICE_TEMPLATE.splitlines()
    (burst_line,) = [line for line in lines if line.startswith("StartLimitBurst=")]
    burst = int(burst_line.split("=")[1])
    interval = _unit_seconds("StartLimitIntervalSec")
    restart = _unit_seconds("RestartSec")
    # The limit trips while the failures still fall inside the interval.
    assert burst * restart < interval
    assert burst * restart <= 10
    assert "\nPrivateIPC=yes" not in su.SERVICE_TEMPLATE  # breaks reload under PrivateUsers=


def test_reinstalling_unchanged_units_does_not_restart_the_daemon(
    home: Path, tmp_path: Path
) -> None:
    run_install(True, tmp_path)
    assert "--user try-restart agentid-helper.service" in systemctl_calls(home)
    (home.parent / "systemctl.log").unlink()
    code, out, _ = run_install(True, tmp_path)
    assert code == 0
    assert out.count("unchanged /") == 2
    assert systemctl_calls(home) == [
        "--user daemon-reload",
        "--user enable --now agentid-helper.socket",
    ]
