"""secret set|delete against an in-memory keyring backend."""

from __future__ import annotations

import io
from collections.abc import Iterator

import keyring
import keyring.backend
import keyring.backends.fail
import pytest
from memory_keyring import MemoryKeyring

from agentid_client.failures import ClientError
from agentid_client.secretcmd import is_guid, run_secret

BP = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def memory() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def run(action: str, app_id: str | None, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_secret(action, app_id, io.StringIO(stdin), out, err)
    return code, out.getvalue(), err.getvalue()


def test_set_and_delete(memory: MemoryKeyring) -> None:
    code, out, err = run("set", BP.upper(), "s3cr3t-value\n")
    assert code == 0
    assert memory.store == {("agentid-helper", BP): "s3cr3t-value"}
    assert "s3cr3t" not in out + err
    assert run("delete", BP)[0] == 0
    assert memory.store == {}
    with pytest.raises(ClientError) as info:
        run("delete", BP)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("app_id,stdin", [(None, "x"), ("not-a-guid", "x"), (BP, "  \n")])
def test_bad_input(memory: MemoryKeyring, app_id: str | None, stdin: str) -> None:
    with pytest.raises(ClientError) as info:
        run("set", app_id, stdin)
    assert info.value.exit_code == 2
    assert memory.store == {}


def test_no_backend_names_the_fix() -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        with pytest.raises(ClientError) as info:
            run("set", BP, "x")
    finally:
        keyring.set_keyring(previous)
    assert info.value.exit_code == 5
    hints = " ".join(info.value.hints)
    assert "gnome-keyring" in hints
    assert "secret_file" in hints


def test_is_guid() -> None:
    assert is_guid(BP)
    assert is_guid(BP.upper())
    assert not any(is_guid(v) for v in ("", BP + "0", BP.replace("-", ""), "g" * 8 + BP[8:]))
