"""Structured JSON logs; every line carries the correlation id of the work in hand and, when
tracing is on, the trace and span ids of the span in hand."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quote2cash.observability.tracing import log_ids

if TYPE_CHECKING:
    from quote2cash.engine.events import Event

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
current_event: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "current_event", default=None
)


class _EventContext:
    """``event_context``'s block: a plain class, not a generator (made once per event)."""

    __slots__ = ("_event", "_tokens")

    def __init__(self, event: Event) -> None:
        self._event = event

    def __enter__(self) -> None:
        event = self._event
        self._tokens = (
            correlation_id.set(event.correlation_id),
            current_event.set((event.id, event.type, event.subject)),
        )

    def __exit__(self, *exc: object) -> None:
        correlation_id.reset(self._tokens[0])
        current_event.reset(self._tokens[1])


def event_context(event: Event) -> AbstractContextManager[None]:
    """Within this block every log line names the event, its subject and its correlation id."""
    return _EventContext(event)


@contextmanager
def correlation(cid: str) -> Iterator[None]:
    token = correlation_id.set(cid)
    try:
        yield
    finally:
        correlation_id.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation, trace, span and
    event ids."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        ids = log_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        ev = current_event.get()
        if ev is not None:
            out["event_id"], out["event_type"], out["subject"] = ev
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        cid = correlation_id.get()
        base = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{base}  [cid={cid}]" if cid else base


class CurrentStderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is at each record, never to a stream closed since."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install the hub's formatter on the root logger (idempotent); every record is redacted."""
    from quote2cash.observability.redact import RedactingFilter, install_redaction

    install_redaction()
    handler = CurrentStderrHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_q2c", False):
            root.removeHandler(old)
    handler._q2c = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
