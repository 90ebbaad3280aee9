"""The demo: emulator + daemon + client, tokens in all three modes.

Everything runs from a temporary directory on loopback: the local Entra
emulator (``agentid-helper-emulator --demo --imds-port 0``), the daemon on a
private socket, and the ``agentid-helper`` client as a script, kubectl or git
would run it; then a managed identity (the emulator's IMDS endpoint) as the
blueprint's credential. Tokens are shown as decoded claims and a short
prefix, never whole. tests/integration/test_demo.py runs it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from ssl import create_default_context

from agentid_emulator.demo_config import render_demo_config

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 20.0


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def show_token(token: str, keys: tuple[str, ...]) -> None:
    decoded = claims(token)
    shown = {k: decoded[k] for k in keys if k in decoded}
    print(f"   token {token[:12]}... ({len(token)} chars) claims: {json.dumps(shown)}")


def wait_for(predicate, what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a background process whose output goes to ``log`` (the child keeps the fd)."""
    with log.open("w") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def client(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    cmd = [str(BIN / "agentid-helper"), *args]
    print("   $ agentid-helper " + " ".join(args), flush=True)
    done = subprocess.run(
        cmd, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"demo: agentid-helper {args[0]} failed with exit {done.returncode}")
    return done.stdout


def emulator_admin(info: dict, path: str, body: dict | None = None) -> dict:
    ctx = create_default_context(cafile=info["ca_bundle"])
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(
        info["authority_host"] + path,
        data=data if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def managed_identity_step(info: dict) -> None:
    """The blueprint's own Graph token with a managed identity as its credential,
    over the wire as Microsoft's docs show it (create-delete-agent-identities.md)."""
    query = urllib.parse.urlencode(
        {
            "api-version": "2018-02-01",
            "resource": "api://AzureADTokenExchange",
            "client_id": info["managed_identity_client_id"],
        }
    )
    print(f"   GET {info['imds_endpoint']}/metadata/identity/oauth2/token?... (Metadata: true)")
    req = urllib.request.Request(
        f"{info['imds_endpoint']}/metadata/identity/oauth2/token?{query}",
        headers={"Metadata": "true"},
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS: no proxy
    with direct.open(req, timeout=10) as resp:
        mi_token = json.loads(resp.read())["access_token"]
    show_token(mi_token, ("aud", "sub", "azp"))
    form = urllib.parse.urlencode(
        {
            "client_id": info["blueprint_app_id"],
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
            "client_assertion": mi_token,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        }
    ).encode()
    print("   POST token endpoint: the blueprint, client_assertion = that token, no fmi_path")
    ctx = create_default_context(cafile=info["ca_bundle"])
    with urllib.request.urlopen(info["token_endpoint"], data=form, context=ctx, timeout=10) as resp:
        own = json.loads(resp.read())["access_token"]
    show_token(own, ("aud", "appid", "idtyp", "roles"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="agentid-demo-") as tmp_name:
        tmp = Path(tmp_name)
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        env = dict(os.environ)
        env.update(
            AGENTID_HELPER_SOCKET=str(runtime / "agentid-helper.sock"),
            AGENTID_HELPER_CONFIG=str(tmp / "config.toml"),
            AGENTID_HELPER_NO_AUTOSTART="1",
            XDG_RUNTIME_DIR=str(runtime),
        )
        procs: list[subprocess.Popen] = []
        try:
            step("1. Start the local Entra emulator (offline authority over HTTPS)")
            ready = tmp / "emulator.json"
            procs.append(
                start(
                    [
                        str(BIN / "agentid-helper-emulator"),
                        "--demo",
                        "--port",
                        "0",
                        "--imds-port",
                        "0",
                        "--ready-file",
                        str(ready),
                        "--state-dir",
                        str(tmp / "emulator"),
                    ],
                    env,
                    tmp / "emulator.log",
                )
            )
            wait_for(ready.exists, "the emulator")
            info = json.loads(ready.read_text())
            print(f"   authority {info['authority_host']}  tenant {info['tenant_id']}")
            print(f"   blueprint {info['blueprint_app_id']}  agent {info['agent_identity_app_id']}")

            # The config `agentid-helper-emulator --demo --print-config` prints: the
            # blueprint secret in a file of the emulator's state dir, no keyring.
            (tmp / "config.toml").write_text(render_demo_config(info))

            step("2. Start the daemon on a private Unix socket")
            procs.append(start([str(BIN / "agentid-helperd")], env, tmp / "daemon.log"))
            wait_for(Path(env["AGENTID_HELPER_SOCKET"]).exists, "the daemon socket")
            print(f"   socket {env['AGENTID_HELPER_SOCKET']}")

            step("3. AutonomousApp: the agent acts as itself (T1 + app token)")
            out = json.loads(client(env, "get", "--profile", "graph-bot", "--format", "json"))
            print(f"   source={out['source']} mode={out['mode']} scope={out['scope']}")
            show_token(out["access_token"], ("aud", "azp", "idtyp", "roles"))
            out = json.loads(client(env, "get", "--profile", "graph-bot", "--format", "json"))
            print(f"   again: source={out['source']} (served from the daemon's cache)")

            step("4. OBO: the agent acts for a signed-in human (user token from a file)")
            user = emulator_admin(
                info,
                "/_emulator/users/token",
                {"upn": info["user_upn"], "audience": info["blueprint_app_id"]},
            )
            # Signed in for api://<blueprint>/access_agent: OBO needs aud = the blueprint.
            print("   user token for the blueprint (as for api://<blueprint>/access_agent):")
            show_token(user["access_token"], ("aud", "scp", "upn"))
            user_token_file = tmp / "user.jwt"
            user_token_file.write_text(user["access_token"])
            user_token_file.chmod(0o600)
            out = json.loads(
                client(
                    env,
                    "get",
                    "--profile",
                    "on-behalf",
                    "--user-token-file",
                    str(user_token_file),
                    "--format",
                    "json",
                )
            )
            print(f"   source={out['source']} mode={out['mode']} scope={out['scope']}")
            show_token(out["access_token"], ("aud", "upn", "idtyp", "scp"))

            step("5. AutonomousUser: the agent acts as its own agent user (T1 + T2 + user_fic)")
            out = json.loads(client(env, "get", "--profile", "agent-user", "--format", "json"))
            print(f"   source={out['source']} mode={out['mode']} scope={out['scope']}")
            show_token(out["access_token"], ("aud", "upn", "idtyp", "scp"))

            step("6. kubectl's view: an ExecCredential")
            cred = json.loads(client(env, "kubectl-credential", "--profile", "graph-bot"))
            print(
                f"   apiVersion={cred['apiVersion']} kind={cred['kind']} "
                f"expirationTimestamp={cred['status']['expirationTimestamp']}"
            )

            step("7. What the daemon holds (never token values)")
            print(client(env, "status").rstrip())

            step("8. A managed identity as the blueprint's credential (emulated IMDS)")
            managed_identity_step(info)

            step("9. What the identity provider saw")
            stats = emulator_admin(info, "/_emulator/stats")["token_requests"]
            print(f"   token requests: {stats['total']} by leg {json.dumps(stats['by_leg'])}")
            print("   (T1 was reused by all three modes; the repeated call cost nothing)")
            print("\ndemo: ok")
            return 0
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()


if __name__ == "__main__":
    sys.exit(main())
