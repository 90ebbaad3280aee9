"""What the client checks before it trusts a socket with a request.

A request may carry a user token (OBO) and its answer is a token the caller
will use, so the client talks only to its own user's daemon:

1. before connecting, the socket's directory passes the private-directory
   rule (:mod:`.private_dir`, the same rule the daemon applies); a missing
   directory is fine when its ancestors are (autostart creates it);
2. after connecting, the listener's ``SO_PEERCRED`` uid is ours.

Either failure is exit 3 with one line naming the path, its owner and what
to do. Nothing is sent before both checks pass.
"""

from __future__ import annotations

import _socket
import os

from .failures import DaemonUnreachable
from .hotpath import peer_uid as peer_uid
from .private_dir import describe_uid, dir_problem, parents_problem

WHAT_TO_DO = (
    "set XDG_RUNTIME_DIR to a private directory of yours (mode 0700), "
    "or AGENTID_HELPER_SOCKET to a socket path inside one"
)


class Untrusted(DaemonUnreachable):
    """The socket is not provably our own daemon's: nothing was sent."""

    def __init__(self, message: str):
        super().__init__(message)


def check_socket_dir(socket_path: str) -> None:
    """Raise :class:`Untrusted` unless the socket's directory is ours and private."""
    directory = os.path.dirname(os.path.abspath(socket_path))
    exists = os.path.lexists(directory)
    reason = dir_problem(directory) if exists else parents_problem(directory)
    if reason is not None:
        raise Untrusted(f"refusing the socket directory {directory}: {reason}; {WHAT_TO_DO}")


def check_peer(sock: _socket.socket, socket_path: str) -> None:
    """Raise :class:`Untrusted` unless the daemon on ``sock`` runs as our uid."""
    uid, me = peer_uid(sock), os.geteuid()
    if uid != me:
        raise Untrusted(
            f"refusing the daemon at {socket_path}: it runs as {describe_uid(uid)}, "
            f"not as {describe_uid(me)}; {WHAT_TO_DO}"
        )
