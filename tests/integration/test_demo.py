"""scripts/demo.py runs end to end and shows what the README promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tooling import ROOT

from agentid_emulator.directory import DEMO_BLUEPRINT_APP_ID
from agentid_emulator.jwt_tokens import TOKEN_EXCHANGE_APP_ID


@pytest.mark.timeout(180)
def test_demo_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_HELPER")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.rstrip().endswith("demo: ok")
    # OBO: the user token is for the blueprint, with the scope it exposes.
    assert f'"aud": "{DEMO_BLUEPRINT_APP_ID}", "scp": "access_agent"' in out
    # The managed identity's token, then the blueprint's own token with it.
    assert f'"aud": "{TOKEN_EXCHANGE_APP_ID}"' in out
    assert '"blueprint_app": 1, "managed_identity": 1' in out
    assert list(tmp_path.iterdir()) == []  # the demo cleans up after itself
