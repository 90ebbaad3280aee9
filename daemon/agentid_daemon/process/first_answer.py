"""The engine host answers the autostarting client's first request itself.

Making the first legs ahead (:func:`.engine_host.first_legs`) took them off
the first call's path, but the answer still waited for the parent to listen:
its trio, structlog, h11 and API stack take longer to import than the host
takes to import MSAL and make the legs. So the autostarting client
(``agentid_client.autostart.ensure_daemon``) also hands the daemon one end of
a socket pair (``contract.FIRST_ANSWER_FD_ENV``) and writes its request's
body on its own end before it spawns the daemon, and the host answers it
there, before the parent listens, with the body of the 200 that
``POST /v1/token`` would have sent.

The work is split so that the host does only what it must, on the first
call's path: right after the fork the **parent** reads the body and judges
it with the API's own functions (:mod:`.first_request`: the same checks, the
same resolution against the same configuration), while the host imports
MSAL; it sends the host a :class:`Foresight`: the told request resolved,
whether a claims challenge came, and whether the body may be answered by the
host (it asks for no claims challenge and resolves to that very request) and
with how much validity left at least (``min_validity_s``; ``force_refresh``
is met by a token made from the credential up a moment ago). The **host**
makes the request's legs and, when the body may be answered and it holds the
resource token (not an error) with that much left, writes
:meth:`~..broker.seams.ServedToken.answer_for`'s body, as the broker builds
it. It imports no configuration and no API.

Anything else, an error included, gets no answer: the pair is closed without
a byte, and the client sends the request on the daemon's socket once it
listens, where the broker's calls get the same legs, or their errors, from
the host (:class:`.engine_host.Prefetched`). Nothing is answered twice and
nothing is lost: the client takes whichever comes first, the pair's answer or
the daemon's report that it listens.

A token served so is the daemon's as well. The host pins its refresh-ahead
at the earliest point the cache's rule allows (``cache/refresh_rule.py``), so
the ``refresh_on`` it answers is the one the cache keeps, and tells the
parent that it answered (:meth:`.engine_host.EngineProxy.first_answered`).
The parent puts the request through its broker before it serves
(``app.Daemon``): the broker's calls take the legs the host made, the token
is cached, and the next call is a cache hit. The identity provider sees each
leg once.

The pair is the client's own, made by ``socketpair()`` before the spawn: no
name in the filesystem; after the fork only the parent reads it (and closes
its copy) and only the host writes to it. The body may carry a user token
(an OBO request, which the host never answers); nothing here logs.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..broker.seams import ServedToken

if TYPE_CHECKING:
    from ..core.models import AcquiredToken, TokenRequest


@dataclass(frozen=True)
class Foresight:
    """What the parent tells its engine host right after the fork (:mod:`.first_request`)."""

    #: The request the client told (``contract.WARM_REQUEST_ENV``), resolved as the
    #: daemon resolves it; None when it cannot be: the host makes nothing ahead.
    request: TokenRequest | None = None
    #: A claims challenge came with it: its resource leg is made when asked.
    claims: bool = False
    #: The client's request may be answered by the host with a token that has at
    #: least this many seconds left; None: the host does not answer it.
    min_validity_s: float | None = None


def answer_body(
    req: TokenRequest, token: AcquiredToken | None, min_validity_s: float, now: float
) -> dict[str, Any] | None:
    """The 200 body ``POST /v1/token`` sends for ``req`` when ``token`` (its resource
    token, aged to ``now``, epoch seconds, its refresh pinned) has at least
    ``min_validity_s`` left; None otherwise."""
    if token is None or token.expires_in < min_validity_s:
        return None
    refresh_in = token.refresh_in if token.refresh_in is not None else token.expires_in
    served = ServedToken.of(
        req,
        token,
        expires_on=int(now + token.expires_in),
        refresh_on=int(now + refresh_in),
        source="identity_provider",
    )
    return served.answer_for(req)


def answer_on_pair(fd: int, answer: Callable[[], dict[str, Any] | None]) -> bool:
    """Write ``answer()`` on the client's pair ``fd`` (closed here) unless it is None;
    True when it was written. Whatever stops the answer (a pair broken because the
    client went on when its daemon listened, or a bug) only leaves it unanswered."""
    with socket.socket(fileno=fd) as pair:
        try:
            reply = answer()
            if reply is None:
                return False
            pair.sendall(json.dumps(reply).encode())
        except Exception:
            return False
        return True
