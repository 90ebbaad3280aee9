"""``agentid-helper init`` end to end: the real client, the daemon-side wizard (MSAL's
PublicClientApplication for the device code), the emulator's Graph and token
endpoint over HTTPS with a replication delay, then ``agentid-helper get`` through
an autostarted daemon. The secret is never in any output; a failed init says
what exists and how to remove it, and those removals work."""

from __future__ import annotations

import json
import re
import select
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from client_stack import HELPER, Env, client_stack
from emulator_graph_helpers import ADMIN_SCOPES, admin_client, admin_token_file, scripted_init
from emulator_harness import Emulator
from tooling import SUPPORT

DELAY_S = 1.0
RUN_TIMEOUT_S = 90


@pytest.fixture
def stack(
    emulator_factory: Callable[..., Emulator], tmp_path: Path
) -> Iterator[tuple[Env, Emulator, Path]]:
    """An emulator with a replication delay, a client stack, and a config path that
    does not exist yet (init creates it)."""
    emu = emulator_factory(replication_delay_s=DELAY_S)
    with client_stack(emu, tmp_path) as env:
        config = tmp_path / "fresh" / "agentid-helper" / "config.toml"
        env.env["AGENTID_HELPER_CONFIG"] = str(config)
        yield env, emu, config


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def _never_shows(secret: str, *texts: str) -> None:
    assert secret and all(secret not in text for text in texts)


