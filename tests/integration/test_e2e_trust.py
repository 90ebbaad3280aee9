"""The client and an autostarted daemon on the emulator: issue rows 5 and 11 end to end."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from client_stack import client_stack

ENGINE_THREADS = 8  # app.ENGINE_THREADS: a FIFO per thread used to wedge them all


def test_fifo_secret_files_fail_at_once_and_other_profiles_still_work(
    emulator: Any, tmp_path: Path
) -> None:
    """Row 5: secret_file at a FIFO for 8 agents: exit 5 each, at once; app still served."""
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo, 0o600)
    with client_stack(emulator, tmp_path) as env:
        with env.config.open("a") as fh:
            for i in range(ENGINE_THREADS + 1):
                fh.write(
                    f'\n[profiles.fifo{i}]\nagent_identity_app_id = "{uuid.uuid4()}"\n'
                    f'blueprint_app_id = "{emulator.blueprint_app_id}"\n'
                    f'blueprint_credential = {{ secret_file = "{fifo}" }}\n'
                )
        with ThreadPoolExecutor(max_workers=ENGINE_THREADS + 1) as pool:
            results = list(
                pool.map(
                    lambda i: env.run("get", "--profile", f"fifo{i}", timeout=60),
                    range(ENGINE_THREADS + 1),
                )
            )
        for result in results:
            assert result.returncode == 5, result.stderr
            first = result.stderr.splitlines()[0]
            assert f"{fifo} is a FIFO, not a regular file" in first, first
        app = env.run("get", "--profile", "app", timeout=60)
        assert app.returncode == 0, app.stderr


def test_expired_user_token_is_refused_not_served_from_cache(emulator: Any, tmp_path: Path) -> None:
    """Row 11: an OBO token cached for a user token stays cached; once that user token's
    exp passes, a request with it gets exit 2, not the cached OBO token."""
    user_token = emulator.user_token(emulator.user_upn, lifetime_s=5)  # default audience
    obo = ("get", "--mode", "OBO", "--user-token-file", "-", "--format", "json")
    with client_stack(emulator, tmp_path) as env:
        first = env.run(*obo, stdin=user_token + "\n")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["mode"] == "OBO"
        exp = _exp(user_token)
        while time.time() <= exp + 1:  # wait for the user token to expire (5 s lifetime)
            time.sleep(0.2)
        again = env.run(*obo, stdin=user_token + "\n")
        assert again.returncode == 2, (again.stdout[:40], again.stderr)
        assert "the user token expired at" in again.stderr.splitlines()[0]
        assert again.stdout == ""
        assert user_token not in again.stderr


def _exp(token: str) -> float:
    import base64

    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])
