"""A real ``systemd --user`` for the throwaway test user, on a machine whose PID 1 is not systemd.

Where a real user manager already runs for the user (``/run/user/UID/systemd/private``
answers), it is used as is. Otherwise :func:`user_manager` boots
``/lib/systemd/systemd --user`` for ``agentid-systemd`` (tests/support/machine_users.py)
with the shims a manager needs when PID 1 is not systemd, all undone afterwards:

- ``/run/systemd/system`` present (sd_booted(): "systemd runs this machine");
- a delegated cgroup ``user.slice/user-UID.slice/user@UID.service`` in the
  ``unified`` (cgroup2) and ``name=systemd`` hierarchies, owned by the user,
  with the launcher moved into it before it drops privileges;
- ``/run/systemd/unit-root`` and ``/dev/mqueue`` present (mount points the
  manager's namespace setup expects);
- ``/run`` bind-mounted onto itself: when ``/run`` is not a mount point,
  ``ProtectKernelTunables=`` and friends rebuild it under a fresh tmpfs and the
  service loses ``NOTIFY_SOCKET``;
- ``/run/user/UID`` (the user's ``XDG_RUNTIME_DIR``).

Colleagues run tests on the same machine: the whole fixture holds an
exclusive ``flock`` on :data:`LOCK_PATH`, and every shim it makes is recorded in
:data:`STATE_PATH` before it is made, so the next run undoes what a killed run
left behind (its processes are found through the delegated cgroup, and
killed by pid).

The project is installed for the user with ``pip install .`` (not editable)
into a venv in the user's home, cached by a hash of the source tree.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tooling import ROOT

LOCK_PATH = Path("/run/lock/agentid-helper-tests-systemd.lock")
STATE_PATH = Path("/run/lock/agentid-helper-tests-systemd.state")
SYSTEMD = "/lib/systemd/systemd"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"))
USER_PYTHON = "/usr/bin/python3"  # the user cannot reach root's pyenv interpreter
LOCK_TIMEOUT_S = 900.0
BOOT_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0
REPO = ROOT


def _wheel_source_parts(repo: Path) -> tuple[str, ...]:
    """What `pip install .` packs, read from pyproject's wheel target (one source)."""
    wheel = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    wheel = wheel["targets"]["wheel"]
    parts = {"pyproject.toml", "README.md", "LICENSE"}
    parts |= {Path(p).parts[0] for p in wheel["packages"]}
    for table in ("force-include", "shared-scripts", "shared-data"):
        parts |= {Path(p).parts[0] for p in wheel.get(table, {})}
    return tuple(sorted(parts))


#: The cache key hashes these.
SOURCE_PARTS = _wheel_source_parts(REPO)


class ManagerError(RuntimeError):
    """The user manager could not be booted; the message says which step failed."""


