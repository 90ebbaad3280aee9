"""A private podman for the tests: its own storage, its own containers.conf.

No image registry is reachable here, so the base image is made offline:
``debootstrap`` lays out a minimal Debian with ``python3`` and
``python3-venv`` (what deploy/kubernetes/Containerfile asks of its
BASE_IMAGE) from the machine's own apt mirror, and the tree, packed as a
tarball, is ``podman import``-ed. That takes about a minute, so the tarball is
kept under :data:`CACHE_DIR`, named by a hash of everything that went into it;
it is the only thing the tests leave behind.

Everything else lives under the test's directory: ``--root``/``--runroot``
(overlay storage) and a ``CONTAINERS_CONF`` of the test's own that podman
reads instead of the machine's. Two settings there are needed on this kind
of machine (a root without CAP_SYS_RESOURCE, a hybrid cgroup layout):

- ``[containers] default_ulimits = []``: podman otherwise raises the
  containers' RLIMIT_NOFILE, which that root may not do;
- ``[engine] runtime = "runc"``: crun refuses the hybrid cgroup layout, runc
  runs on it.

:meth:`Podman.reset` (``podman system reset --force`` on that root) removes
every image, container, pod and volume the test made.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tooling import ROOT, build_wheel
from wheelhouse import fill_wheelhouse

CACHE_DIR = Path("/var/cache/agentid-helper-tests")
CONTAINERFILE = ROOT / "deploy" / "kubernetes" / "Containerfile"
SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv")
#: What an image needs no copy of (downloaded .debs, apt lists, docs, man
#: pages, translations): left out of the tarball, as slim images do.
EXCLUDE = (
    "./var/cache/apt/archives/*.deb",
    "./var/lib/apt/lists/*",
    "./usr/share/doc/*",
    "./usr/share/man/*",
    "./usr/share/locale/*",
)
#: Bump when the way the tarball is made changes in a way the inputs miss.
RECIPE = 1
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT_S = 900
PODMAN_TIMEOUT_S = 300
CONTAINERS_CONF = """\
# Written by the agentid-helper tests (tests/support/podman_engine.py).
[containers]
# This root lacks CAP_SYS_RESOURCE: it cannot raise the containers' ulimits.
default_ulimits = []

[engine]
# crun refuses this machine's hybrid cgroup layout; runc runs on it.
runtime = "runc"
"""


class PodmanError(RuntimeError):
    """A podman command failed: its argv and output (no secret goes on argv)."""


def debian_mirror(sources: Sequence[Path] | None = None) -> str:
    """The machine's Debian mirror (apt's sources), for debootstrap to use too."""
    files = (
        list(sources)
        if sources is not None
        else [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    )
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if not uri.endswith(("-security", "debian-security")):
                return uri
    return "http://deb.debian.org/debian"


def tarball_path(cache_dir: Path, mirror: str) -> Path:
    """The cache's name for the tarball these inputs make."""
    inputs = repr((RECIPE, SUITE, VARIANT, INCLUDE, EXCLUDE, mirror, os.uname().machine))
    key = hashlib.sha256(inputs.encode()).hexdigest()[:16]
    return cache_dir / f"debian-{SUITE}-{VARIANT}-python3-{key}.tar.gz"


def base_tarball(cache_dir: Path = CACHE_DIR, mirror: str | None = None) -> Path:
    """The cached Debian base tarball, made with debootstrap when missing.

    Concurrent test runs take a lock, so only one of them builds it; the
    tarball appears under its final name only once complete.
    """
    mirror = mirror or debian_mirror()
    tarball = tarball_path(cache_dir, mirror)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as scratch:
            rootfs = Path(scratch) / "rootfs"
            done = subprocess.run(
                [
                    "debootstrap",
                    f"--variant={VARIANT}",
                    f"--include={','.join(INCLUDE)}",
                    SUITE,
                    str(rootfs),
                    mirror,
                ],
                capture_output=True,
                text=True,
                timeout=DEBOOTSTRAP_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise PodmanError(f"debootstrap failed ({done.returncode}): {done.stderr[-3000:]}")
            partial = Path(scratch) / "base.tar.gz"
            excludes = [f"--exclude={pattern}" for pattern in EXCLUDE]
            packed = subprocess.run(
                ["tar", "-C", str(rootfs), "-czf", str(partial), *excludes, "."],
                capture_output=True,
                text=True,
                timeout=PODMAN_TIMEOUT_S,
            )
            if packed.returncode != 0:
                raise PodmanError(f"tar failed: {packed.stderr[-2000:]}")
            partial.rename(tarball)
    return tarball


@dataclass
class Podman:
    """podman on a private storage root under *home* (see the module docstring)."""

    home: Path

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.conf = self.home / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        # podman refuses a runroot path over 50 characters: a short one of
        # its own under /tmp, removed by reset() with the rest.
        self.runroot = Path(tempfile.mkdtemp(prefix="aidh-podman-", dir="/tmp"))

    @property
    def argv(self) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.home / "root"),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            "overlay",
        ]

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "CONTAINERS_CONF": str(self.conf),
            "TMPDIR": str(self.home),
        }

    def run(
        self,
        *args: str,
        timeout: float = PODMAN_TIMEOUT_S,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` on this root; raises :class:`PodmanError` on failure when *check*."""
        done = subprocess.run(
            [*self.argv, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise PodmanError(
                f"podman {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def import_base(self, tarball: Path, name: str) -> str:
        """``podman import`` the base tarball as image *name*."""
        # A tarball has no image config: give it the PATH every image has.
        self.run("import", "--change", f"ENV PATH={IMAGE_PATH}", str(tarball), name)
        return name

    def build_sidecar_image(self, context: Path, tag: str, base: str) -> None:
        """deploy/kubernetes/Containerfile on *base*, from the project's wheel and
        its dependencies' (the venv's, repacked) in *context*; no network."""
        context.mkdir(parents=True, exist_ok=True)
        build_wheel(context)
        fill_wheelhouse(context, ["agentid-helper"], skip=["agentid-helper"])
        self.run(
            "build",
            "--format",
            "docker",  # keeps the HEALTHCHECK
            "--network",
            "none",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-f",
            str(CONTAINERFILE),
            "-t",
            tag,
            str(context),
        )

    def image_size(self, image: str) -> int:
        """``podman image inspect``'s Size of *image*, in bytes."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def reset(self) -> None:
        """Remove everything on this root (images, containers, pods, volumes)."""
        if (self.home / "root").exists():
            self.run("system", "reset", "--force", timeout=120, check=False)
        shutil.rmtree(self.home / "root", ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)
