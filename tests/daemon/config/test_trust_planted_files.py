"""Files Alice's daemon trusts, planted or loosened for Mallory: refused, with the fix.

Tests run as root and drop to the test users (tests/support/machine_users.py) with
setpriv. Mallory plants the sidecar's header file (a file of hers, or a
symlink), a secret file or a config file; or Alice left hers writable (0622)
and Mallory rewrites ``authority_host`` and ``ca_bundle`` to a fake Entra of
her own. Each case checks that Alice's daemon refuses with exit 5 and one
line naming the path and the command that fixes it (at start), or keeps its
previous configuration and says why (on SIGHUP), that ``doctor`` shows ✘,
and that the fake authority never receives a connection.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from emulator_config import toml_dumps
from emulator_harness import Emulator
from log_audit import scan_tree
from machine_users import ALICE, MALLORY, require_user
from two_uids import as_user

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to test users"),
    pytest.mark.usefixtures("test_users_turn"),  # tests/support/two_uids.py
]

START_TIMEOUT_S = 30  # generous for a loaded machine; a hang is what is being ruled out


class FakeAuthority:
    """Mallory's "Entra": a loopback listener that counts the connections it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Box:
    """A root-owned 0755 directory: Alice's home (0711), Mallory's, and a sticky ``shared``."""

    root: Path
    python: Path

    @property
    def alice_home(self) -> Path:
        return self.root / "home-alice"

    @property
    def config_dir(self) -> Path:
        return self.alice_home / ".config"

    @property
    def run(self) -> Path:
        return self.alice_home / "run"

    @property
    def sock(self) -> Path:
        return self.run / "agentid-helper.sock"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    def env(self, config: Path, **extra: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.alice_home),
            "LANG": "C.UTF-8",
            "AGENTID_HELPER_CONFIG": str(config),
            "AGENTID_HELPER_SOCKET": str(self.sock),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
        }
        env.update(extra)
        return env

    def alice_file(self, path: Path, content: str | bytes, mode: int = 0o600) -> Path:
        return plant(path, content, ALICE, mode)

    def daemon_argv(self) -> list[str]:
        return [*as_user(ALICE), str(self.python), "-m", "agentid_daemon", "--log-format", "json"]

    def start_daemon_expecting_failure(
        self, config: Path, env: dict[str, str] | None = None
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        """The daemon run to its end (bounded): its result and how long it took."""
        started = time.monotonic()
        result = subprocess.run(
            self.daemon_argv(),
            capture_output=True,
            text=True,
            env=env or self.env(config),
            timeout=START_TIMEOUT_S,
            cwd="/",
            stdin=subprocess.DEVNULL,
        )
        return result, time.monotonic() - started

    def client(self, config: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user(ALICE), str(self.python), "-m", "agentid_client", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(config),
            timeout=120,
            cwd="/",
        )


def plant(path: Path, content: str | bytes, user: str, mode: int) -> Path:
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    entry = require_user(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def own_dir(path: Path, user: str, mode: int) -> Path:
    path.mkdir(exist_ok=True)
    entry = require_user(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


@pytest.fixture
def box(user_python: Path) -> Iterator[Box]:
    require_user(ALICE)
    require_user(MALLORY)
    root = Path(tempfile.mkdtemp(prefix="aidc-files-"))
    root.chmod(0o755)
    b = Box(root, user_python)
    own_dir(b.alice_home, ALICE, 0o711)  # others may traverse (to a 0622 file), not list
    own_dir(b.config_dir, ALICE, 0o755)
    own_dir(b.run, ALICE, 0o700)
    own_dir(root / "home-mallory", MALLORY, 0o700)
    b.shared.mkdir()
    b.shared.chmod(0o1777)  # like /tmp
    try:
        yield b
    finally:
        scan_tree(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fake_authority() -> Iterator[FakeAuthority]:
    fake = FakeAuthority()
    try:
        yield fake
    finally:
        fake.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sidecar_config(box: Box, header_file: Path | str) -> Path:
    body = {
        "daemon": {
            "managed_identity_listen": f"127.0.0.1:{free_port()}",
            "managed_identity_header_file": str(header_file),
        }
    }
    return box.alice_file(box.config_dir / "config.toml", toml_dumps(body))


HEADER = "h" * 43  # the shape of secrets.token_urlsafe(32)


def assert_refused_at_start(
    result: subprocess.CompletedProcess[str], elapsed: float, *expected: str
) -> str:
    """Exit 5, one line on stderr holding every ``expected`` part, well within the bound."""
    assert result.returncode == 5, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert HEADER not in result.stderr + result.stdout
    assert elapsed < START_TIMEOUT_S / 2, elapsed
    return lines[0]


# --- row 3: the sidecar's header file planted by Mallory, or left 0644 ------------------


def test_header_file_planted_by_mallory_is_refused(box: Box) -> None:
    planted = plant(box.shared / "header", HEADER, MALLORY, 0o644)
    result, elapsed = box.start_daemon_expecting_failure(sidecar_config(box, planted))
    mallory = require_user(MALLORY)
    assert_refused_at_start(
        result,
        elapsed,
        f"managed_identity_header_file {planted} is owned by uid {mallory.pw_uid} ({MALLORY})",
        f"sudo chown {ALICE} {planted}",
    )


def test_header_symlink_planted_by_mallory_is_refused(box: Box) -> None:
    """Mallory's link to Alice's own (good) header file: the link itself is not trusted."""
    good = box.alice_file(box.run / "header", HEADER)
    link = box.shared / "header"
    subprocess.run([*as_user(MALLORY), "ln", "-s", str(good), str(link)], check=True)
    result, elapsed = box.start_daemon_expecting_failure(sidecar_config(box, link))
    assert_refused_at_start(result, elapsed, f"{link} is owned by", f"({MALLORY})")


def test_alices_own_header_file_left_0644_is_refused(box: Box) -> None:
    header = box.alice_file(box.config_dir / "header", HEADER, 0o644)
    result, elapsed = box.start_daemon_expecting_failure(sidecar_config(box, header))
    assert_refused_at_start(
        result,
        elapsed,
        f"{header} is readable by group or others (mode 0644)",
        f"fix: chmod 600 {header}",
    )


def test_header_file_in_mallorys_sticky_dir_is_never_created_there(box: Box) -> None:
    """A missing header is created only in a private directory of Alice's."""
    missing = box.shared / "new-header"
    result, elapsed = box.start_daemon_expecting_failure(sidecar_config(box, missing))
    assert_refused_at_start(result, elapsed, f"{missing}: refusing to create it", "chmod 700")
    assert not missing.exists()


# --- row 4: the header file is a FIFO, /dev/zero, a 1 GiB file ------------------------


def _fifo(box: Box) -> Path:
    fifo = box.run / "header.fifo"
    os.mkfifo(fifo, 0o600)
    alice = require_user(ALICE)
    os.chown(fifo, alice.pw_uid, alice.pw_gid)
    return fifo


def _huge(box: Box) -> Path:
    huge = box.alice_file(box.run / "huge", b"")
    with huge.open("r+b") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB that would all be read before the fix
    return huge


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_fifo, "is a FIFO, not a regular file"),
        (lambda box: Path("/dev/zero"), "is a character device, not a regular file"),
        (_huge, "is larger than 64 KiB"),
    ],
    ids=["fifo", "dev-zero", "1GiB"],
)
def test_header_file_that_is_not_a_small_regular_file_is_refused_promptly(
    box: Box, make: Any, expected: str
) -> None:
    path = make(box)
    result, elapsed = box.start_daemon_expecting_failure(sidecar_config(box, path))
    assert_refused_at_start(result, elapsed, f"managed_identity_header_file {path} {expected}")


def test_alices_private_header_file_is_accepted(box: Box) -> None:
    """The control: a 0600 header of Alice's in her private directory serves."""
    header = box.alice_file(box.run / "header", HEADER)
    config = sidecar_config(box, header)
    proc = subprocess.Popen(
        box.daemon_argv(), env=box.env(config), cwd="/", stdin=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not box.sock.exists():
            assert proc.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not listen"
            time.sleep(0.05)
        status = box.client(config, "status", "--json")
        assert status.returncode == 0, status.stderr
        assert HEADER not in status.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# --- row 7: the config (and secret files) that others can change ----------------------


def emulator_setup(box: Box, emu: Emulator, authority: str, ca: Path) -> str:
    """Alice's config text for the emulator, with her own secret file."""
    secret = box.alice_file(box.alice_home / "bp.secret", emu.blueprint_secret)
    body = {
        "default_profile": "app",
        "defaults": {
            "tenant_id": emu.tenant_id,
            "authority_host": authority,
            "ca_bundle": str(ca),
        },
        "profiles": {
            "app": {
                "blueprint_app_id": emu.blueprint_app_id,
                "agent_identity_app_id": emu.agent_identity_app_id,
                "scope": "https://graph.microsoft.com/.default",
                "blueprint_credential": {"secret_file": str(secret)},
            }
        },
    }
    return toml_dumps(body)


@pytest.fixture
def alice_ca(box: Box, emulator: Emulator) -> Path:
    return box.alice_file(box.alice_home / "ca.pem", Path(emulator.ca_bundle).read_bytes(), 0o644)


@pytest.fixture
def mallory_ca(box: Box, emulator: Emulator) -> Path:
    """Mallory's CA: any PEM certificate does, the file is refused before it is read."""
    return plant(box.shared / "evil-ca.pem", Path(emulator.ca_bundle).read_bytes(), MALLORY, 0o644)


class RunningDaemon:
    def __init__(self, box: Box, config: Path) -> None:
        self.box, self.config = box, config
        self.proc = subprocess.Popen(
            box.daemon_argv(),
            env=box.env(config),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not box.sock.exists():
            assert self.proc.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not listen"
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        result = self.box.client(self.config, "status", "--json")
        assert result.returncode == 0, result.stderr
        body: dict[str, Any] = json.loads(result.stdout)
        return body

    def reload_and_wait_for_error(self) -> str:
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            error = self.status()["daemon"].get("last_reload_error")
            if error:
                return str(error)
            assert time.monotonic() < deadline, "the reload reported nothing"
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_config_0622_rewritten_by_mallory_is_refused_on_reload(
    box: Box,
    emulator: Emulator,
    alice_ca: Path,
    mallory_ca: Path,
    fake_authority: FakeAuthority,
) -> None:
    config = box.alice_file(
        box.config_dir / "config.toml",
        emulator_setup(box, emulator, emulator.authority_host, alice_ca),
    )
    daemon = RunningDaemon(box, config)
    try:
        first = box.client(config, "get")
        assert first.returncode == 0, first.stderr
        config.chmod(0o622)  # Alice's mistake
        evil = emulator_setup(box, emulator, fake_authority.url, mallory_ca)
        subprocess.run(
            [*as_user(MALLORY), "tee", str(config)],
            input=evil,
            text=True,
            check=True,
            capture_output=True,
        )
        error = daemon.reload_and_wait_for_error()
        assert f"config file {config} is writable by group or others (mode 0622)" in error
        assert f"fix: chmod go-w {config}" in error
        again = box.client(config, "get", "--force-refresh")  # served by the old config
        assert again.returncode == 0, again.stderr
        doctor = box.client(config, "doctor")
        assert doctor.returncode == 5, doctor.stdout
        assert f"✘ config {config}: config file {config} is writable" in doctor.stdout
        assert "✘ daemon configuration reload: " in doctor.stdout
    finally:
        daemon.stop()
    assert fake_authority.connections == 0


def test_config_owned_by_mallory_is_refused_at_start_and_on_reload(
    box: Box,
    emulator: Emulator,
    alice_ca: Path,
    mallory_ca: Path,
    fake_authority: FakeAuthority,
) -> None:
    evil = emulator_setup(box, emulator, fake_authority.url, mallory_ca)
    planted = plant(box.shared / "config.toml", evil, MALLORY, 0o644)
    mallory = require_user(MALLORY)
    owned = f"is owned by uid {mallory.pw_uid} ({MALLORY})"
    # At start, named by AGENTID_HELPER_CONFIG.
    result, elapsed = box.start_daemon_expecting_failure(planted)
    assert_refused_at_start(result, elapsed, f"config file {planted} {owned}")
    # On reload: Alice's config is a link into the sticky directory; the file she
    # had there is gone, and Mallory's now stands at the name.
    mine = box.alice_file(
        box.shared / "alice.toml", emulator_setup(box, emulator, emulator.authority_host, alice_ca)
    )
    link = box.config_dir / "config.toml"
    subprocess.run([*as_user(ALICE), "ln", "-s", str(mine), str(link)], check=True)
    daemon = RunningDaemon(box, link)
    try:
        assert box.client(link, "get").returncode == 0
        mine.unlink()
        plant(mine, evil, MALLORY, 0o644)
        error = daemon.reload_and_wait_for_error()
        assert f"config file {link}: {mine} {owned}" in error
        again = box.client(link, "get", "--force-refresh")
        assert again.returncode == 0, again.stderr
    finally:
        daemon.stop()
    assert fake_authority.connections == 0


def test_secret_files_others_can_read_or_own_are_refused(
    box: Box, emulator: Emulator, alice_ca: Path
) -> None:
    mallory = require_user(MALLORY)
    loose = box.alice_file(box.alice_home / "loose.secret", emulator.blueprint_secret, 0o644)
    planted = plant(box.shared / "planted.secret", emulator.blueprint_secret, MALLORY, 0o644)
    text = emulator_setup(box, emulator, emulator.authority_host, alice_ca)
    for name, path in (("loose", loose), ("planted", planted)):
        text += (
            f'\n[profiles.{name}]\nblueprint_app_id = "{emulator.blueprint_app_id}"\n'
            f'agent_identity_app_id = "{emulator.agent_identity_app_id}"\n'
            f'blueprint_credential = {{ secret_file = "{path}" }}\n'
        )
    config = box.alice_file(box.config_dir / "config.toml", text)
    emulator.reset()
    daemon = RunningDaemon(box, config)
    try:
        result = box.client(config, "get", "--profile", "loose")
        assert result.returncode == 5, result.stderr
        assert f"secret file {loose} is readable by group or others (mode 0644)" in result.stderr
        assert f"fix: chmod 600 {loose}" in result.stderr
        result = box.client(config, "get", "--profile", "planted")
        assert result.returncode == 5, result.stderr
        assert f"secret file {planted} is owned by uid {mallory.pw_uid} ({MALLORY})" in (
            result.stderr
        )
        assert emulator.stats()["token_requests"]["total"] == 0  # nothing was sent
        assert emulator.blueprint_secret not in result.stderr
        doctor = box.client(config, "doctor")
        assert doctor.returncode != 0, doctor.stdout
        assert f"✘ profile loose: secret file {loose} is readable by group" in doctor.stdout
        assert f"✘ profile planted: secret file {planted} is owned by" in doctor.stdout
    finally:
        daemon.stop()


def test_doctor_fails_each_untrusted_file_without_a_daemon(box: Box, alice_ca: Path) -> None:
    """The header planted by Mallory, a ca_bundle she can write: ✘ with the fix."""
    header = plant(box.shared / "header", HEADER, MALLORY, 0o644)
    writable_ca = box.alice_file(box.alice_home / "open-ca.pem", alice_ca.read_bytes(), 0o666)
    body = {
        "daemon": {
            "managed_identity_listen": "127.0.0.1:8081",
            "managed_identity_header_file": str(header),
        },
        "defaults": {"ca_bundle": str(writable_ca)},
    }
    config = box.alice_file(box.config_dir / "config.toml", toml_dumps(body))
    doctor = box.client(config, "doctor")
    assert doctor.returncode != 0, doctor.stdout  # 3: its first failure, no daemon
    assert "none changeable by other users" not in doctor.stdout
    assert f"✘ managed_identity_header_file {header} is owned by" in doctor.stdout
    assert f"✘ defaults: ca_bundle {writable_ca} is writable by group or others" in doctor.stdout
    assert f"fix: chmod go-w {writable_ca}" in doctor.stdout
    assert HEADER not in doctor.stdout


# --- what root provisions: systemd credentials, Kubernetes Secret volumes ---------------


def check_as_alice(box: Box, path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\nfrom agentid_client import file_trust\n"
        "try:\n    file_trust.check_file(sys.argv[1], secret=True)\n"
        "except file_trust.UntrustedFile as exc:\n    print(exc)\n    sys.exit(5)\n"
    )
    return subprocess.run(
        [*as_user(ALICE), str(box.python), "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def test_root_provisioned_group_readable_secrets(box: Box) -> None:
    """0440 of root's group (systemd's ACL mask) or of Alice's own group (fsGroup) passes;
    Alice's own 0640 file and a root file of Mallory's group do not."""
    alice, mallory = require_user(ALICE), require_user(MALLORY)
    volume = box.root / "volume"
    volume.mkdir(mode=0o755)
    cases = {
        "systemd": (0, 0, 0o440, 0),
        "fsgroup": (0, alice.pw_gid, 0o440, 0),
        "own-0640": (alice.pw_uid, alice.pw_gid, 0o640, 5),
        "other-group": (0, mallory.pw_gid, 0o440, 5),
        "other-readable": (0, 0, 0o444, 5),
    }
    for name, (uid, gid, mode, expected) in cases.items():
        path = volume / name
        path.write_text(HEADER)
        os.chown(path, uid, gid)
        path.chmod(mode)
        result = check_as_alice(box, path)
        assert result.returncode == expected, (name, result.stdout, result.stderr)


def test_directory_on_a_read_only_mount_counts_as_unwritable(tmp_path: Path) -> None:
    """A 0777 mount point (as kubelet makes some volumes) passes only when mounted read-only.

    The mounts live in a private mount namespace (unshare): gone with the process.
    """
    volume = tmp_path / "volume"
    volume.mkdir()
    secret = volume / "s"
    check = (
        f"{sys.executable} -c 'import sys\nfrom agentid_client import file_trust\n"
        "try:\n    file_trust.check_file(sys.argv[1], secret=True)\n"
        "except file_trust.UntrustedFile as exc:\n    print(exc)\n    sys.exit(5)\n"
        f'print("trusted")\' {secret}'
    )
    script = (
        f"mount -t tmpfs -o size=1m,mode=0777 tmpfs {volume} && "
        f"printf value > {secret} && chmod 600 {secret} && "
        f"{{ {check}; echo rc=$?; }} && "
        f"mount -o remount,ro {volume} && {{ {check}; echo rc=$?; }}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert lines[0] == f"{volume} is writable by others (mode 0777) without the sticky bit: " + (
        "they could replace what it holds"
    ), lines
    assert lines[1:] == ["rc=5", "trusted", "rc=0"], lines


def test_root_unmapped_in_a_user_namespace_still_passes(box: Box) -> None:
    """systemd's ``PrivateUsers=yes`` (the shipped unit): root's ``/`` shows as nobody.

    The overflow uid then stands for root (and for any unmapped owner: only
    modes and Alice's own ownership can be checked in there); a secret others
    can read is still refused.
    """
    good = box.alice_file(box.root / "ns-good", HEADER)
    loose = box.alice_file(box.root / "ns-loose", HEADER, 0o644)
    code = (
        "import sys\nfrom agentid_client import file_trust\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n        file_trust.check_file(path, secret=True)\n        print('trusted')\n"
        "    except file_trust.UntrustedFile as exc:\n        print(exc)\n"
    )
    result = subprocess.run(
        [
            *as_user(ALICE),
            "unshare",
            "--user",
            "--map-current-user",
            "sh",
            "-c",
            'stat -c %u /; exec "$@"',
            "sh",
            str(box.python),
            "-c",
            code,
            str(good),
            str(loose),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "65534", lines  # root is unmapped in there
    assert lines[1] == "trusted", lines
    assert lines[2] == f"{loose} is readable by group or others (mode 0644) and holds a secret"
