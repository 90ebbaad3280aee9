"""The engine host: an autostarted daemon's first answers, from a forked child.

A client that finds no daemon starts one and waits for its first answer
(issue 22: no slower than doing the call without the daemon). Nearly all of
a daemon start is CPU: importing MSAL and requests, loading the
configuration, two tenant discoveries, and on the other side trio,
structlog, h11 and the daemon's own modules. In one process all of it is
serialized on the GIL, so a thread cannot overlap them; a second process can.

So the autostart command (``client/agentid_client/autostart.py``) runs
:func:`.engine_fork.start_from_environ` first, before any thread exists and
before any import of the daemon's. When the client told the request it is
about to send (``contract.WARM_REQUEST_ENV``) it forks:

- the **child** (the host, :func:`run_host`) imports the engine (MSAL),
  takes the request as the parent resolved it (a :class:`.first_answer.Foresight`,
  the first message on the pair), calls
  :meth:`~agentid_daemon.idp.engine.Engine.prepare` (the MSAL clients and a
  kept-alive connection to the authority) and makes the request's legs
  (:func:`first_legs`: T1, then the AutonomousApp token or T2 and the
  AutonomousUser token) before anyone asks; then it answers the broker's
  Engine calls (``broker/seams.py``) sent over a socket pair, one at a time,
  until the pair is closed. A call equal to a leg it already made gets that
  leg's outcome (:class:`Prefetched`).
- the **parent** loads the configuration and resolves the told request
  (:mod:`.first_request`) while the host imports MSAL, sends it that, then
  imports trio and the rest, listens, reports ready, and its broker runs its
  legs as always with an :class:`EngineProxy` as its engine.
  The proxy sends each call to the host until the parent's own engine is
  ready: after the host's first answer, once no call has been in flight for
  a moment, a thread imports MSAL, builds the parent's engine and prepares it
  for the agents the host served; then the proxy routes every call to it,
  closes the pair, and the host exits on EOF.

The first request's legs are then done, or under way, by the time the parent
listens, instead of starting when its request reaches the broker. And the
host answers that request itself when it can, on a socket pair the client
handed over (:mod:`.first_answer`), before the parent listens; the parent
then caches it through its broker from the same legs
(:meth:`EngineProxy.first_answered`, ``app.Daemon``).

The identity provider sees the same token requests as without the host: each
leg is made once, by one of the two engines, and the broker's cache sits
above both as always. A leg made ahead is handed out once and only to a call
equal to the one that made it (tests/daemon/process/test_engine_host.py
drives the real broker over the pair); a request the client did not tell, or
that resolves otherwise when it comes (a config file changed in between),
has its legs made when asked, and what was made ahead is dropped unused with
the host. Anything the host cannot do (a config error, an unreadable secret,
an authority that does not answer) only ends its warm-up: the call meets the
same error there and it crosses back as itself, or, when the host is gone,
the parent's own engine makes the call.

**Why pickle is safe here.** The pair is made by ``socketpair()`` before the
fork: it has no name in the filesystem, no other process can connect to it,
and both ends are close-on-exec (PEP 446), so nothing either process runs
inherits them. The only peer of each end is the same program, forked from
the same process, of the same user. The pickles carry the parent's
``Foresight`` and what the engine takes and returns (``AgentRef``,
``CredentialSpec``, strings, ``AcquiredToken``) and the exceptions it
raises, which keep their attributes (codes,
``Retry-After``, hints, transient); a traceback does not cross.

**The host's limits.** Before it reads any secret it sets RLIMIT_CORE 0 and
``PR_SET_DUMPABLE`` 0 (:func:`.limits.forbid_core_dumps`; the parent does the
same in ``app.main``); it asks the kernel for SIGKILL when the parent dies
(``PR_SET_PDEATHSIG``), so it never outlives the daemon even inside a slow
token request; it holds no listening socket (the parent binds after the
fork) and closes the autostart's ready pipe and start lock (the client waits
for the parent's report, and the lock goes with it); of the client's
descriptors it keeps only its end of the first answer's pair. Its standard
streams are ``/dev/null``: it logs nothing, so nothing it does can reach a log
line without the daemon's redaction.

A daemon not autostarted (systemd, ``agentid-helperd`` by hand, the sidecar)
never sees the variable and builds its own engine as always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from agentid_client.contract import READY_FD_ENV, START_LOCK_FD_ENV

from ..cache.refresh_rule import earliest_refresh_in
from ..core.models import AcquiredToken, Mode
from .first_answer import Foresight
from .inherited import take_fd

if TYPE_CHECKING:
    from ..core.models import AgentRef, CredentialSpec, TokenRequest
    from ..idp.engine import Engine

T = TypeVar("T")

_HEADER = struct.Struct("!I")
#: No engine call or answer comes near this; a longer frame is a broken pair.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: The proxy switches to the parent's engine once no call has been in flight
#: for this long: its MSAL import then competes with no leg of a first request.
IDLE_BEFORE_SWITCH_S = 0.05
#: ``prctl`` options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: The host's ``/proc/PID/comm``: ``pgrep agentid-helperd`` finds the daemon only.
HOST_PROCESS_NAME = "agentid-engine"
#: The host's own call on the pair (not the engine's): whether it answered the
#: client's request on the client's pair (first_answer.py).
FIRST_ANSWERED = "first_answered"


class HostGone(Exception):
    """The pair broke (the host exited or a frame was malformed)."""


# ---------------------------------------------------------------- the pair's frames


def send_message(sock: socket.socket, message: object) -> None:
    """One length-prefixed pickle; raises HostGone if the pair is broken."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        sock.sendall(_HEADER.pack(len(data)) + data)
    except OSError as exc:
        raise HostGone(f"the engine host's pair is broken: {exc.strerror}") from None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError as exc:
            raise HostGone(f"the engine host's pair is broken: {exc.strerror}") from None
        if not chunk:
            raise HostGone("the engine host's pair is closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket) -> Any:
    """The next message (see the module's note on pickle); HostGone at EOF."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise HostGone(f"the engine host sent a frame of {size} bytes")
    return pickle.loads(_recv_exact(sock, size))


def crossable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else a RuntimeError naming its
    type (never its message: it could quote a server's answer)."""
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return RuntimeError(f"the engine raised {type(exc).__name__}")
    return exc


# ---------------------------------------------------------------- the host (child)


def engine_calls(engine: Engine) -> dict[str, Callable[..., AcquiredToken]]:
    """The calls the host answers, by name: the broker's Engine protocol."""
    return {
        "acquire_t1": engine.acquire_t1,
        "acquire_blueprint_token": engine.acquire_blueprint_token,
        "acquire_managed_identity": engine.acquire_managed_identity,
        "acquire_autonomous_app": engine.acquire_autonomous_app,
        "acquire_obo": engine.acquire_obo,
        "acquire_obo_refresh": engine.acquire_obo_refresh,
        "acquire_t2": engine.acquire_t2,
        "acquire_user_fic": engine.acquire_user_fic,
    }


#: An engine call as it crosses the pair: its name, positional and keyword
#: arguments (the proxy always names every keyword, so equal calls compare equal).
CallMessage = tuple[str, tuple[object, ...], dict[str, object]]


def aged(token: AcquiredToken, seconds: float) -> AcquiredToken:
    """``token`` as if its request had been sent ``seconds`` later than it was:
    its durations count from the send (models.AcquiredToken), so a token kept
    that long has that much less left (and is refreshed that much sooner)."""
    refresh_in = token.refresh_in
    return dataclasses.replace(
        token,
        expires_in=token.expires_in - seconds,
        refresh_in=None if refresh_in is None else max(0.0, refresh_in - seconds),
    )


class Prefetched:
    """Answers the host got before the broker asked (:func:`warm_up`).

    Each answers the first call equal to the one that produced it, once, and
    is then gone: the identity provider sees each leg once, made by the host
    instead of later by the broker. A token is handed over aged by the time
    it waited (:func:`aged`); an error crosses as itself, as it would have.
    The calls are made through ``calls`` (:func:`engine_calls`), by the name
    each message carries, as :func:`serve` makes them.
    """

    def __init__(self, calls: dict[str, Callable[..., AcquiredToken]]) -> None:
        self._calls = calls
        self._answers: list[tuple[CallMessage, AcquiredToken | BaseException, float]] = []
        #: The call whose token answers the request itself (its resource token),
        #: once :func:`first_legs` made it.
        self.resource: CallMessage | None = None

    def make(self, message: CallMessage) -> AcquiredToken | None:
        """Make ``message``'s call now and keep its outcome; the token, None on an error."""
        sent = time.monotonic()
        outcome = _outcome(self._calls, message)
        self._answers.append((message, outcome, sent))
        return None if isinstance(outcome, BaseException) else outcome

    def take(self, message: CallMessage) -> tuple[bool, object] | None:
        """The kept outcome of a call equal to ``message`` as ``serve`` replies it
        (forgotten now), else None."""
        for i, (kept, outcome, sent) in enumerate(self._answers):
            if kept == message:
                del self._answers[i]
                if isinstance(outcome, BaseException):
                    return False, outcome
                return True, aged(outcome, time.monotonic() - sent)
        return None

    def pinned(self, message: CallMessage) -> AcquiredToken | None:
        """The kept token of a call equal to ``message``, its refresh-ahead pinned
        at the earliest point the cache's rule allows (refresh_rule.py: the cache
        then refreshes it exactly there), aged by its wait; kept for
        :meth:`take`. None when no token is kept for it."""
        for i, (kept, outcome, sent) in enumerate(self._answers):
            if kept == message and not isinstance(outcome, BaseException):
                outcome = dataclasses.replace(outcome, refresh_in=earliest_refresh_in(outcome))
                self._answers[i] = (kept, outcome, sent)
                return aged(outcome, time.monotonic() - sent)
        return None

    def __len__(self) -> int:
        return len(self._answers)


def _outcome(
    calls: dict[str, Callable[..., AcquiredToken]], message: CallMessage
) -> AcquiredToken | BaseException:
    """``message``'s call made now: its token, or the exception to send back."""
    name, args, kwargs = message
    call = calls.get(name)
    if call is None:
        return RuntimeError(f"the engine host has no call {name!r}")
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        return crossable(exc)


def serve(
    sock: socket.socket,
    calls: dict[str, Callable[..., AcquiredToken]],
    prefetched: Prefetched | None = None,
    first_answered: bool = False,
) -> None:
    """Answer ``(name, args, kwargs)`` messages with ``(True, result)`` or
    ``(False, exception)`` until the pair closes; a call ``prefetched`` holds
    is answered from there, :data:`FIRST_ANSWERED` with ``first_answered``."""
    while True:
        try:
            message = recv_message(sock)
        except HostGone:
            return
        if message[0] == FIRST_ANSWERED:
            reply: tuple[bool, object] | None = (True, first_answered)
        else:
            reply = prefetched.take(message) if prefetched is not None else None
        if reply is None:
            outcome = _outcome(calls, message)
            reply = (not isinstance(outcome, BaseException), outcome)
        try:
            send_message(sock, reply)
        except HostGone:
            return


def first_legs(engine: Engine, req: TokenRequest, *, claims: bool) -> Prefetched:
    """Make the legs the broker's first calls for ``req`` will be, now.

    For an agent whose blueprint has its own credential: T1, and without a
    claims challenge (``claims``) the rest of the request's legs as the broker
    asks for them (``ExchangeLegs`` and ``Broker._resource_fetch``): the
    AutonomousApp token, or T2 and the user's token (AutonomousUser). The
    messages are those :class:`EngineProxy` sends for the broker's calls
    (tests/daemon/process/test_engine_host.py drives the real broker over the
    pair and counts each leg once). An OBO token needs the user token only the
    request carries, so it is made when asked; so is every leg after one that
    failed.
    """
    prefetched = Prefetched(engine_calls(engine))
    agent = req.agent
    if agent.credential.kind == "managed_identity":
        return prefetched  # T1 needs the managed identity's token: a leg of its own
    t1 = prefetched.make(("acquire_t1", (agent,), {"assertion": None}))
    if t1 is None or claims:
        return prefetched
    resource: CallMessage | None = None
    if req.mode is Mode.AUTONOMOUS_APP:
        app_leg = (agent, t1.access_token, req.scopes)
        resource = ("acquire_autonomous_app", app_leg, {"claims": None})
    elif req.mode is Mode.AUTONOMOUS_USER:
        t2 = prefetched.make(("acquire_t2", (agent, t1.access_token), {}))
        if t2 is not None:
            user = {"user_upn": req.user_upn, "user_object_id": req.user_object_id}
            resource = (
                "acquire_user_fic",
                (agent, t1.access_token, t2.access_token, req.scopes),
                {**user, "claims": None},
            )
    if resource is not None:
        prefetched.make(resource)
        prefetched.resource = resource
    return prefetched


def warm_up(engine: Engine, foresight: Foresight) -> Prefetched | None:
    """Prepare ``engine`` for the request the parent resolved (``foresight``) and
    make its first legs (:func:`first_legs`); None when there is none or it
    cannot be prepared: the first call meets the reason again, and reports it."""
    req = foresight.request
    if req is None:
        return None
    try:
        engine.prepare(req.agent)
    except Exception:
        return None
    return first_legs(engine, req, claims=foresight.claims)


def answer_first_request(fd: int, foresight: Foresight, prefetched: Prefetched | None) -> bool:
    """Answer the client on its pair ``fd`` (closed here) with the resource token
    made for the foreseen request, when the parent judged the client's request
    answerable and the token has enough left (first_answer.py); True when answered."""
    from .first_answer import answer_body, answer_on_pair

    req, min_validity_s = foresight.request, foresight.min_validity_s
    resource = None if prefetched is None else prefetched.resource
    if req is None or min_validity_s is None or prefetched is None or resource is None:
        os.close(fd)  # EOF for the client: it asks the daemon
        return False

    def answer() -> dict[str, Any] | None:
        return answer_body(req, prefetched.pinned(resource), min_validity_s, time.time())

    return answer_on_pair(fd, answer)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent dies (checked once more: it may already have)."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)  # prctl is libc's, in the process already
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def run_host(
    fd: int, parent: int, environ: MutableMapping[str, str], answer_fd: int | None = None
) -> None:
    """The child (:mod:`.engine_fork`), on its end ``fd`` of the pair: no core
    and no debugger before any secret, SIGKILL with the parent, its own name,
    no ready pipe or start lock, no output; the parent's :class:`.first_answer.Foresight`
    read, the engine prepared for the waiting request and its first legs made
    (:func:`warm_up`), the client answered on its pair ``answer_fd`` when it can
    be (first_answer.py), then serve until the pair closes. An exception ends
    the host (the fork exits 1)."""
    for name in (READY_FD_ENV, START_LOCK_FD_ENV):
        # The client waits for the parent's report, and the lock goes with it:
        # never held open by us.
        inherited = take_fd(environ, name)
        if inherited is not None:
            os.close(inherited)
    from .limits import forbid_core_dumps
    from .runmode import set_process_name

    sock = socket.socket(fileno=fd)
    forbid_core_dumps()
    _die_with_parent(parent)
    set_process_name(HOST_PROCESS_NAME)
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)
    os.close(devnull)
    from ..idp.engine import Engine  # MSAL and requests: the host's import, not the parent's

    engine = Engine()
    try:
        foresight = recv_message(sock)  # sent by the parent while we imported MSAL
    except HostGone:
        return
    if not isinstance(foresight, Foresight):
        return
    prefetched = warm_up(engine, foresight)
    answered = answer_fd is not None and answer_first_request(answer_fd, foresight, prefetched)
    serve(sock, engine_calls(engine), prefetched, first_answered=answered)


