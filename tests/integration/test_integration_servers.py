"""The fake Kubernetes API and git servers, driven by the real kubectl and git.

These tests do not need the helper: tokens come from a local RSA key, and
kubectl/git get them from a static kubeconfig token, a tiny exec plugin or a
tiny credential helper. They pin down how the real tools behave against the
servers (what they send, when they re-run a plugin, when git says ``erase``),
which the helper tests rely on.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from git_http_server import GitHttpServer, make_bare_repo
from helper_stack import require_tools
from kube_api_server import KubeApiServer
from tls_certs import ServerTls
from token_gate import TokenGate, TokenRejected

pytestmark = pytest.mark.integration

TOOL_TIMEOUT_S = 60
ISSUER = "https://issuer.test/tenant/v2.0"
AUDIENCE = "api://fake-resource"


class LocalIssuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def mint(
        self, *, aud: str = AUDIENCE, iss: str = ISSUER, lifetime_s: int = 3600, key: Any = None
    ) -> str:
        now = int(time.time())
        claims = {
            "aud": aud,
            "iss": iss,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "sub": "agent",
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def gate(self) -> TokenGate:
        return TokenGate(
            jwks=self.jwks, issuers=frozenset({ISSUER}), audiences=frozenset({AUDIENCE})
        )


@pytest.fixture(scope="module")
def issuer() -> LocalIssuer:
    return LocalIssuer()


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }


# -- token gate ----------------------------------------------------------------


def test_gate_accepts_valid_and_rejects_bad_tokens(issuer: LocalIssuer) -> None:
    gate = issuer.gate()
    good = issuer.mint()
    assert gate.verify(good)["aud"] == AUDIENCE
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "audience": issuer.mint(aud="api://other"),
        "issuer": issuer.mint(iss="https://evil.test/v2.0"),
        "expired": issuer.mint(lifetime_s=-3600),
        "signature": issuer.mint(key=other_key),
        "garbage": "not-a-jwt",
    }
    for name, token in bad.items():
        with pytest.raises(TokenRejected) as info:
            gate.verify(token)
        assert token not in str(info.value), name
    gate.reject(good)
    with pytest.raises(TokenRejected, match="revoked"):
        gate.verify(good)
    assert gate.accepted == [good]
    assert len(gate.seen) == 2 + len(bad)


# -- kubectl -------------------------------------------------------------------


def _kubeconfig(path: Path, server: str, ca: Path, user: dict[str, Any]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": "fake", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "agent", "user": user}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "agent"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))  # JSON is valid YAML
    path.chmod(0o600)
    return path


def _kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=TOOL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def test_kubectl_lists_namespaces_with_a_valid_token(
    issuer: LocalIssuer, server_tls: ServerTls, tmp_path: Path
) -> None:
    require_tools("kubectl")
    with KubeApiServer(server_tls, issuer.gate()) as api:
        cfg = _kubeconfig(
            tmp_path / "kubeconfig", api.url, server_tls.ca_file, {"token": issuer.mint()}
        )
        table = _kubectl(cfg, tmp_path, "get", "namespaces")
        assert table.returncode == 0, table.stderr
        assert "agentid-demo" in table.stdout
        assert "Active" in table.stdout
        names = _kubectl(cfg, tmp_path, "get", "namespaces", "-o", "name")
        assert names.returncode == 0, names.stderr
        assert "namespace/agentid-demo" in names.stdout.split()


def test_kubectl_is_refused_with_a_bad_token(
    issuer: LocalIssuer, server_tls: ServerTls, tmp_path: Path
) -> None:
    require_tools("kubectl")
    with KubeApiServer(server_tls, issuer.gate()) as api:
        cfg = _kubeconfig(
            tmp_path / "kubeconfig",
            api.url,
            server_tls.ca_file,
            {"token": issuer.mint(aud="api://someone-else")},
        )
        result = _kubectl(cfg, tmp_path, "get", "namespaces")
        assert result.returncode != 0
        assert "You must be logged in to the server" in result.stderr
        assert 401 in api.statuses()
        assert 200 not in api.statuses()


_EXEC_PLUGIN = """\
import json, pathlib, sys
state = pathlib.Path(sys.argv[1])
tokens = json.loads(state.read_text())
calls = state.with_suffix(".calls")
n = int(calls.read_text()) if calls.exists() else 0
calls.write_text(str(n + 1))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": tokens[min(n, len(tokens) - 1)]}}))
"""


def test_kubectl_reruns_exec_plugin_after_401(
    issuer: LocalIssuer, server_tls: ServerTls, tmp_path: Path
) -> None:
    """client-go re-runs the exec plugin once the server says 401 (the helper relies on it)."""
    require_tools("kubectl")
    gate = issuer.gate()
    old, new = issuer.mint(), issuer.mint()
    gate.reject(old)
    state = tmp_path / "plugin.json"
    state.write_text(json.dumps([old, new]))
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_EXEC_PLUGIN)
    with KubeApiServer(server_tls, gate) as api:
        cfg = _kubeconfig(
            tmp_path / "kubeconfig",
            api.url,
            server_tls.ca_file,
            {
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": sys.executable,
                    "args": [str(plugin), str(state)],
                    "interactiveMode": "Never",
                }
            },
        )
        result = _kubectl(cfg, tmp_path, "get", "namespaces", "-o", "name")
        # The first request (discovery) gets 401; client-go refreshes the
        # credential by re-running the plugin and the run succeeds.
        assert result.returncode == 0, result.stderr
        assert state.with_suffix(".calls").read_text() == "2"
        assert api.statuses()[0] == 401
        assert set(api.statuses()[1:]) == {200}
        again = _kubectl(cfg, tmp_path, "get", "namespaces", "-o", "name")
        assert again.returncode == 0, again.stderr
        assert gate.accepted
        assert set(gate.accepted) == {new}


# -- git -----------------------------------------------------------------------

_CRED_HELPER = """\
#!/bin/sh
# args: <token file> <log file> <action>
echo "$3" >> "$2"
cat > /dev/null
if [ "$3" = get ]; then
  echo username=agent
  printf 'password=%s\\n' "$(cat "$1")"
