"""Credential files are regular files: no FIFO, device or huge file holds a thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agentid_daemon.core import secret_files
from agentid_daemon.core.errors import ConfigurationError
from agentid_daemon.core.models import CredentialSpec
from agentid_daemon.idp.credentials import load_client_credential

KINDS = ("secret_file", "certificate_file", "federated_token_file")


def load_bounded(spec: CredentialSpec) -> BaseException | object:
    """load_client_credential in a thread, waited for a bounded time: a hang is a failure."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(load_client_credential(spec))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome, f"reading {spec.kind} {spec.location} hung"
    return outcome[0]


@pytest.mark.parametrize("kind", KINDS)
def test_fifo_fails_at_once(tmp_path: Path, kind: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    result = load_bounded(CredentialSpec(kind, str(fifo)))
    assert isinstance(result, ConfigurationError)
    assert f"{fifo} is a FIFO, not a regular file" in result.description


@pytest.mark.parametrize(
    ("path", "kind"), [("/dev/zero", "a character device"), ("/dev/null", "a character device")]
)
def test_devices_fail_at_once(path: str, kind: str) -> None:
    result = load_bounded(CredentialSpec("secret_file", path))
    assert isinstance(result, ConfigurationError)
    assert f"is {kind}" in result.description


def test_directory_and_size_cap(tmp_path: Path) -> None:
    result = load_bounded(CredentialSpec("secret_file", str(tmp_path)))
    assert isinstance(result, ConfigurationError)
    assert "is a directory" in result.description
    big = tmp_path / "big"
    big.write_bytes(b"x" * (secret_files.MAX_CREDENTIAL_BYTES + 1))
    big.chmod(0o600)
    result = load_bounded(CredentialSpec("secret_file", str(big)))
    assert isinstance(result, ConfigurationError)
    assert "larger than 64 KiB" in result.description
    edge = tmp_path / "edge"
    edge.write_bytes(b"y" * (secret_files.MAX_CREDENTIAL_BYTES - 1) + b"\n")  # at the cap
    edge.chmod(0o600)
    assert load_bounded(CredentialSpec("secret_file", str(edge))) == "y" * 65535


def test_a_read_that_hangs_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hung filesystem: the engine thread gives up after the timeout, the message says so."""
    release = threading.Event()

    def stuck(path: str, *, secret: bool, max_bytes: int) -> bytes:
        release.wait(30)
        return b""

    monkeypatch.setattr(secret_files, "read_trusted", stuck)
    try:
        with pytest.raises(ConfigurationError, match=r"did not answer within 0.2 s"):
            secret_files.read_credential_file(str(tmp_path / "s"), "secret file", timeout_s=0.2)
    finally:
        release.set()


def test_regular_file_still_reads_with_crlf(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_bytes(b"value-1\r\n")
    secret.chmod(0o600)
    assert load_bounded(CredentialSpec("secret_file", str(secret))) == "value-1"


def test_ca_bundle_others_can_change_is_refused_with_the_fix(tmp_path: Path) -> None:
    """A CA others can write would let them stand in for Entra: refused before use."""
    import ssl

    from agentid_daemon.idp.msal_http import TrustStore

    ca = tmp_path / "ca.pem"
    root = ssl.create_default_context().get_ca_certs(binary_form=True)[0]
    ca.write_text(ssl.DER_cert_to_PEM_cert(root))
    ca.chmod(0o644)  # readable by all is fine: a CA bundle holds no secret
    store = TrustStore()
    assert store.context(str(ca)).cert_store_stats()["x509_ca"] == 1
    ca.chmod(0o664)
    with pytest.raises(ConfigurationError) as err:
        store.context(str(ca))
    assert err.value.description == (
        f"ca_bundle {ca} is writable by group or others (mode 0664); fix: chmod go-w {ca}"
    )
