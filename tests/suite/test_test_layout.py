"""The test tree mirrors the code, and stays importable the way pytest imports it.

Test modules live in folders named after what they exercise (tests/daemon/<sub-package>,
tests/client, tests/emulator, ...), helpers in tests/support alone (on ``sys.path``
through pyproject's pytest ``pythonpath``). pytest's default import mode imports each
test module by its basename, so two files of one name in different folders would
collide; an ``__init__.py`` would change how every module is named.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tooling import ROOT, SUPPORT, TESTS

#: The folders of test modules beside the mirrors of the packages.
OTHER_FOLDERS = frozenset({"docs", "integration", "reliability", "suite", "support"})
#: Scripts the integration tests run by path (not imported, not helpers).
SDK_APPS = TESTS / "integration" / "sdk_apps"


def _python_files() -> list[str]:
    return sorted(
        str(path.relative_to(TESTS)) for path in TESTS.rglob("*.py") if SDK_APPS not in path.parents
    )


def test_no_test_module_sits_flat_in_tests() -> None:
    flat = [path.name for path in TESTS.glob("*.py")]
    assert flat == ["conftest.py"]


def test_test_module_basenames_are_unique_and_no_folder_is_a_package() -> None:
    names = Counter(rel.rsplit("/", 1)[-1] for rel in _python_files())
    assert not {name: n for name, n in names.items() if n > 1 and name != "conftest.py"}
    assert "__init__.py" not in names


def test_helpers_live_in_tests_support_only() -> None:
    def is_test_module(name: str) -> bool:
        return name.startswith("test_") or name == "conftest.py"

    stray = [rel for rel in _python_files() if not is_test_module(rel.rsplit("/", 1)[-1])]
    assert all(rel.startswith("support/") for rel in stray), stray
    assert not [path.name for path in SUPPORT.glob("test_*.py")]


def _folders(parent: Path) -> set[str]:
    return {path.name for path in parent.iterdir() if path.is_dir() and path.name != "__pycache__"}


def test_the_folders_name_the_code_they_exercise() -> None:
    daemon_packages = {
        path.parent.name for path in (ROOT / "daemon" / "agentid_daemon").glob("*/__init__.py")
    }
    assert _folders(TESTS) <= {"daemon", "client", "emulator"} | OTHER_FOLDERS
    daemon_folders = _folders(TESTS / "daemon")
    assert daemon_folders <= daemon_packages, daemon_folders - daemon_packages
