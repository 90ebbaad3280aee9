"""Descriptors an autostarting client hands its daemon, named in the environment.

The client (``agentid_client.autostart.spawn``) makes exactly these
inheritable for the exec and names each in a variable of ``contract``:
the start report pipe, the first answer's socket pair and its start lock.
Stdlib ``os`` only: the engine fork takes one before any other import.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported before the engine fork
if TYPE_CHECKING:
    from collections.abc import MutableMapping


def take_fd(environ: MutableMapping[str, str], name: str) -> int | None:
    """The descriptor named by ``name`` in ``environ`` (the name forgotten: no child
    inherits it), made close-on-exec; None when missing, malformed or closed."""
    raw = environ.pop(name, "")
    if not raw.isdigit():
        return None
    fd = int(raw)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return None
    return fd
