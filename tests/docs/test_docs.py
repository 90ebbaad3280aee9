"""The repository stands alone: its docs exist, link within it, and match the code."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from tooling import ROOT

from agentid_client.contract import TOKEN_OPTIONS
from agentid_daemon.api.routes import Api, ApiState
from agentid_daemon.core import errors

DOCS = ("design.md", "api.md", "configuration.md", "systemd.md", "INTERNALS.md")


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_file_refers_outside_the_repository() -> None:
    # Built from parts so that this file does not match itself.
    needles = ("../" + "shared", "shared/" + "DESIGN", "DESIGN" + ".md")
    offenders = []
    for path in tracked_files():
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert offenders == []


@pytest.mark.parametrize("name", DOCS)
def test_doc_exists(name: str) -> None:
    assert (ROOT / "docs" / name).read_text().startswith("# ")


def test_relative_links_resolve() -> None:
    broken = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_license_matches_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


@pytest.mark.parametrize("unit", ["agentid-helper.service", "agentid-helper.socket"])
def test_units_document_with_a_man_page(unit: str) -> None:
    lines = (ROOT / "systemd" / unit).read_text().splitlines()
    docs = [line.partition("=")[2] for line in lines if line.startswith("Documentation=")]
    assert docs == ["man:agentid-helper(1)"]


def api_routes() -> list[tuple[str, str]]:
    api = Api(ApiState(broker=None, metrics=None, config=None))  # type: ignore[arg-type]
    return api.routes()


@pytest.mark.parametrize(("method", "path"), api_routes())
def test_api_doc_names_every_route(method: str, path: str) -> None:
    assert f"`{method} {path}`" in (ROOT / "docs" / "api.md").read_text()


def error_codes() -> list[str]:
    codes = {
        cls.error_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AgentIdError)
    }
    transient = errors.IdentityProviderError("x", transient=True).error_code
    protocol = {"not_found", "method_not_allowed", "forbidden"}  # answered by protocol.py
    return sorted(codes | {transient} | protocol)


@pytest.mark.parametrize("code", error_codes())
def test_api_doc_names_every_error_code(code: str) -> None:
    assert f"`{code}`" in (ROOT / "docs" / "api.md").read_text()


def environment_rows() -> str:
    text = (ROOT / "docs" / "configuration.md").read_text()
    return text[text.index("## Environment") :]


def variables_read_by_the_code() -> list[str]:
    found: set[str] = set()
    for package in ("daemon", "client"):
        for path in (ROOT / package).rglob("*.py"):
            found.update(re.findall(r"\"((?:AGENTID_HELPER|AZURE)_[A-Z_]+)\"", path.read_text()))
    return sorted(found)


@pytest.mark.parametrize("variable", variables_read_by_the_code())
def test_every_environment_variable_the_code_reads_is_documented(variable: str) -> None:
    assert f"`{variable}`" in environment_rows()


def test_the_clients_environment_help_is_in_the_reference() -> None:
    from agentid_client.commands import ENVIRONMENT

    for name, _ in ENVIRONMENT:
        assert f"`{name}`" in environment_rows()


@pytest.mark.parametrize("option", TOKEN_OPTIONS)
def test_api_doc_has_a_row_for_every_token_option(option: str) -> None:
    assert f"| `{option}` |" in (ROOT / "docs" / "api.md").read_text()


def error_table_rows() -> list[tuple[int, str, int]]:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| status | `error` | when | client exit code |") :]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((int(cells[0]), cells[1].strip("`"), int(cells[-1])))
    return rows


@pytest.mark.parametrize(("status", "code", "exit_code"), error_table_rows())
def test_api_doc_exit_codes_are_the_clients(status: int, code: str, exit_code: int) -> None:
    from agentid_client.failures import from_response

    assert from_response(status, {"error": code}).exit_code == exit_code
