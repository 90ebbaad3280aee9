"""structlog configuration for the daemon, with redaction before rendering.

Every log line goes through the same processor chain, whether it comes from
structlog (our code) or from the stdlib ``logging`` module (msal, urllib3,
trio, h11): the stdlib records are fed into structlog's ``ProcessorFormatter``
so they get the same timestamp, level and redaction.

Output is JSON lines on stdout (journald picks them up as they are) or, when
stdout is a TTY, structlog's console renderer. Tracebacks are rendered without
local variables: locals are where tokens live.

Redaction is belt and braces: the code never logs tokens on purpose, but MSAL
logs request metadata at INFO and exception texts may quote a server answer,
so :func:`redact` masks sensitive keys and scrubs JWTs and form fragments such
as ``client_secret=...`` out of every string value, including exception text.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

# structlog's dev and tracebacks modules import rich (and better_exceptions)
# when they are installed, for pretty tracebacks and locals: about 70 ms of a
# daemon start, before its first answer, for features this module never uses
# (plain tracebacks, no locals: see _renderer and _exception_processor).
# Marking them unimportable while structlog is imported makes structlog take
# its own fallbacks ("rich is None"); the marks go right after, so anything
# else in the process can still import them. One already imported is used as is.
_NOT_FOR_STRUCTLOG = tuple(n for n in ("rich", "better_exceptions") if n not in sys.modules)
for _name in _NOT_FOR_STRUCTLOG:
    sys.modules[_name] = None  # type: ignore[assignment]  # import raises ImportError
try:
    import structlog
finally:
    for _name in _NOT_FOR_STRUCTLOG:
        if sys.modules.get(_name, ...) is None:
            del sys.modules[_name]

LogFormat = Literal["json", "console"]

# The level configure_logging() last set for our own loggers. Hot paths ask
# is_enabled_for() before building a log call at all: even a filtered-out
# structlog call costs a lazy-proxy bind and the keyword dict per request.
_level_no: int = logging.INFO

MASK = "[redacted]"

# Keys whose values are masked whatever they hold (compared lower-cased, with
# dashes as underscores so that HTTP header names match too).
SENSITIVE_KEYS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "user_token",
        "secret",
        "client_secret",
        "blueprint_secret",
        "client_assertion",
        "assertion",
        "user_federated_identity_credential",
        "password",
        "authorization",
        "proxy_authorization",
        "cookie",
        "private_key",
        # The managed identity endpoint's per-session secret (X-IDENTITY-HEADER).
        "identity_header",
        "x_identity_header",
    }
)

# A JWT (JWS compact form): header and payload are base64url JSON objects, so
# they start with "eyJ" ('{"'). The signature may be empty (alg none).
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Form or query fragments and JSON members carrying secrets: key=value or
# "key": "value". The key list is the form-field subset of SENSITIVE_KEYS.
_FORM_KEYS = (
    r"client_secret|client_assertion|assertion|user_federated_identity_credential|"
    r"access_token|refresh_token|id_token|user_token|password|secret|token"
)
_FORM_RE = re.compile(rf"(?i)\b({_FORM_KEYS})=([^&\s\"',;]+)")
_JSON_MEMBER_RE = re.compile(rf"(?i)([\"']({_FORM_KEYS})[\"']\s*:\s*[\"'])([^\"']*)([\"'])")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")


def scrub_text(text: str) -> str:
    """Remove JWTs, bearer credentials and secret-bearing fragments from *text*."""
    if not text:
        return text
    text = _JWT_RE.sub(MASK, text)
    text = _FORM_RE.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _JSON_MEMBER_RE.sub(lambda m: f"{m.group(1)}{MASK}{m.group(4)}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return text


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def _redact_value(value: Any, depth: int = 0) -> Any:
    if depth > 8:  # pathological nesting: do not recurse forever
        return MASK
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes):
        return scrub_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {
            k: (MASK if _is_sensitive_key(k) else _redact_value(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, depth + 1) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    # Any other object is rendered through its str() by the renderer anyway;
    # scrub that text now so that a __str__ quoting a token cannot leak it.
    return scrub_text(str(value))


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask sensitive keys, scrub every string value.

    Runs after the exception has been rendered into a string (``exception``),
    so secrets quoted in exception messages are scrubbed too.
    """
    for key in list(event_dict):
        if key in ("_record", "_from_structlog", "exc_info"):
            # exc_info is rendered into "exception" (then scrubbed) by the formatter.
            continue
        if _is_sensitive_key(key):
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def _drop_stdlib_extras(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: LogFormat) -> Any:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(
            colors=False,
            exception_formatter=structlog.dev.plain_traceback,
        )
    return structlog.processors.JSONRenderer(sort_keys=False)