@dataclass
class UserManager:
    user: pwd.struct_passwd
    runtime_dir: Path
    venv: Path
    log_path: Path
    booted: bool  # False: a real user manager was already there
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return Path(self.user.pw_dir)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "HOME": self.user.pw_dir,
            "USER": self.user.pw_name,
            "LOGNAME": self.user.pw_name,
            "SHELL": "/bin/sh",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 120.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the user, with the user manager's environment."""
        proc = subprocess.run(
            [*as_user(self.user), *argv],
            env=self.env(env),
            cwd=self.user.pw_dir,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        env = self.env(kw.pop("env", None))
        return subprocess.Popen(
            [*as_user(self.user), *argv], env=env, cwd=self.user.pw_dir, text=True, **kw
        )

    def systemctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--user", "--no-pager", *args], timeout=timeout)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit).stdout.strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def as_user(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]


# --- the machine-wide lock and the record of shims ---------------------------------


@contextlib.contextmanager
def machine_lock(path: Path = LOCK_PATH, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """One user-manager fixture on this machine at a time (colleagues' runs included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ManagerError(f"{path} stayed locked for {timeout:g} s") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # releases the lock


def _load_state() -> dict[str, Any]:
    try:
        return dict(json.loads(STATE_PATH.read_text()))
    except (OSError, ValueError):
        return {}


def _save_state(state: Mapping[str, Any]) -> None:
    tmp = STATE_PATH.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE_PATH)


def _record(state: dict[str, Any], key: str, value: Any) -> None:
    """Record a shim *before* making it: a run killed half-way is still undone."""
    state[key] = value
    _save_state(state)


# --- shims ---------------------------------------------------------------------------


def _user_cgroups(uid: int) -> list[Path]:
    rel = Path(f"user.slice/user-{uid}.slice/user@{uid}.service")
    return [root / rel for root in CGROUP_ROOTS]


def _cgroup_pids(top: Path) -> list[int]:
    pids: list[int] = []
    if not top.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                text = (Path(dirpath) / "cgroup.procs").read_text()
                pids += [int(p) for p in text.split()]
    return pids


def _kill_cgroup(top: Path) -> None:
    """Kill, by pid, every process left in our delegated cgroup; wait until it is empty."""
    for _ in range(50):
        pids = _cgroup_pids(top)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _rmdir_tree(top: Path) -> None:
    """Remove a cgroup directory tree bottom-up (cgroups are removed with rmdir)."""
    if not top.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def _is_mountpoint(path: str) -> bool:
    return subprocess.run(["mountpoint", "-q", path], check=False).returncode == 0


def undo_shims(state: dict[str, Any]) -> list[str]:
    """Undo what ``state`` records, in reverse order; return what could not be undone."""
    problems: list[str] = []
    uid = state.get("uid")
    if uid is not None:
        for cg in _user_cgroups(int(uid)):
            _kill_cgroup(cg)
    pid = state.get("manager_pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    if uid is not None:
        for cg in _user_cgroups(int(uid)):
            _rmdir_tree(cg)
            if cg.exists():
                problems.append(f"cgroup {cg} still exists")
        # Parents we created (user-UID.slice, user.slice), only if empty.
        for created in sorted(state.get("cgroup_dirs", []), key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(created)
    if state.get("run_bind") and _is_mountpoint("/run"):
        proc = subprocess.run(["umount", "/run"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            lazy = subprocess.run(["umount", "-l", "/run"], check=False)
            if lazy.returncode != 0:
                problems.append(f"umount /run: {proc.stderr.strip()}")
    for path in reversed(state.get("dirs", [])):
        p = Path(path)
        if p == Path(state.get("runtime_dir", "")):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.rmdir()
        if p.exists():
            problems.append(f"{p} still exists")
    return problems


def clean_leftovers() -> None:
    """Undo a previous run that was killed before its teardown."""
    state = _load_state()
    if state:
        undo_shims(state)
    with contextlib.suppress(FileNotFoundError):
        STATE_PATH.unlink()


def _mkdir_recorded(state: dict[str, Any], path: Path, mode: int = 0o755) -> None:
    if path.exists():
        return
    dirs = state.setdefault("dirs", [])
    dirs.append(str(path))
    _save_state(state)
    path.mkdir(mode=mode)


def make_shims(state: dict[str, Any], user: pwd.struct_passwd) -> Path:
    uid, gid = user.pw_uid, user.pw_gid
    _record(state, "uid", uid)
    _mkdir_recorded(state, Path("/run/systemd"))
    _mkdir_recorded(state, Path("/run/systemd/system"))
    _mkdir_recorded(state, Path("/run/systemd/unit-root"))
    _mkdir_recorded(state, Path("/dev/mqueue"), 0o1777)
    runtime = Path(f"/run/user/{uid}")
    _mkdir_recorded(state, Path("/run/user"))
    _record(state, "runtime_dir", str(runtime))
    _mkdir_recorded(state, runtime, 0o700)
    os.chown(runtime, uid, gid)
    os.chmod(runtime, 0o700)
    created: list[str] = state.setdefault("cgroup_dirs", [])
    for cg in _user_cgroups(uid):
        if not cg.parent.parent.parent.is_dir():
            raise ManagerError(f"cgroup hierarchy {cg.parent.parent.parent} is not mounted")
        for parent in (cg.parent.parent, cg.parent):
            if not parent.exists():
                created.append(str(parent))
                _save_state(state)
                parent.mkdir()
        cg.mkdir(exist_ok=True)
        # Delegation: the user owns its cgroup directory and the files that move processes.
        for path in [cg, *cg.iterdir()]:
            if path.name in ("", cg.name) or path.name.startswith("cgroup."):
                with contextlib.suppress(OSError):
                    os.chown(path, uid, gid)
    if not _is_mountpoint("/run"):
        _record(state, "run_bind", True)
        subprocess.run(["mount", "--bind", "/run", "/run"], check=True)
    return runtime


# --- installing the project for the user ----------------------------------------------


def source_files(repo: Path = REPO) -> list[Path]:
    files: list[Path] = []
    for part in SOURCE_PARTS:
        p = repo / part
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
            )
    return files


def source_hash(repo: Path = REPO) -> str:
    h = hashlib.sha256()
    for f in source_files(repo):
        h.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def install_project(user: pwd.struct_passwd, repo: Path = REPO) -> Path:
    """``pip install .`` (not editable) as the user into a venv cached by the source hash."""
    cache = Path(user.pw_dir) / ".cache" / "agentid-helper-tests"
    key = source_hash(repo)
    venv = cache / f"venv-{key}"
    if (venv / ".complete").exists():
        return venv
    cache.mkdir(parents=True, exist_ok=True)
    os.chown(cache.parent, user.pw_uid, user.pw_gid)
    os.chown(cache, user.pw_uid, user.pw_gid)
    for old in cache.iterdir():  # other trees' venvs and sources: one at a time is enough
        shutil.rmtree(old, ignore_errors=True)
    src = cache / f"src-{key}"
    for f in source_files(repo):
        dest = src / f.relative_to(repo)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(cache)], check=True)
    env = {
        "HOME": user.pw_dir,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }
    for argv in (
        [USER_PYTHON, "-m", "venv", str(venv)],
        [str(venv / "bin/pip"), "install", "--quiet", str(src)],
    ):
        proc = subprocess.run(
            [*as_user(user), *argv],
            env=env,
            cwd=user.pw_dir,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise ManagerError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    (venv / ".complete").touch()
    return venv


# --- booting -------------------------------------------------------------------------


def _private_socket(runtime: Path) -> Path:
    return runtime / "systemd" / "private"


def _existing_manager(user: pwd.struct_passwd) -> Path | None:
    runtime = Path(f"/run/user/{user.pw_uid}")
    if not _private_socket(runtime).exists():
        return None
    probe = subprocess.run(
        [*as_user(user), "systemctl", "--user", "is-system-running"],
        env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return runtime if probe.stdout.strip() in ("running", "degraded") else None


def _boot(state: dict[str, Any], user: pwd.struct_passwd, runtime: Path, log: Path) -> Any:
    cgroups = _user_cgroups(user.pw_uid)

    def enter_cgroup_and_drop() -> None:  # runs in the child, before exec
        for cg in cgroups:
            (cg / "cgroup.procs").write_text("0\n")
        os.initgroups(user.pw_name, user.pw_gid)
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    env = {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": "/bin/sh",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "XDG_RUNTIME_DIR": str(runtime),
        "LANG": "C.UTF-8",
        "SYSTEMD_LOG_TARGET": "console",  # no journald here: the manager logs to our file
        "SYSTEMD_LOG_LEVEL": "info",
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [SYSTEMD, "--user"],
            env=env,
            cwd=user.pw_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=enter_cgroup_and_drop,
        )
    _record(state, "manager_pid", proc.pid)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise ManagerError(
                f"systemd --user exited with {proc.returncode}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        if _existing_manager(user) is not None:
            return proc
        if time.monotonic() > deadline:
            raise ManagerError(
                "systemd --user did not come up:\n" + log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.2)


def _stop_manager(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the manager stops its units, then exits
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def user_manager(user: pwd.struct_passwd, log_path: Path) -> Iterator[UserManager]:
    """A running user manager for ``user`` (booted with shims when none exists)."""
    with machine_lock():
        venv = install_project(user)
        # First: a manager that a killed run of ours left behind is not a real one.
        clean_leftovers()
        existing = _existing_manager(user)
        if existing is not None:
            yield UserManager(user, existing, venv, log_path, booted=False)
            return
        state: dict[str, Any] = {}
        _save_state(state)
        proc = None
        try:
            runtime = make_shims(state, user)
            proc = _boot(state, user, runtime, log_path)
            yield UserManager(user, runtime, venv, log_path, booted=True, process=proc)
        finally:
            if proc is not None:
                _stop_manager(proc)
            problems = undo_shims(state)
            with contextlib.suppress(FileNotFoundError):
                STATE_PATH.unlink()
            if problems:
                raise ManagerError("teardown left: " + "; ".join(problems))
