"""What a daemon imports before its first answer (issue 22, the first call).

An autostarted daemon answers the request that started it only after its
imports, so the heavy packages no part of that answer needs are imported
where they are used: PyJWT and cryptography by the sidecar API (only when
``sidecar_api_listen`` is set), tomlkit by ``--save-profile``, rich (and
better_exceptions) never (structlog falls back to plain tracebacks). A fresh
interpreter per check: the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: What Daemon() imports: app.py and build_components()'s late imports.
_DAEMON_START = (
    "import agentid_daemon.app, agentid_daemon.broker.broker, agentid_daemon.cache.token_cache, "
    "agentid_daemon.core.metrics, agentid_daemon.idp.engine, agentid_daemon.provision.service"
)

#: Top-level packages that must not be imported before the first answer.
NOT_BEFORE_FIRST_ANSWER = (
    "rich",
    "better_exceptions",
    "pygments",
    "tomlkit",
    "jwt",
    "cryptography",
)


def _imported_after(code: str) -> set[str]:
    listing = "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    probe = f"{code}\nimport sys, json\n{listing}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_daemon_start_leaves_out_what_the_first_answer_does_not_need() -> None:
    imported = _imported_after(_DAEMON_START)
    assert "structlog" in imported and "msal" in imported  # the probe imported the daemon
    assert imported.isdisjoint(NOT_BEFORE_FIRST_ANSWER), imported & set(NOT_BEFORE_FIRST_ANSWER)


def test_rich_stays_importable_for_the_rest_of_the_process() -> None:
    """The logging module hides rich from structlog only while structlog is imported."""
    imported = _imported_after("import agentid_daemon.core.logs\nimport rich.console")
    assert "rich" in imported


def test_structlog_uses_rich_when_it_was_already_imported() -> None:
    """Nothing is taken from a process that imported rich itself."""
    code = (
        "import rich\nimport agentid_daemon.core.logs\nimport structlog.dev\n"
        "assert structlog.dev.rich is rich"
    )
    subprocess.run([sys.executable, "-c", code], timeout=60, check=True)
