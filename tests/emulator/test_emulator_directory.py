"""The demo directory and TOML seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tooling import SUPPORT

from agentid_emulator.certs import cert_pem, new_key, self_signed_certificate, thumbprints
from agentid_emulator.directory import (
    DEMO_AGENT_APP_ID,
    DEMO_BLUEPRINT_SECRET,
    DEMO_TENANT_ID,
    SeedError,
    demo_directory,
)
from agentid_emulator.seed_file import load_seed

EXAMPLE = SUPPORT / "emulator_seed_example.toml"


def test_demo_directory() -> None:
    directory = demo_directory()
    tenant = directory.tenant(DEMO_TENANT_ID.upper())
    assert tenant is not None
    assert (
        tenant.agents[DEMO_AGENT_APP_ID].blueprint_app_id == directory.summary["blueprint_app_id"]
    )
    agent_user = tenant.find_user(upn=directory.summary["agent_user_upn"].upper())
    assert agent_user is not None
    assert agent_user.agent_identity_app_id == DEMO_AGENT_APP_ID
    human = tenant.find_user(object_id=directory.summary["user_object_id"])
    assert human is not None
    assert human.agent_identity_app_id is None
    assert DEMO_BLUEPRINT_SECRET not in repr(directory)


def test_example_seed() -> None:
    directory = load_seed(EXAMPLE)
    assert directory.summary["tenant_id"] == "22222222-2222-4222-8222-222222222222"
    assert directory.summary["agent_user_upn"] == "release-bot@fabrikam.example"
    assert directory.summary["user_upn"] == "bob@fabrikam.example"
    tenant = directory.tenant(directory.summary["tenant_id"])
    assert tenant is not None
    assert len(tenant.agents) == 2
    assert "example-secret-1" not in repr(tenant)


def test_seed_certificate_relative_path(tmp_path: Path) -> None:
    cert = self_signed_certificate(new_key(), "bp")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "bp.pem").write_bytes(cert_pem(cert))
    seed = tmp_path / "seed.toml"
    seed.write_text(
        EXAMPLE.read_text().replace(
            '# certificates = ["bp-cert.pem"]', 'certificates = ["certs/bp.pem"]'
        )
    )
    tenant = next(iter(load_seed(seed).tenants.values()))
    blueprint = next(iter(tenant.blueprints.values()))
    assert set(thumbprints(cert)) <= set(blueprint.certificates)


@pytest.mark.parametrize(
    "replace, message",
    [
        (('"example-secret-1", ', '"", '), "non-empty strings"),
        (
            ('# certificates = ["bp-cert.pem"]', 'certificates = ["missing.pem"]'),
            "cannot read certificate",
        ),
        (('upn = "bob@fabrikam.example"', 'upn = ""'), "'upn' must be a non-empty string"),
    ],
)
def test_seed_errors(tmp_path: Path, replace: tuple[str, str], message: str) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(EXAMPLE.read_text().replace(*replace))
    with pytest.raises(SeedError, match=message):
        load_seed(seed)
