"""What the emulator's documentation must tell a developer (README, docstring)."""

from __future__ import annotations

import re

from tooling import ROOT

import agentid_emulator


def _emulator_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## The local Entra emulator")
    end = readme.index("\n## ", start + 1)
    return " ".join(readme[start:end].split())


def test_readme_says_admin_endpoints_are_unauthenticated_and_local() -> None:
    section = _emulator_section()
    assert re.search(r"admin endpoints under `/_emulator/`.*\*\*unauthenticated\*\*", section)
    assert "one developer's machine" in section
    assert "readable by you only (0600)" in section


def test_readme_teaches_the_blueprint_audience_for_obo() -> None:
    section = _emulator_section()
    assert "`api://<blueprint app id>/access_agent`" in section
    assert "never the agent identity" in section


def test_docstring_cites_what_each_fidelity_choice_follows() -> None:
    doc = " ".join((agentid_emulator.__doc__ or "").split())
    for source in (
        "agent-on-behalf-of-oauth-flow.md",
        "create-delete-agent-identities.md",
        "AgenticTokens from Console",
        "joetanx/mslab",
        "Tc (aud) == Agent ID blueprint client ID",
        "how-to-use-vm-token.md",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    ):
        assert source in doc, source
    assert "unauthenticated" in doc
    assert "Still different from real tokens" in doc
