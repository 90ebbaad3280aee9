"""``agentid-helper kubeconfig-user``: a kubeconfig ``users:`` entry for this helper,
printed, or written into a kubeconfig with ``--merge [FILE]``.

YAML is written by hand (no PyYAML): every string scalar is emitted as a JSON
string, which is a valid YAML double-quoted scalar, so any profile name or
path is quoted safely.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys

from . import jsonlite
from .contract import is_profile_name
from .failures import EXIT_CONFIG, EXIT_USAGE, ClientError
from .redact import may_be_credential, quoted

EXEC_API_VERSION = "client.authentication.k8s.io/v1"
SCRIPT_NAME = "agentid-helper"


def helper_command() -> str:
    """Absolute path of this installation's ``agentid-helper`` script."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == SCRIPT_NAME and os.path.isfile(argv0):
        return os.path.abspath(argv0)
    beside = os.path.join(os.path.dirname(sys.executable), SCRIPT_NAME)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which(SCRIPT_NAME)
    if found:
        return os.path.abspath(found)
    raise ClientError(
        "cannot find the agentid-helper executable of this installation",
        EXIT_CONFIG,
        ["run kubeconfig-user through the installed `agentid-helper` script"],
    )


def _q(value: str) -> str:
    return jsonlite.dumps(value)


def users_entry(name: str, profile: str, command: str) -> str:
    """A ``users:`` list with one exec-plugin entry."""
    return (
        "\n".join(
            [
                "users:",
                f"- name: {_q(name)}",
                "  user:",
                "    exec:",
                f"      apiVersion: {_q(EXEC_API_VERSION)}",
                f"      command: {_q(command)}",
                "      args:",
                f"      - {_q('kubectl-credential')}",
                f"      - {_q('--profile')}",
                f"      - {_q(profile)}",
                "      interactiveMode: Never",
                "      provideClusterInfo: false",
            ]
        )
        + "\n"
    )


# ---- --merge: write the entry into a kubeconfig -----------------------------
#
# The client has no YAML library (stdlib only), and a kubeconfig is whatever
# YAML kubectl and people wrote. So the merge is done by kubectl itself
# (`kubectl config delete-user NAME` + `kubectl config set-credentials NAME
# --exec-...`), which reads and writes its own format; this module adds what
# kubectl does not: it works on a copy and renames it over the file
# (atomic), keeps the file's mode, keeps the previous version as FILE.bak,
# and holds kubectl's own lock (FILE.lock) meanwhile, as kubelogin's
# `convert-kubeconfig` leaves the rest of the file as kubectl would.

KUBECTL_TIMEOUT_S = 30


def default_kubeconfig(environ: dict[str, str] | None = None) -> str:
    """kubectl's own file: the first entry of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    for entry in env.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return os.path.expanduser(entry)
    return os.path.join(os.path.expanduser("~"), ".kube", "config")


def check_profile(profile: str, config_file: str | None = None) -> None:
    """Refuse (exit 2) a ``--profile`` that cannot name a profile of the config
    before it is written into a kubeconfig: a blank name (the config's rule),
    a value that looks like a token or secret (never written, never echoed),
    or, when config.toml can be read, a name it does not define."""
    from .completion import configured_profiles

    known = configured_profiles(config_file)
    if known is not None and profile in known:
        return
    if not is_profile_name(profile) or may_be_credential(profile):
        raise ClientError(f"kubeconfig-user: {quoted(profile)} is not a profile name", EXIT_USAGE)
    if known is not None:
        listed = ", ".join(known) if known else "none"
        raise ClientError(
            f"kubeconfig-user: no profile {quoted(profile)} in the config (profiles: {listed})",
            EXIT_USAGE,
        )


def _kubectl(kubectl: str, kubeconfig: str, *args: str, shown_as: str | None = None) -> str:
    """``kubectl config ARGS`` on ``kubeconfig``; its errors name ``shown_as``
    (the user's file) instead of the private copy it worked on."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    try:
        done = subprocess.run(
            [kubectl, "--kubeconfig", kubeconfig, "config", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClientError(
            f"kubectl config {args[0]} did not finish within {KUBECTL_TIMEOUT_S} s", EXIT_CONFIG
        ) from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        if shown_as is not None:
            why = why.replace(kubeconfig, shown_as)
        raise ClientError(f"kubectl config {args[0]} failed: {why}", EXIT_CONFIG)
    return done.stdout


def merge_user(path: str, name: str, profile: str, command: str) -> str | None:
    """Write the user entry ``name`` into the kubeconfig at ``path`` (created
    0600 when absent). Returns the backup's path (None for a new file).

    ``profile`` must name a profile (:func:`check_profile`). Only kubectl's own
    default file may have its directory created (``~/.kube``, as kubectl does);
    elsewhere a missing directory is more likely a typo than a wish."""
    check_profile(profile)
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    if not os.path.lexists(directory) and target != os.path.realpath(default_kubeconfig()):
        raise ClientError(
            f"kubeconfig-user --merge: the directory of {path} does not exist ({directory})",
            EXIT_CONFIG,
        )
    try:
        return _merge_user(path, name, profile, command)
    except OSError as exc:
        where = exc.filename or path
        raise ClientError(
            f"kubeconfig-user --merge: cannot write {where}: {exc.strerror}", EXIT_CONFIG
        ) from None


def _merge_user(path: str, name: str, profile: str, command: str) -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ClientError(
            "kubeconfig-user --merge needs kubectl on PATH (it edits the kubeconfig "
            "the way kubectl does)",
            EXIT_CONFIG,
            ["without --merge, kubeconfig-user prints the entry for you to add"],
        )
    target = os.path.realpath(path)  # a symlinked kubeconfig: write the file it names
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        current = os.stat(target)
    except FileNotFoundError:
        current = None
    lock = target + ".lock"  # kubectl's own: concurrent kubectl edits wait for us
    try:
        lock_fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ClientError(
            f"{target} is being written by another kubectl ({lock} exists)",
            EXIT_CONFIG,
            [f"if no kubectl is running, remove {lock}"],
        ) from None
    os.close(lock_fd)
    tmp = os.path.join(directory, f".{os.path.basename(target)}.agentid-helper.{os.getpid()}")
    try:
        mode = (current.st_mode & 0o7777) if current else 0o600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if current is not None:
                with open(target, "rb") as src:
                    shutil.copyfileobj(src, out)
        os.chmod(tmp, mode)
        users = _kubectl(kubectl, tmp, "get-users", shown_as=path) if current else ""
        if name in users.split("\n")[1:]:
            # A previous entry of this name goes first: it may hold a token or
            # another auth that set-credentials would leave beside the exec.
            _kubectl(kubectl, tmp, "delete-user", name, shown_as=path)
        _kubectl(
            kubectl,
            tmp,
            "set-credentials",
            name,
            f"--exec-command={command}",
            f"--exec-api-version={EXEC_API_VERSION}",
            "--exec-arg=kubectl-credential",
            "--exec-arg=--profile",
            f"--exec-arg={profile}",
            "--exec-interactive-mode=Never",
            shown_as=path,
        )
        os.chmod(tmp, mode)  # whatever kubectl did to it
        backup = None
        if current is not None:
            backup = target + ".bak"
            shutil.copy2(target, backup)  # mode and times as they were
        os.replace(tmp, target)
        return backup
    finally:
        for leftover in (tmp, lock):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
