"""Fuzz the client's untrusted inputs: git's credential lines and KUBERNETES_EXEC_INFO.

The only exception allowed out of the parsers is the documented
``ClientError`` (a usage/input error with an exit code); the CLI must turn
any input into an exit code and one error line, never a traceback. No daemon
runs here: the socket path points at nothing and autostart is off, so a
request that gets as far as the daemon ends in exit 3.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rel_stack import helper_bin, short_tempdir

from agentid_client import gitcred
from agentid_client.cli import CLI
from agentid_client.failures import EXIT_USAGE, ClientError
from agentid_client.formats import EXEC_APIS, exec_api_version

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SUBPROCESS_FUZZ = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SUBPROCESS_TIMEOUT_S = 20

# Exit codes the CLI may use for hostile input (docs/design.md + failures.py):
# 0 not ours / ignored, 1 a ClientError without a specific code (input too
# large), 2 usage, 3 no daemon.
CLIENT_EXITS = (0, 1, 2, 3)

GIT_KEYS = (
    "protocol",
    "host",
    "path",
    "url",
    "username",
    "password",
    "capability[]",
    "wwwauth[]",
    "authtype",
    "credential",
    "state[]",
    "ephemeral",
    "capability",
    "host[]",
    "url[]",
    "path[]",
    "password_expiry_utc",
)


class ClientEnv(dict[str, str]):
    """The environment for client subprocesses (a dict with a short repr for reports)."""

    def __repr__(self) -> str:
        return f"<ClientEnv socket={self.get('AGENTID_HELPER_SOCKET')}>"


@pytest.fixture(scope="module")
def client_env() -> Iterator[ClientEnv]:
    """No daemon, no autostart, a config mapping git hosts to a profile."""
    with short_tempdir() as root:
        config = Path(root) / "config.toml"
        config.write_text(
            '[git."git.example.test"]\nprofile = "app"\n'
            '[git."127.0.0.1:8443/team"]\nprofile = "team"\n'
        )
        env = {
            "AGENTID_HELPER_CONFIG": str(config),
            "AGENTID_HELPER_SOCKET": str(Path(root) / "none.sock"),
            "AGENTID_HELPER_NO_AUTOSTART": "1",
        }
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            yield ClientEnv(os.environ)


# ---- git credential lines -------------------------------------------------------


@st.composite
def git_input(draw: st.DrawFn) -> str:
    """Plausible attribute lines mixed with junk, CRs, blank lines and no-newline endings."""
    lines = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(GIT_KEYS), st.text(max_size=40)).map("=".join),
                st.tuples(
                    st.sampled_from(["url", "host"]),
                    st.sampled_from(
                        [
                            "https://git.example.test/a/b",
                            "http://127.0.0.1:8443/team/x",
                            "https://u@h:1/",
                            "https://",
                            "://x",
                            "https://[::1]/x",
                            "file:///etc",
                            "git.example.test",
                            "http://[::1",
                            "https://GIT.example.TEST:443/",
                        ]
                    ),
                ).map("=".join),
                st.text(max_size=60),
                st.just(""),
            ),
            max_size=12,
        )
    )
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return sep.join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@FUZZ
@given(text=git_input())
@example(text="host[]=git.example.test\nprotocol=https\n")
@example(text="url[]=https://git.example.test/\n")
def test_git_parse_request(text: str) -> None:
    """parse_request and everything the CLI does with its result before the network."""
    try:
        attrs = gitcred.parse_request(io.StringIO(text))
    except ClientError:
        return
    assert isinstance(attrs, dict)
    mapping = {"git.example.test": "app", "127.0.0.1:8443/team": "team"}
    profile = gitcred.profile_for(attrs, mapping)
    assert profile in (None, "app", "team")
    gitcred.protocol_allowed(attrs)
    answer = gitcred.answer_get(
        attrs, profile or "app", {"access_token": "tok", "expires_on": 1_800_000_000}
    )
    assert answer.endswith("\n")


def test_git_parse_request_size_bound() -> None:
    with pytest.raises(ClientError, match="too large"):
        gitcred.parse_request(io.StringIO("host=" + "x" * (gitcred.MAX_INPUT_BYTES + 1) + "\n"))


@FUZZ
@given(text=git_input(), operation=st.sampled_from(["get", "store", "erase", "x", ""]))
def test_git_credential_command(client_env: ClientEnv, text: str, operation: str) -> None:
    """The whole ``git-credential`` command in process: an exit code, never an exception."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["git-credential", operation] if operation else ["git-credential"]
    code = CLI(stdin=io.StringIO(text), stdout=out, stderr=err).run(argv)
    assert code in CLIENT_EXITS, (code, err.getvalue())
    if code:
        assert err.getvalue().startswith("agentid-helper: error: "), err.getvalue()
    assert "tok" not in out.getvalue()


