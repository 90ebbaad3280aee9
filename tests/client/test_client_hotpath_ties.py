"""The few facts agentid_client/hotpath.py copies, tied to their originals.

The hot path may not import the command table, contract.py, jsonlite or the
private-directory rule (each an import the cache hit would pay), so it holds
copies or stricter subsets of them; these tests keep them in step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agentid_client import contract, hotpath, jsonlite, paths, private_dir
from agentid_client.commands import COMMANDS, FORMATS, SELECTION_DESTS


def test_selection_flags_and_modes_are_the_command_tables() -> None:
    assert tuple("--" + d.replace("_", "-") for d in SELECTION_DESTS) == hotpath.SELECTION_FLAGS
    assert hotpath.MODES == contract.MODES
    assert hotpath.FORMATS == FORMATS
    for name in ("get", "kubectl-credential"):
        opts = COMMANDS[name].opts
        assert not COMMANDS[name].shorts
        for flag in (*hotpath.SELECTION_FLAGS, "--timeout"):
            assert opts[flag].kind == ("append" if flag == "--scope" else "value")
        assert opts["--mode"].choices == hotpath.MODES
    assert COMMANDS["get"].opts["--format"].choices == hotpath.FORMATS
    git = COMMANDS["git-credential"]
    assert {f: o.kind for f, o in git.opts.items()} == {"--profile": "value", "--timeout": "value"}


@pytest.mark.parametrize(
    "text",
    [
        '{"access_token": "t", "expires_on": 17, "stale": false, "x": null}',
        ' { "a" : "b" , "n": -0, "t": true } \n',
        "{}",
        '{"a": "b", "a": "c"}',
        '{"a": "\\u00e9"}',
        '{"a": 1.5}',
        '{"a": [1]}',
        '{"a": 01}',
        '{"a": "b"',
        '{"a": "b"} x',
        '{"a": "\x01"}',
        '{"a": "é"}',
        "[]",
        '{"a": tru}',
    ],
)
def test_flat_json_decodes_as_jsonlite_or_refuses(text: str) -> None:
    try:
        expected = jsonlite.loads(text)
    except ValueError:
        expected = None
    try:
        got = hotpath.flat_json(text)
    except ValueError:
        return  # refused: the full client's jsonlite decides
    assert got == expected and isinstance(expected, dict)


def test_plain_private_is_a_subset_of_the_private_dir_rule() -> None:
    base = Path(tempfile.mkdtemp(prefix="aidc-"))
    try:
        cases = {"private": 0o700, "open": 0o755, "group": 0o770, "strict": 0o500}
        for name, mode in cases.items():
            (base / name).mkdir()
            os.chmod(base / name, mode)
        (base / "theirs").mkdir(mode=0o700)
        os.chown(base / "theirs", 65534, 65534)
        (base / "link").symlink_to(base / "private")
        (base / "wide").mkdir(mode=0o777)
        os.chmod(base / "wide", 0o777)
        (base / "wide" / "inner").mkdir(mode=0o700)
        (base / "file").write_text("")
        me = os.geteuid()
        for entry in [*base.iterdir(), base / "wide" / "inner", base / "absent"]:
            if hotpath.plain_private(str(entry), me):
                assert private_dir.dir_problem(str(entry)) is None, entry
        assert hotpath.plain_private(str(base / "private"), me)
        assert not hotpath.plain_private(str(base / "wide" / "inner"), me)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_plain_socket_path_is_paths_socket_path(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(prefix="aidc-"))
    try:
        (base / paths.APP_NAME).mkdir(mode=0o700)
        me = os.geteuid()
        for env in (
            {"AGENTID_HELPER_SOCKET": str(base / "d.sock")},
            {"AGENTID_HELPER_SOCKET": "~/x.sock"},
            {"AGENTID_HELPER_SOCKET": f"{base}/./d.sock"},
            {"XDG_RUNTIME_DIR": str(base)},
            {"XDG_RUNTIME_DIR": str(base) + "/"},
            {"XDG_RUNTIME_DIR": "relative"},
            {},
        ):
            monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            found = hotpath.plain_socket_path(me)
            if found is not None:
                assert found == paths.socket_path(), env
        monkeypatch.delenv("AGENTID_HELPER_SOCKET", raising=False)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
        assert hotpath.plain_socket_path(me) == f"{base}/{paths.APP_NAME}/{paths.SOCKET_NAME}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_request_bytes_frame_the_body() -> None:
    data = hotpath.request_bytes("POST", "/v1/token", b"{}")
    assert data.endswith(b"\r\n\r\n{}") and b"Content-Length: 2\r\n" in data
    assert b"Content-Length: 0" in hotpath.request_bytes("DELETE", "/v1/token", None)
