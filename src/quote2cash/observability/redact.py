"""Secrets never reach a log line, an error message or the console, at any level.

Every log record is redacted when it is made (``install_redaction``), whichever library logs it
(the Stripe SDK logs response bodies at DEBUG, a new webhook signing secret among them), and the
API's access log redacts the request line and headers it writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\b(whsec|sk_test|sk_live|rk_test|rk_live|q2c)_[A-Za-z0-9_\-]{6,}"),
        r"\1_" + MASK,
    ),
    (
        re.compile(r"(?i)\b(bearer|basic)\s+(?=[A-Za-z0-9]*[0-9._~+/=\-])[A-Za-z0-9._~+/=\-]{8,}"),
        r"\1 " + MASK,
    ),
    (
        re.compile(
            r"(?i)\b([\w-]*?(?:password|passwd|secret|api_key|apikey|token|session_id|csrf))"
            r"(\\?[\"']?\s*[:=]\s*\\?[\"']?)(?!\*\*\*)[^\"'\\\s,&;}\]]+"
        ),
        r"\1\2" + MASK,
    ),
    (
        re.compile(r"([?&](?:code|state|id_token|access_token|refresh_token)=)[^&#\s\"']+"),
        r"\1" + MASK,
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+):[^/\s@]+@"), r"\1:" + MASK + "@"),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        "[private key " + MASK + "]",
    ),
)


_MAY_HOLD_A_SECRET = re.compile(
    r"(?i)whsec_|sk_|rk_|q2c_|bearer|basic|passw|secret|api_?key|token|session_id|csrf|://"
    r"|PRIVATE KEY|[?&](?:code|state|id_token|access_token|refresh_token)="
)
"""One cheap search first: most log lines hold none of these and skip the patterns."""


def redact(text: str) -> str:
    """``text`` with every secret it holds masked (key prefixes and field names are kept)."""
    if not _MAY_HOLD_A_SECRET.search(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render the record's message and traceback once, redacted; later handlers see only that."""
    try:
        message = record.getMessage()
    except Exception:  # a record whose arguments do not match its format is kept as given
        message = f"{record.msg!r} {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record passing through it (and never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_installed: Callable[..., logging.LogRecord] | None = None


def install_redaction() -> None:
    """Make every log record of this process redacted at creation (idempotent)."""
    global _installed
    current = logging.getLogRecordFactory()
    if _installed is not None and current is _installed:
        return
    base = current

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(base(*args, **kwargs))

    _installed = factory
    logging.setLogRecordFactory(factory)