@SUBPROCESS_FUZZ
@given(data=st.binary(max_size=600))
@example(data=b"host=git.example.test\nprotocol=https\n\xff\xfe\n")
def test_git_credential_bytes_subprocess(client_env: ClientEnv, data: bytes) -> None:
    """Real stdin bytes (invalid UTF-8 too) into the real console script."""
    proc = subprocess.run(
        [helper_bin("agentid-helper"), "git-credential", "get"],
        input=data,
        capture_output=True,
        env=client_env,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert proc.returncode in CLIENT_EXITS, proc.stderr[-2000:]
    assert b"Traceback" not in proc.stderr, proc.stderr[-2000:]


# ---- KUBERNETES_EXEC_INFO -----------------------------------------------------------

ENV_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), ENV_TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(ENV_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def exec_infos(draw: st.DrawFn) -> str:
    import json

    kind = draw(st.sampled_from(["object", "value", "text", "nested"]))
    if kind == "object":
        obj = draw(
            st.dictionaries(
                st.sampled_from(["apiVersion", "kind", "spec", "x"]),
                st.one_of(JSON_VALUES, st.sampled_from(EXEC_APIS), st.just("ExecCredential")),
                max_size=4,
            )
        )
        return json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if kind == "value":
        return json.dumps(draw(JSON_VALUES))
    if kind == "nested":
        depth = draw(st.integers(1, 3000))
        return "[" * depth + "]" * draw(st.integers(0, depth))
    return draw(ENV_TEXT)


@FUZZ
@given(info=exec_infos())
@example(
    info='{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",'
    ' "spec": {"interactive": false}}'
)
@example(info='{"apiVersion": NaN}')
def test_exec_api_version(info: str) -> None:
    try:
        version = exec_api_version(info)
    except ClientError as exc:
        assert exc.exit_code == EXIT_USAGE
        assert exc.message.startswith("KUBERNETES_EXEC_INFO"), exc.message
        return
    assert version in EXEC_APIS


@SUBPROCESS_FUZZ
@given(info=exec_infos())
@example(info='{"apiVersion": "client.authentication.k8s.io/v1"}')
def test_kubectl_credential_subprocess(client_env: ClientEnv, info: str) -> None:
    """The real console script: bad info is exit 2 with one line; good info reaches for the
    daemon (exit 3 here, there is none)."""
    proc = subprocess.run(
        [helper_bin("agentid-helper"), "kubectl-credential", "--profile", "app"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        env={**client_env, "KUBERNETES_EXEC_INFO": info},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode in (EXIT_USAGE, 3), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("agentid-helper: error: "), proc.stderr[-2000:]
    assert proc.stdout == ""


# ---- regressions found by the fuzzers above (kept small and named) ------------------


@pytest.mark.parametrize(
    "text",
    [
        "capability=authtype\ncapability[]=state\nprotocol=https\nhost=git.example.test\n",
        "wwwauth=x\nwwwauth[]=y\n",
    ],
)
def test_git_scalar_then_list_attribute(client_env: ClientEnv, text: str) -> None:
    """``key=v`` then ``key[]=w``: the helper must not crash (AttributeError on str.append)."""
    out, err = io.StringIO(), io.StringIO()
    code = CLI(stdin=io.StringIO(text), stdout=out, stderr=err).run(["git-credential", "get"])
    assert code in CLIENT_EXITS, (code, err.getvalue())


@pytest.mark.parametrize("info", ["[" * 3000, '{"apiVersion": ' + "[" * 3000 + "]" * 3000 + "}"])
def test_exec_info_deep_nesting_is_usage_error(info: str) -> None:
    """jsonlite.loads raises RecursionError (not ValueError) on deeply nested JSON."""
    try:
        exec_api_version(info)
    except ClientError as exc:
        assert exc.exit_code == EXIT_USAGE
    except RecursionError:
        pytest.fail("exec_api_version raised RecursionError on deeply nested JSON")
    else:
        pytest.fail("deeply nested KUBERNETES_EXEC_INFO was accepted")