def _exception_processor(fmt: LogFormat) -> Any:
    # JSON: structured traceback frames (no locals). Console: plain text.
    # Either way the result is a plain string/dict that redact() then scrubs.
    if fmt == "console":
        return structlog.processors.format_exc_info
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def resolve_format(fmt: str | None, stream: TextIO) -> LogFormat:
    """``json``/``console`` as asked; ``None``/``auto``: console on a TTY, else JSON."""
    if fmt in ("json", "console"):
        return fmt  # type: ignore[return-value]
    if fmt not in (None, "", "auto"):
        raise ValueError(f"unknown log format {fmt!r} (expected json or console)")
    try:
        return "console" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (expected debug, info, warning, error)")
    return value


_dropped_lines = 0


def dropped_lines() -> int:
    """Log lines dropped because the output failed (``/metrics``: log_lines_dropped_total)."""
    return _dropped_lines


class DroppingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that drops a line its stream cannot take, quietly, and counts it.

    The stdlib's ``handleError`` prints "--- Logging error ---", a traceback and
    the record's raw message and arguments to stderr: for a structlog event that
    is the whole event dict. A closed pipe (``agentid-helperd | head``) or a full
    disk must cost log lines, never leak them elsewhere.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        global _dropped_lines
        _dropped_lines += 1


def configure_logging(
    level: str | int = "info",
    fmt: str | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger. Safe to call again."""
    global _level_no
    stream = stream if stream is not None else sys.stdout
    level_no = parse_level(level)
    log_format = resolve_format(fmt, stream)
    shared = _shared_processors()

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            # Redact before the event dict becomes a LogRecord: whatever handles
            # the record (or fails to) never holds an unredacted value.
            redact,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            _drop_stdlib_extras,
            _exception_processor(log_format),
            structlog.processors.StackInfoRenderer(),
            redact,
            _renderer(log_format),
        ],
    )
    handler = DroppingStreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("agentid-helper")

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "agentid-helper":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_no)
    logging.captureWarnings(True)  # Python warnings become "py.warnings" log lines
    # Third-party libraries: warnings only (msal logs request metadata at
    # INFO/DEBUG; redaction would catch secrets, but the noise is not useful).
    for name in ("msal", "urllib3", "requests", "trio", "h11", "asyncio"):
        logging.getLogger(name).setLevel(max(level_no, logging.WARNING))
    logging.getLogger("agentid_daemon").setLevel(level_no)
    _level_no = level_no


def is_enabled_for(level: int) -> bool:
    """Whether our loggers emit *level* (a stdlib level number) as configured.

    A cheap guard for per-request log lines: when it says no, skip the call
    (and the building of its fields) entirely.
    """
    return level >= _level_no


def get_logger(name: str = "agentid_daemon") -> Any:
    """A structlog bound logger named *name* (the ``logger`` field)."""
    return structlog.stdlib.get_logger(name)


def log_request(
    logger: Any,
    message: str,
    *,
    method: str,
    path: str,
    status: int,
    duration_s: float,
    ctx: Mapping[str, Any],
    warn_statuses: frozenset[int] = frozenset(),
) -> None:
    """One line per served request, at the level its outcome earns.

    Server errors (and *warn_statuses*) warn; cache hits are the hot path and
    carry no news, so they go to debug and the default level logs only
    acquisitions, refreshes and errors. *ctx* adds fields; ``None`` values
    are left out.
    """
    if status >= 500 or status in warn_statuses:
        level = logging.WARNING
    elif status == 200 and ctx.get("source") == "cache":
        level = logging.DEBUG
    else:
        level = logging.INFO
    if is_enabled_for(level):
        logger.log(
            level,
            message,
            method=method,
            path=path,
            status=status,
            duration_ms=round(duration_s * 1000, 1),
            **{k: v for k, v in ctx.items() if v is not None},
        )
