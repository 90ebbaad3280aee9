"""The config schema is the one source of the key sets, validation and reference docs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from tooling import ROOT

from agentid_client import contract
from agentid_daemon.config import loader as config
from agentid_daemon.config import schema as config_schema
from agentid_daemon.config.schema import SCHEMA, keys
from agentid_daemon.config.values import DaemonSettings, Profile


def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def test_profile_fields_are_the_profile_keys() -> None:
    assert field_names(Profile) == keys("profile")


def test_defaults_take_the_profile_keys() -> None:
    assert keys("defaults") == keys("profile")


def test_daemon_settings_are_the_daemon_keys() -> None:
    assert field_names(DaemonSettings) == keys("daemon")


def test_request_keys_are_the_clients_selection_fields() -> None:
    # The stdlib client cannot import the schema: this ties the two lists.
    assert keys("request") == contract.SELECTION_FIELDS


def test_config_key_sets_derive_from_the_schema() -> None:
    assert keys("profile") == config.PROFILE_KEYS
    assert keys("request") == config.REQUEST_KEYS
    assert keys("daemon") == config.DAEMON_KEYS


@pytest.mark.parametrize("key", SCHEMA, ids=lambda k: f"{sorted(k.where)[0]}.{k.name}")
def test_every_key_is_documented(key: config_schema.Key) -> None:
    assert key.doc.strip()
    assert key.type.strip()
    assert key.where


@pytest.mark.parametrize("doc", ["docs/configuration.md", "docs/api.md"])
def test_reference_tables_match_the_schema(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert "<!-- schema:" in text
    assert config_schema.splice_reference(text) == text, (
        f"{doc} is stale: run .venv/bin/python scripts/gen_docs.py"
    )


def test_configuration_doc_names_every_file_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for where in ("top", "daemon", "profile", "git"):
        assert f"<!-- schema:{where} -->" in text


def test_unknown_schema_section_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        config_schema.splice_reference("<!-- schema:nope -->\n<!-- /schema -->")


def test_no_import_cycle_between_config_and_config_file() -> None:
    code = (
        "import sys, agentid_daemon.config.file\n"
        "assert 'agentid_daemon.config.loader' not in sys.modules, 'config_file imports config'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