def test_example_1_device_code_init_then_get_with_no_arguments(
    stack: tuple[Env, Emulator, Path],
) -> None:
    env, emu, config = stack
    proc = subprocess.Popen(
        [
            *HELPER,
            *scripted_init(emu),
            "--agent-name",
            "Build Bot",
            "--credential",
            "secret-file",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env.env,
    )
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    code = None
    try:
        while code is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += proc.stderr.readline()
            code = re.search(r"enter the code ([A-Z0-9]+)", seen)
        assert code, seen
        # The administrator signs in on "another device": the emulator's approval.
        emu.admin(
            "POST",
            "/_emulator/devicecode/approve",
            {"user_code": code.group(1), "upn": emu.user_upn},
        )
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = seen + err
    assert proc.returncode == 0, (out, err)
    assert "created the blueprint" in err and "created the agent identity" in err
    assert "profile build-bot" in out and "(the default profile)" in out
    assert "agentid-helper get --profile build-bot works" in out

    text = config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert 'default_profile = "build-bot"' in text and "[profiles.build-bot]" in text
    secret_path = config.parent / "build-bot.secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    secret = secret_path.read_text().strip()
    _never_shows(secret, out, err, text)

    # Example 1: `get` with no arguments prints the new agent's token.
    got = _ok(env.run("get"))
    agent_app_id = re.search(r'agent_identity_app_id = "([0-9a-f-]{36})"', text)
    assert agent_app_id, text
    assert claims(got.strip())["appid"] == agent_app_id.group(1)
    _never_shows(secret, got)


def interactive_answers(emu: Emulator, credential: str = "secret-file") -> list[str]:
    """What a user types at init's prompts: a bad name first (said, asked again),
    Enter for most defaults, an agent user."""
    domain = emu.user_upn.partition("@")[2]
    return [
        emu.tenant_id,
        emu.authority_host,
        "",  # blueprint name: the default
        "x" * 300,  # too long: said, asked again
        "mailer",
        "",  # profile name: the default (mailer)
        "",  # sponsor: the signed-in administrator
        credential,
        *([""] if credential == "secret-file" else []),  # its file: the default
        f"mailer-user@{domain}",
        "",  # the agent user's profile: mailer-user
        "",  # sign-in client: the default
    ]


def test_interactive_init_with_a_token_file_and_an_agent_user(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    env, emu, config = stack
    flags = [
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        "--graph-endpoint",
        str(emu.info["graph_endpoint"]),
        "--ca-bundle",
        str(emu.ca_bundle),
    ]
    typed = "\n".join(interactive_answers(emu)) + "\n"
    done = env.run("init", *flags, stdin=typed, timeout=RUN_TIMEOUT_S)
    out = _ok(done)
    assert "Tenant (GUID or domain): " in done.stderr
    assert "Microsoft Graph takes at most 256" in done.stderr  # the bad name, then asked again
    secret = (config.parent / "mailer.secret").read_text().strip()
    _never_shows(secret, out, done.stderr, config.read_text())
    user = interactive_answers(emu)[-3]
    user_token = _ok(env.run("get", "--profile", "mailer-user")).strip()
    assert claims(user_token)["upn"] == user


def test_init_with_a_generated_certificate(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    env, emu, config = stack
    done = env.run(
        *scripted_init(emu),
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        "--agent-name",
        "cert bot",
        "--credential",
        "certificate",
        "--json",
        timeout=RUN_TIMEOUT_S,
    )
    result = json.loads(_ok(done))
    pem = config.parent / "cert-bot.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    body = pem.read_text()
    assert "PRIVATE KEY" in body and "CERTIFICATE" in body
    assert "PRIVATE KEY" not in done.stdout + done.stderr
    assert f'certificate_file = "{pem}"' in config.read_text()
    token = _ok(env.run("get", "--profile", result["profile"])).strip()
    assert claims(token)["appid"] == result["agent_identity_app_id"]


def test_a_partial_init_says_what_exists_and_its_removals_work(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    """The agent user's UPN is of a domain the tenant does not have: Graph refuses the
    last step (exit 2 with Graph's reason); the blueprint and the agent identity exist
    and are named with the calls that remove them; no profile is written."""
    env, emu, config = stack
    done = env.run(
        *scripted_init(emu),
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        "--agent-name",
        "half",
        "--credential",
        "secret-file",
        "--agent-user-upn",
        "someone@not-this-tenant.example",
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr
    assert "Microsoft Graph refused to create the agent user" in err
    assert "request id" in err
    assert "init did not finish; these exist now:" in err
    assert "blueprint:" in err and "agent identity:" in err
    assert not config.exists()  # no profile names what failed
    secret_file = config.parent / "half.secret"
    assert f"rm {secret_file}" in err
    removals = re.findall(r"az rest --method DELETE --url (\S+)", err)
    assert len(removals) == 2 and "/serviceprincipals/" in removals[0]  # the agent first
    admin = admin_client(
        emu,
        scope=f"{ADMIN_SCOPES} https://graph.microsoft.com/AgentIdentityBlueprint.DeleteRestore.All",
    )
    for url in removals:
        resp = admin.session.delete(url, headers={"Authorization": f"Bearer {admin.token}"})
        assert resp.status_code == 204, (url, resp.text)


@pytest.mark.parametrize(
    ("flags", "code", "says"),
    [
        (["--tenant-id", "not a tenant"], 2, "neither a tenant GUID nor a domain"),
        (["--agent-name", "x" * 257], 2, "at most 256"),
        (["--sponsor", "not-a-upn"], 2, "upn must look like alias@domain"),
        (["--agent-user-upn", "@bad"], 2, "alias@domain"),
        (["--save-profile", "bad name!"], 2, "must be 1-64 letters"),
        (["--client-id", "nope"], 2, "is not a GUID"),
    ],
)
def test_bad_answers_exit_2_before_anything_exists(
    stack: tuple[Env, Emulator, Path],
    tmp_path: Path,
    flags: list[str],
    code: int,
    says: str,
) -> None:
    env, emu, config = stack
    base = {"--agent-name": "bot", "--tenant-id": emu.tenant_id}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        base[flag] = value
    done = env.run(
        "init",
        "--non-interactive",
        "--authority-host",
        emu.authority_host,
        "--ca-bundle",
        str(emu.ca_bundle),
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        *[x for pair in base.items() for x in pair],
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert "created" not in done.stderr and not config.exists()


def test_graph_refusals_name_the_reason_and_nothing_is_left(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    env, emu, config = stack
    common = [*scripted_init(emu), "--agent-name", "bot"]
    # A sponsor who is not a user of the tenant: Graph's 400, exit 2, nothing made.
    unknown = f"nobody@{emu.user_upn.partition('@')[2]}"
    done = env.run(
        *common,
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        "--sponsor",
        unknown,
        "--credential",
        "secret-file",
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 2, done.stderr
    assert "does not exist in the tenant" in done.stderr
    assert "init: nothing was created" in done.stderr
    assert not (config.parent / "bot.secret").exists()  # the reserved file is gone
    # A token without AgentIdentityBlueprint.Create: 403, exit 4, the permission named.
    weak = admin_token_file(
        emu, tmp_path, scope="https://graph.microsoft.com/AgentIdentity.Create.All"
    )
    done = env.run(
        *common,
        "--graph-token-file",
        str(weak),
        "--credential",
        "secret-file",
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 4, done.stderr
    assert "AgentIdentityBlueprint.Create" in done.stderr
    assert "Authorization_RequestDenied" in done.stderr
    assert not config.exists()


def test_a_keyring_that_refuses_the_secret_is_said_with_what_exists(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    """Graph hands the secret out once: when the keyring refuses it, init says the
    secret is kept nowhere, and what exists and how to remove it (exit 5)."""
    env, emu, config = stack
    env.env.update(
        PYTHON_KEYRING_BACKEND="refusing_keyring.RefusingKeyring",
        PYTHONPATH=str(SUPPORT),
    )
    done = env.run(
        *scripted_init(emu),
        *("--graph-token-file", str(admin_token_file(emu, tmp_path)), "--agent-name", "bot"),
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 5, done.stderr
    assert "the keyring refused the blueprint's secret (PasswordSetError)" in done.stderr
    assert "the secret is kept nowhere" in done.stderr
    assert "init did not finish; these exist now:" in done.stderr
    assert "blueprint:" in done.stderr and "/beta/applications/" in done.stderr
    assert not config.exists()


def test_a_token_file_others_can_read_or_an_expired_token_is_refused(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    env, emu, config = stack
    path = admin_token_file(emu, tmp_path)
    path.chmod(0o644)
    common = [
        *scripted_init(emu),
        *("--agent-name", "bot", "--credential", "secret-file"),
    ]
    done = env.run(*common, "--graph-token-file", str(path), timeout=RUN_TIMEOUT_S)
    assert done.returncode == 5, done.stderr
    assert str(path) in done.stderr and "readable" in done.stderr
    path.chmod(0o600)
    header = {"alg": "none", "typ": "JWT"}
    expired = jwt.encode(
        {"exp": int(time.time()) - 60, "oid": "x", "scp": "x", "tid": emu.tenant_id},
        key="",
        algorithm="none",
        headers=header,
    )
    path.write_text(expired + ".sig" if expired.count(".") == 1 else expired + "sig")
    done = env.run(*common, "--graph-token-file", str(path), timeout=RUN_TIMEOUT_S)
    assert done.returncode == 2, done.stderr
    assert "has expired" in done.stderr
    assert not config.exists()


def test_an_existing_profile_is_never_overwritten(
    stack: tuple[Env, Emulator, Path], tmp_path: Path
) -> None:
    env, emu, config = stack
    config.parent.mkdir(parents=True, mode=0o700)
    config.write_text('# mine\n[profiles.bot]\ntenant_id = "contoso.example"\n')
    config.chmod(0o600)
    done = env.run(
        *scripted_init(emu),
        "--graph-token-file",
        str(admin_token_file(emu, tmp_path)),
        "--agent-name",
        "bot",
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 2, done.stderr
    assert "already exists" in done.stderr
    assert config.read_text().startswith("# mine\n")


def test_end_of_input_aborts_with_nothing_created(stack: tuple[Env, Emulator, Path]) -> None:
    env, _, config = stack
    done = env.run("init", stdin="", timeout=RUN_TIMEOUT_S)
    assert done.returncode == 130, done.stderr
    assert "aborted; nothing was created" in done.stderr
    assert not config.exists()


def test_the_init_credential_kinds_match_the_wizard() -> None:
    """The stdlib client's copy, tied to the daemon-side wizard's."""
    from agentid_client.commands import INIT_CREDENTIALS
    from agentid_daemon.provision.init_answers import CREDENTIAL_NAMES

    assert INIT_CREDENTIALS == CREDENTIAL_NAMES
