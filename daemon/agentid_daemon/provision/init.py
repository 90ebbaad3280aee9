"""``agentid-helper init``, daemon side: ``python -m agentid_daemon.provision.init``.

The stdlib-only client parses ``init``'s flags with its command table and runs
this module with the same interpreter (it needs MSAL, tomlkit, keyring):

    python -m agentid_daemon.provision.init --options JSON [--result-fd N]

``--options`` holds the parsed flags by destination, plus ``config_path`` (the
client's config file) and ``non_interactive``; none of them is a secret. The
conversation (questions, the device code instructions, progress) goes to
stderr, the summary to stdout; on success one JSON object ``{"profile",
"user_profile", "config_path", ...}`` is written to ``--result-fd`` for the
client, which then asks the daemon for the new profile's token.

Exit codes are the client's (0, 2, 4, 5; 130 after Ctrl-C), errors its
``agentid-helper: error:`` lines (one mapping: ``failures.from_response``).
A failure after something was created prints what exists and how to remove
it (init_flow.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from agentid_client.failures import ClientError, from_response

from ..config.loader import default_config_path, load_config
from ..core.errors import AgentIdError
from ..idp.engine import Engine
from . import graph as G
from .admin_signin import AdminToken, admin_scopes, sign_in_by_device_code, token_from_file
from .init_answers import InitAnswers, Prompter, answers_from_options
from .init_credentials import CredentialPlan
from .init_flow import (
    InitIncomplete,
    InitResult,
    Made,
    create_everything,
    first_token_request,
    wait_for_first_token,
)
from .profile_file import check_writable

EXIT_INTERRUPTED = 130


def _report(exc: AgentIdError, stream: TextIO) -> int:
    return from_response(exc.http_status, exc.to_json()).report(stream)


def _say(stream: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    return say


def print_incomplete(made: tuple[Made, ...], stream: TextIO) -> None:
    """What a failed init left, in the order it was made, and how to remove each
    (newest first: an agent identity before its blueprint)."""
    if not made:
        stream.write("init: nothing was created\n")
        return
    stream.write("init did not finish; these exist now:\n")
    for item in made:
        stream.write(f"  {item.what}: {item.detail}\n")
    removals = [item.remove for item in reversed(made) if item.remove]
    if removals:
        stream.write("to remove them (or run init again with other names):\n")
        for line in removals:
            stream.write(f"  {line}\n")
    stream.flush()


def sign_in(answers: InitAnswers, engine: Engine, stderr: TextIO) -> AdminToken:
    if answers.graph_token_file:
        return token_from_file(answers.graph_token_file)
    stderr.write(
        f"Sign in as an administrator of {answers.tenant} (Agent ID Administrator or "
        "Agent ID Developer):\n"
    )
    stderr.flush()
    return sign_in_by_device_code(
        authority_host=answers.authority_host,
        tenant=answers.tenant,
        client_id=answers.client_id,
        scopes=admin_scopes(
            G.graph_resource(answers.authority_host), agent_user=bool(answers.agent_user_upn)
        ),
        session=engine.provider_session(answers.ca_bundle),
        show=_say(stderr),
    )


def summary(result: InitResult, expires_in_s: float) -> str:
    lines = [
        f"blueprint {result.blueprint_app_id}, agent identity {result.agent_identity_app_id}"
        + (f", agent user {result.agent_user_upn}" if result.agent_user_upn else ""),
        f"credential: {result.credential}",
        f"first token: ok (valid for {max(0, expires_in_s) / 60:.0f} min)",
        f"profile {result.profile} in {result.config_path}"
        + (" (the default profile)" if result.default_profile_set else ""),
        "next: agentid-helper get"
        + ("" if result.default_profile_set else f" --profile {result.profile}"),
    ]
    if result.user_profile:
        lines.append(f"      agentid-helper get --profile {result.user_profile}   # the agent user")
    return "\n".join(lines)


def run(
    options: dict[str, Any], stdin: TextIO, stdout: TextIO, stderr: TextIO
) -> tuple[int, InitResult | None]:
    """The whole init; (exit code, result when it succeeded)."""
    config_path = Path(options.get("config_path") or default_config_path()).expanduser()
    try:
        config = load_config(config_path)  # an existing file must load before init adds to it
        prompter = None if options.get("non_interactive") else Prompter(stdin, stderr)
        answers = answers_from_options(
            options,
            config_path=config_path,
            existing_profiles=tuple(config.profile_names()),
            prompter=prompter,
        )
    except AgentIdError as exc:
        return _report(exc, stderr), None
    except (EOFError, KeyboardInterrupt):
        stderr.write("\ninit: aborted; nothing was created\n")
        return EXIT_INTERRUPTED, None
    engine = Engine()
    plan = CredentialPlan(answers)
    try:
        check_writable(answers.config_path)
        plan.prepare()
        admin = sign_in(answers, engine, stderr)
    except AgentIdError as exc:
        plan.discard()
        return _report(exc, stderr), None
    except KeyboardInterrupt:
        plan.discard()
        stderr.write("\ninit: aborted; nothing was created\n")
        return EXIT_INTERRUPTED, None
    client = G.GraphClient(engine.provider_session(answers.ca_bundle), answers.graph_base)
    say = _say(stderr)
    try:
        result = create_everything(answers, admin, client, plan, say)
    except InitIncomplete as exc:
        code = (
            _report(exc.cause, stderr) if isinstance(exc.cause, AgentIdError) else EXIT_INTERRUPTED
        )
        print_incomplete(exc.made, stderr)
        return code, None
    try:
        token = wait_for_first_token(engine, first_token_request(result), say)
    except AgentIdError as exc:
        code = _report(exc, stderr)
        stderr.write(
            "init created everything and wrote the profiles, but the first token failed: "
            f"try `agentid-helper get --profile {result.profile}` again later\n"
        )
        print_incomplete(result.made, stderr)
        return code, None
    except KeyboardInterrupt:
        stderr.write(
            f"\ninit: interrupted before the first token; everything exists and the profile "
            f"{result.profile} is written\n"
        )
        return EXIT_INTERRUPTED, None
    finally:
        engine.close()
    if options.get("json"):
        stdout.write(json.dumps(result_json(result), indent=2, sort_keys=True) + "\n")
    else:
        stdout.write(summary(result, token.expires_in) + "\n")
    stdout.flush()
    return 0, result


def result_json(result: InitResult) -> dict[str, Any]:
    """What ``--json`` prints and ``--result-fd`` carries: ids and names, no secret."""
    return {
        "profile": result.profile,
        "user_profile": result.user_profile,
        "config_path": result.config_path,
        "default_profile_set": result.default_profile_set,
        "blueprint_app_id": result.blueprint_app_id,
        "agent_identity_app_id": result.agent_identity_app_id,
        "agent_user_upn": result.agent_user_upn,
        "credential": result.credential,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentid_daemon.provision.init",
        description="agentid-helper init, daemon side (run by `agentid-helper init`)",
    )
    parser.add_argument("--options", required=True, help="the parsed flags, as JSON")
    parser.add_argument("--result-fd", type=int, help="write the result JSON to this fd")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.options)
    except ValueError:
        options = None
    if not isinstance(options, dict):
        return ClientError("init: --options is not a JSON object", 2).report(sys.stderr)
    code, result = run(options, sys.stdin, sys.stdout, sys.stderr)
    if result is not None and args.result_fd is not None:
        with os.fdopen(args.result_fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(result_json(result)))
    return code


if __name__ == "__main__":
    sys.exit(main())
