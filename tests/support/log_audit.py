"""Session-wide audit: no token or secret in any log line of the whole test run.

Every test's captured output (stdout, stderr, log records) is scanned as the
test finishes, and every log file the run left under pytest's base temp
directory (daemon, emulator, autostart and server logs) is scanned when the
session ends; tests that keep logs elsewhere (short socket paths under /tmp)
hand them to :func:`scan_file` before deleting them. A finding fails the run
and names where it was found, never the value.

What counts as a leak: anything shaped like a JWT (every access token in this
project is one: T1, T2, resource tokens, user tokens), anything shaped like a
refresh token (Entra's are opaque ``0.A...``/``1.A...`` strings, and so are
the emulator's; the broker tests' fake engine issues ``rt-secret-N``), and the
known test secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# header.payload.signature, each base64url; JWT headers and payloads are JSON
# objects, so both start with "eyJ" ('{"').
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")

# Entra refresh tokens: "0.A" or "1.A" then hundreds of base64url characters.
REFRESH_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_.-])[01]\.A[A-Za-z0-9_-]{80,}|\brt-secret-\d+\b")

KNOWN_SECRETS = (
    "demo-blueprint-secret~not-a-real-secret",  # the emulator's --demo blueprint
    "engine-test-secret~not-real",  # tests/support/engine_two_agents_seed.toml
    "example-secret-1",  # tests/support/emulator_seed_example.toml
    "example-secret-2",
)

LOG_NAME_RE = re.compile(r"(log|\.err|\.out|stderr|stdout)", re.IGNORECASE)


@dataclass
class LogAudit:
    findings: list[str] = field(default_factory=list)
    scanned_files: int = 0
    scanned_sections: int = 0

    def scan_text(self, text: str, where: str) -> None:
        if JWT_RE.search(text):
            self.findings.append(f"{where}: a JWT (token) appears")
        if REFRESH_TOKEN_RE.search(text):
            self.findings.append(f"{where}: a refresh token appears")
        for secret in KNOWN_SECRETS:
            if secret in text:
                self.findings.append(f"{where}: a known test secret appears")

    def scan_file(self, path: Path) -> None:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return
        self.scanned_files += 1
        self.scan_text(text, str(path))

    def scan_tree(self, root: Path) -> None:
        """Scan files under ``root`` whose names say they hold logs or process output."""
        if not root.exists():
            return
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and LOG_NAME_RE.search(path.name):
                self.scan_file(path)


AUDIT = LogAudit()


def scan_file(path: Path) -> None:
    """For tests whose logs live outside the base temp dir: scan before deleting."""
    AUDIT.scan_file(Path(path))


def scan_tree(root: Path) -> None:
    AUDIT.scan_tree(Path(root))
