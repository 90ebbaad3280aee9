#!/usr/bin/env python3
"""Write the man page and the bash/zsh completions from the command table.

Run after changing a command or an option in client/agentid_client/commands.py:

    .venv/bin/python scripts/gen_docs.py

tests/test_docgen.py fails while the committed files differ from the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "client"))

from agentid_client.docgen import RENDERERS  # noqa: E402


def main() -> int:
    for relative, render in RENDERERS.items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
