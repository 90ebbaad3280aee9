"""The parent's side of an autostarted daemon's first answer: judge the first request.

Right after the fork (:mod:`.engine_fork`), while the engine host imports
MSAL, the parent resolves the request the client told
(``contract.WARM_REQUEST_ENV``) and reads the body the client wrote on its
pair (``contract.FIRST_ANSWER_FD_ENV``), and checks it with the API's own
functions (``api/bodies.py``), in the API's order: whether the host may
answer it, and with how much validity left at least. The verdict goes to the
host as a :class:`.first_answer.Foresight`; the host then needs neither the
configuration nor the API (:mod:`.first_answer` says why). The daemon then
serves with the configuration read here (:class:`FirstRequest`).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from agentid_client.contract import FIRST_REQUEST_MAX_BYTES, TOKEN_OPTIONS

from ..api.bodies import parse_json_object, resolve, selection_fields, token_request_options
from ..config.loader import Config, default_config_path, load_config
from ..config.watch import FileSignature, file_signature
from ..core.errors import AgentIdError
from ..core.models import TokenRequest
from .first_answer import Foresight

#: How long the parent waits for the request's EOF: the client wrote it and shut
#: its side before the daemon existed, so it is there; one that did not gets no answer.
READ_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class FirstRequest:
    """What the parent made of the first request right after the fork."""

    #: For the engine host (first_answer.py).
    foresight: Foresight
    #: The configuration read for it (the default file: an autostarted daemon is
    #: given no --config) and that file's signature taken before the read; the
    #: daemon serves with it (``app.main``), so the first answer and the daemon
    #: agree however soon the file changes. None when it could not be read.
    config: Config | None = None
    signature: FileSignature = None


def foresee(raw_request: str, answer_fd: int | None) -> FirstRequest:
    """The configuration read, the told request resolved with it, and the verdict
    on the body on the client's pair ``answer_fd`` (read here, not closed). Nothing
    foreseen when the told request cannot be resolved: the first call meets the
    reason again, and reports it (a configuration error: the daemon's own start)."""
    try:
        signature = file_signature(str(default_config_path()))
        config = load_config()
    except Exception:
        return FirstRequest(Foresight())
    try:
        from agentid_client import jsonlite

        fields = jsonlite.loads(raw_request)
        if not isinstance(fields, dict):
            return FirstRequest(Foresight(), config, signature)
        claims = fields.pop("claims", None) is not None
        req = config.resolve_selection(fields)
    except Exception:
        return FirstRequest(Foresight(), config, signature)
    min_validity_s = None
    if answer_fd is not None and not claims:
        body = read_request(answer_fd)
        try:
            if body is not None:
                min_validity_s = answerable(body, config, req, time.time())
        except Exception:  # a bug here must not stop the start: the daemon answers
            min_validity_s = None
    return FirstRequest(Foresight(req, claims, min_validity_s), config, signature)


def read_request(fd: int) -> bytes | None:
    """The client's request body on its pair ``fd``, read to its EOF; None when it is
    longer than ``FIRST_REQUEST_MAX_BYTES``, does not end in time or the pair broke."""
    pair = socket.socket(fileno=fd)
    try:
        pair.settimeout(READ_TIMEOUT_S)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = pair.recv(1 << 16)
            except OSError:
                return None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > FIRST_REQUEST_MAX_BYTES:
                return None
            chunks.append(chunk)
    finally:
        pair.detach()  # the descriptor stays open: its caller closes it


def answerable(body: bytes, config: Config, expected: TokenRequest, now: float) -> float | None:
    """The ``min_validity_s`` the request ``body`` asks for, when the host may answer
    it with the token it makes for ``expected``: a valid ``POST /v1/token`` body (as
    the API checks it, at ``now``) that asks for no claims challenge and resolves to
    that very request; None otherwise (the daemon answers it, errors included)."""
    try:
        obj = parse_json_object(body, allow_empty=True)
        min_validity_s, _force_refresh, claims = token_request_options(obj, now)
        req = resolve(config, selection_fields(obj, extra=TOKEN_OPTIONS))
    except AgentIdError:
        return None
    if claims is not None or req != expected:
        return None
    return min_validity_s
