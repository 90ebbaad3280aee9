#!/usr/bin/env python3
"""Write the man page and the bash/zsh completions from the command table, and
the config reference tables of docs/ from the config schema.

Run after changing a command or an option in client/agentid_client/commands.py,
or a key in daemon/agentid_daemon/config/schema.py:

    .venv/bin/python scripts/gen_docs.py

tests/docs/test_docgen.py and tests/daemon/config/test_config_schema.py fail while they are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "client"))
sys.path.insert(0, str(ROOT / "daemon"))

from agentid_client.docgen import RENDERERS  # noqa: E402
from agentid_daemon.config.schema import splice_reference  # noqa: E402

# Docs whose <!-- schema:WHERE --> blocks hold tables generated from the schema.
SCHEMA_DOCS = ("docs/configuration.md", "docs/api.md")


def main() -> int:
    renderers = dict(RENDERERS)
    for doc in SCHEMA_DOCS:
        renderers[doc] = lambda doc=doc: splice_reference((ROOT / doc).read_text())
    for relative, render in renderers.items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