# ---------------------------------------------------------------- the parent's proxy


def _new_engine() -> Engine:
    from ..idp.engine import Engine

    return Engine()


class EngineProxy:
    """The broker's engine in an autostarted daemon: the host's until the
    parent's own is ready, then the parent's (see the module docstring).

    Calls from several worker threads take turns on the pair (the host answers
    one at a time); a thread waiting for its turn when the switch happens goes
    to the parent's engine instead. A broken pair (the host died) switches at
    once: that call and every later one use the parent's engine.
    """

    def __init__(
        self,
        sock: socket.socket,
        pid: int | None,
        *,
        build: Callable[[], Engine] = _new_engine,
        idle_before_switch_s: float = IDLE_BEFORE_SWITCH_S,
    ) -> None:
        self._sock: socket.socket | None = sock
        self.pid = pid
        self._build = build
        self._idle_s = idle_before_switch_s
        self._cond = threading.Condition()
        self._busy = False
        self._last_answer = 0.0
        self._own: Engine | None = None
        self._own_lock = threading.Lock()  # one build of the parent's engine
        self._agents: list[AgentRef] = []  # served by the host: prepared before the switch
        self._switcher: threading.Thread | None = None
        self._held = 0  # holds on the host (first_answered): no switch while any
        self._foreseen: TokenRequest | None = None  # the request the parent foresaw
        #: How the calls went: "host" until the switch, then "own".
        self.calls_to_host = 0

    @classmethod
    def over(cls, fd: int, pid: int) -> EngineProxy:
        """The proxy on the parent's end ``fd`` of the pair to host ``pid``."""
        return cls(socket.socket(fileno=fd), pid)

    # -- the switch ---------------------------------------------------------------

    @property
    def switched(self) -> bool:
        return self._own is not None

    def own(self) -> Engine:
        """The parent's own engine, built (and switched to) now if it is not yet."""
        with self._own_lock:
            if self._own is None:
                self._adopt(self._build())
            assert self._own is not None
            return self._own

    def _switch_when_idle(self) -> None:
        with self._cond:
            while self._own is None and (
                self._busy or self._held or time.monotonic() - self._last_answer < self._idle_s
            ):
                self._cond.wait(self._idle_s)
        with self._own_lock:
            if self._own is not None:
                return
            engine = self._build()
            for agent in list(self._agents):
                with contextlib.suppress(Exception):  # the call meets it again
                    engine.prepare(agent)
            self._adopt(engine)

    def _adopt(self, engine: Engine) -> None:
        """Route every call to ``engine``; close the pair once no call is on it."""
        with self._cond:
            self._own = engine
            self._cond.notify_all()
            while self._busy:
                self._cond.wait()
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # the host exits on EOF
            self._reap()

    def _reap(self) -> None:
        pid = self.pid
        if pid is None:
            return

        def wait() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

        threading.Thread(target=wait, name="agentid-engine-host-reap", daemon=True).start()

    def close(self) -> None:
        """Close the pair now (the host exits); later calls build the parent's engine."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            self._reap()

    # -- the first answer (first_answer.py) ------------------------------------------

    def foresee(self, foresight: Foresight) -> None:
        """Send the host what the parent resolved (first_request.py): the first
        message on the pair, before any call."""
        sock = self._sock
        if sock is None:
            return
        try:
            send_message(sock, foresight)
        except HostGone:
            self.close()
            return
        self._foreseen = foresight.request

    def first_answered(self) -> TokenRequest | None:
        """The request the host answered on the client's pair (the one the parent
        foresaw), None when it answered none (or is gone). When it did, the calls
        stay on the host until :meth:`release`, so that caching the request takes
        the legs it made."""
        with self._cond:
            self._held += 1  # before the reply: the switch cannot slip in between
        answered = False
        try:
            answered = bool(self._call(None, lambda _own: False, FIRST_ANSWERED))
        finally:
            if not answered or self._foreseen is None:
                self.release()
        return self._foreseen if answered else None

    def release(self) -> None:
        """End a hold of :meth:`first_answered`."""
        with self._cond:
            self._held -= 1
            self._cond.notify_all()

    # -- one call -----------------------------------------------------------------

    def _call(
        self,
        agent: AgentRef | None,
        local: Callable[[Engine], T],
        name: str,
        *args: object,
        **kwargs: object,
    ) -> T:
        with self._cond:
            while self._own is None and self._sock is not None and self._busy:
                self._cond.wait()
            own, sock = self._own, self._sock
            if own is None and sock is not None:
                self._busy = True
        if own is not None:
            return local(own)
        if sock is None:
            return local(self.own())
        try:
            send_message(sock, (name, args, kwargs))
            ok, value = recv_message(sock)
        except HostGone:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            self.close()
            return local(self.own())
        with self._cond:
            self._busy = False
            self._last_answer = time.monotonic()
            self.calls_to_host += 1
            if agent is not None and agent not in self._agents:
                self._agents.append(agent)
            if self._switcher is None:
                self._switcher = threading.Thread(
                    target=self._switch_when_idle, name="agentid-engine-switch", daemon=True
                )
                self._switcher.start()
            self._cond.notify_all()
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    # -- the broker's Engine protocol (broker/seams.py) ----------------------------

    def acquire_t1(self, agent: AgentRef, *, assertion: str | None = None) -> AcquiredToken:
        return self._call(
            agent, lambda e: e.acquire_t1(agent, assertion=assertion), "acquire_t1", agent,
            assertion=assertion,
        )  # fmt: skip

    def acquire_blueprint_token(
        self, agent: AgentRef, scopes: tuple[str, ...], *, assertion: str | None = None
    ) -> AcquiredToken:
        return self._call(
            agent,
            lambda e: e.acquire_blueprint_token(agent, scopes, assertion=assertion),
            "acquire_blueprint_token", agent, scopes, assertion=assertion,
        )  # fmt: skip

    def acquire_managed_identity(self, credential: CredentialSpec) -> AcquiredToken:
        return self._call(
            None, lambda e: e.acquire_managed_identity(credential),
            "acquire_managed_identity", credential,
        )  # fmt: skip

    def acquire_autonomous_app(
        self, agent: AgentRef, t1: str, scopes: tuple[str, ...], *, claims: str | None = None
    ) -> AcquiredToken:
        return self._call(
            agent,
            lambda e: e.acquire_autonomous_app(agent, t1, scopes, claims=claims),
            "acquire_autonomous_app", agent, t1, scopes, claims=claims,
        )  # fmt: skip

    def acquire_obo(
        self,
        agent: AgentRef,
        t1: str,
        user_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        return self._call(
            agent,
            lambda e: e.acquire_obo(agent, t1, user_token, scopes, claims=claims),
            "acquire_obo", agent, t1, user_token, scopes, claims=claims,
        )  # fmt: skip

    def acquire_obo_refresh(
        self,
        agent: AgentRef,
        t1: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        *,
        claims: str | None = None,
    ) -> AcquiredToken:
        return self._call(
            agent,
            lambda e: e.acquire_obo_refresh(agent, t1, refresh_token, scopes, claims=claims),
            "acquire_obo_refresh", agent, t1, refresh_token, scopes, claims=claims,
        )  # fmt: skip

    def acquire_t2(self, agent: AgentRef, t1: str) -> AcquiredToken:
        return self._call(agent, lambda e: e.acquire_t2(agent, t1), "acquire_t2", agent, t1)

    def acquire_user_fic(
        self,
        agent: AgentRef,
        t1: str,
        t2: str,
        scopes: tuple[str, ...],
        *,
        user_upn: str | None,
        user_object_id: str | None,
        claims: str | None = None,
    ) -> AcquiredToken:
        return self._call(
            agent,
            lambda e: e.acquire_user_fic(
                agent, t1, t2, scopes, user_upn=user_upn, user_object_id=user_object_id,
                claims=claims,
            ),
            "acquire_user_fic", agent, t1, t2, scopes, user_upn=user_upn,
            user_object_id=user_object_id, claims=claims,
        )  # fmt: skip