fi
"""


def _git_clone(
    home: Path,
    helper: str,
    ca: Path,
    url: str,
    dest: Path,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "git",
            "-c",
            "credential.helper=",
            "-c",
            f"credential.helper={helper}",
            "-c",
            f"http.sslCAInfo={ca}",
            "clone",
            "-q",
            url,
            str(dest),
        ],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=TOOL_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def test_git_clone_uses_the_credential_helper_and_erases_rejected_tokens(
    issuer: LocalIssuer, server_tls: ServerTls, tmp_path: Path
) -> None:
    require_tools("git")
    sha = make_bare_repo(tmp_path / "repos")
    token_file, log = tmp_path / "token", tmp_path / "helper.log"
    helper = tmp_path / "cred-helper.sh"
    helper.write_text(_CRED_HELPER)
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    token_file.write_text(issuer.mint())
    gate = issuer.gate()
    with GitHttpServer(server_tls, gate, tmp_path / "repos") as host:
        helper_cmd = f"!{helper} {token_file} {log}"
        url = f"{host.url}/repo.git"
        ok = _git_clone(tmp_path, helper_cmd, server_tls.ca_file, url, tmp_path / "c1")
        assert ok.returncode == 0, ok.stderr + "".join(host.backend_errors)
        head = subprocess.run(
            ["git", "-C", str(tmp_path / "c1"), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            env=_env(tmp_path),
        )
        assert head.stdout.strip() == sha
        assert log.read_text().split() == ["get", "store"]

        gate.reject(token_file.read_text())
        log.write_text("")
        bad = _git_clone(tmp_path, helper_cmd, server_tls.ca_file, url, tmp_path / "c2")
        assert bad.returncode != 0
        assert "Authentication failed" in bad.stderr
        assert log.read_text().split() == ["get", "erase"]
        assert not (tmp_path / "c2").exists()


def test_git_server_answers_bearer_and_challenges_basic(
    issuer: LocalIssuer, server_tls: ServerTls, tmp_path: Path
) -> None:
    import base64
    import urllib.error
    import urllib.request

    require_tools("git")
    make_bare_repo(tmp_path / "repos")
    token = issuer.mint()
    with GitHttpServer(server_tls, issuer.gate(), tmp_path / "repos") as host:
        url = f"{host.url}/repo.git/info/refs?service=git-upload-pack"
        ctx = server_tls.client_context()
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
            context=ctx,
            timeout=TOOL_TIMEOUT_S,
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
            assert b"refs/heads/main" in resp.read()
        basic = base64.b64encode(b"agent:" + b"x" * 20).decode()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(
                urllib.request.Request(url, headers={"Authorization": f"Basic {basic}"}),
                context=ctx,
                timeout=TOOL_TIMEOUT_S,
            )
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"] == 'Basic realm="agentid"'
        missing = f"{host.url}/nope.git/info/refs?service=git-upload-pack"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(
                urllib.request.Request(missing, headers={"Authorization": f"Bearer {token}"}),
                context=ctx,
                timeout=TOOL_TIMEOUT_S,
            )
        assert info.value.code == 404
