"""git -> credential helper ``agentid-helper git-credential`` -> daemon -> emulator.

git 2.39 asks the helper for ``username``/``password`` and sends them as HTTP
Basic; the fake git host accepts the password if it is a valid Entra token for
the Azure DevOps resource. After a 401 with credentials, git tells the helper
``erase``, which must make the daemon drop the token so the next run gets a
fresh one.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from git_http_server import GitHttpServer, make_bare_repo
from helper_stack import (
    GIT_RESOURCE,
    DaemonProcess,
    HelperSandbox,
    helper_bin,
    require_tools,
)
from tls_certs import ServerTls
from token_gate import TokenGate

pytestmark = pytest.mark.integration

PROFILE = "repos"
GIT_TIMEOUT_S = 60


@dataclass
class GitSetup:
    host: GitHttpServer
    gate: TokenGate
    sha: str
    sandbox: HelperSandbox
    ca_file: Path

    @property
    def url(self) -> str:
        return f"{self.host.url}/repo.git"

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        helper = f"!{helper_bin('agentid-helper')} git-credential"
        env = {**self.sandbox.env, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        env.pop("GIT_ASKPASS", None)
        env.pop("SSH_ASKPASS", None)
        return subprocess.run(
            [
                "git",
                "-c",
                "credential.helper=",
                "-c",
                f"credential.helper={helper}",
                "-c",
                f"http.sslCAInfo={self.ca_file}",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.sandbox.root,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_S,
        )

    def log(self) -> str:
        """What the server did (for assertion messages; no token values)."""
        reqs = "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in self.host.requests)
        return (
            f"\nserver requests:\n{reqs}\nrejections: {self.host.rejections}"
            f"\nbackend errors: {self.host.backend_errors}"
        )

    def clone(self, dest: Path) -> subprocess.CompletedProcess[str]:
        return self.git("clone", "-q", self.url, str(dest))

    def head(self, repo: Path) -> str:
        return self.git("-C", str(repo), "rev-parse", "HEAD").stdout.strip()


def _write_config(sandbox: HelperSandbox, info: dict[str, Any], git_hosts: dict[str, Any]) -> None:
    sandbox.configure_one_profile(
        info,
        PROFILE,
        resource=GIT_RESOURCE,
        default_profile=None,
        git={host: entry["profile"] for host, entry in git_hosts.items()},
    )


@pytest.fixture
def git_host(
    emulator: Any, sandbox: HelperSandbox, server_tls: ServerTls, tmp_path: Path
) -> Iterator[GitSetup]:
    require_tools("git")
    sha = make_bare_repo(tmp_path / "repos")
    gate = TokenGate.from_emulator(emulator.info, audience=GIT_RESOURCE)
    with GitHttpServer(server_tls, gate, tmp_path / "repos") as host:
        yield GitSetup(host, gate, sha, sandbox, server_tls.ca_file)


def test_git_clone_with_the_helper_and_erase_on_rejection(
    git_host: GitSetup,
    sandbox: HelperSandbox,
    emulator: Any,
    start_daemon: Callable[[], DaemonProcess],
    tmp_path: Path,
) -> None:
    # git gives the helper host=127.0.0.1:PORT, so that is the map's key.
    _write_config(sandbox, emulator.info, {git_host.host.host: {"profile": PROFILE}})
    daemon = start_daemon()
    gate = git_host.gate

    first = git_host.clone(tmp_path / "clone1")
    assert first.returncode == 0, first.stderr + git_host.log()
    assert git_host.head(tmp_path / "clone1") == git_host.sha
    token = gate.last_accepted
    assert gate.verify(token, record=False)["aud"] == GIT_RESOURCE

    # The server revokes that token: git gets 401 with credentials, says
    # "erase" to the helper and fails.
    gate.reject(token)
    refused = git_host.clone(tmp_path / "clone2")
    assert refused.returncode != 0, git_host.log()
    assert "Authentication failed" in refused.stderr, refused.stderr + git_host.log()
    assert token not in refused.stderr
    assert not (tmp_path / "clone2").exists()

    # erase dropped the cached token: the next clone carries a fresh one.
    second = git_host.clone(tmp_path / "clone3")
    assert second.returncode == 0, second.stderr + git_host.log()
    assert git_host.head(tmp_path / "clone3") == git_host.sha
    assert gate.last_accepted != token

    daemon.assert_log_free_of([*gate.seen, emulator.info["blueprint_secret"]])


def test_git_host_without_a_profile_gets_no_token(
    git_host: GitSetup,
    sandbox: HelperSandbox,
    emulator: Any,
    start_daemon: Callable[[], DaemonProcess],
    tmp_path: Path,
) -> None:
    """The helper answers only for mapped hosts: an unmapped one never sees a token."""
    _write_config(sandbox, emulator.info, {"git.example.invalid": {"profile": PROFILE}})
    start_daemon()
    result = git_host.clone(tmp_path / "clone")
    assert result.returncode != 0
    assert git_host.gate.seen == []
    assert not (tmp_path / "clone").exists()


def _git_with_global_config(
    git_host: GitSetup, gitconfig: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """git with the sandbox's ~/.gitconfig as written (no -c helper overrides)."""
    (git_host.sandbox.home / ".gitconfig").write_text(gitconfig)
    env = {**git_host.sandbox.env, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", "-c", f"http.sslCAInfo={git_host.ca_file}", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=git_host.sandbox.root,
        stdin=subprocess.DEVNULL,
        timeout=GIT_TIMEOUT_S,
    )


def _git_version() -> tuple[int, int]:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    major, minor = out.split()[2].split(".")[:2]
    return int(major), int(minor)


def test_store_helper_chain_and_the_readme_setup_that_avoids_it(
    git_host: GitSetup,
    sandbox: HelperSandbox,
    emulator: Any,
    start_daemon: Callable[[], DaemonProcess],
    tmp_path: Path,
) -> None:
    """git < 2.46 hands our token to `store` chained after us (clear text in
    ~/.git-credentials); doctor warns. The README's URL-scoped list, reset by an
    empty value, keeps a generic `store` away from our token."""
    _write_config(sandbox, emulator.info, {git_host.host.host: {"profile": PROFILE}})
    start_daemon()
    ours = f"!{helper_bin('agentid-helper')} git-credential"
    url = f"https://{git_host.host.host}"
    store = sandbox.home / ".git-credentials"
    old_git = _git_version() < (2, 46)

    chained = f'[credential "{url}"]\n\thelper = "{ours}"\n\thelper = store\n'
    first = _git_with_global_config(
        git_host, chained, "clone", "-q", git_host.url, str(tmp_path / "clone1")
    )
    assert first.returncode == 0, first.stderr + git_host.log()
    token = git_host.gate.last_accepted
    assert (store.exists() and token in store.read_text()) == old_git
    doctor = sandbox.client("doctor", timeout=90)
    assert (
        "⚠ git" in doctor.stdout and f"other helpers for {url} (store)" in doctor.stdout
    ) == old_git, doctor.stdout
    store.unlink(missing_ok=True)

    readme = (
        f'[credential]\n\thelper = store\n[credential "{url}"]\n\thelper = ""\n'
        f'\thelper = "{ours}"\n'
    )
    second = _git_with_global_config(
        git_host, readme, "clone", "-q", git_host.url, str(tmp_path / "clone2")
    )
    assert second.returncode == 0, second.stderr + git_host.log()
    assert not store.exists() or git_host.gate.last_accepted not in store.read_text()
    assert "⚠ git" not in sandbox.client("doctor", timeout=90).stdout
