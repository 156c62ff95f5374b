"""Handlers for retention tests (``q2c worker --handlers support.retention_handlers:registry``):
every event records one step (so it has steps and audit entries naming it); a subject named
``broken-*`` fails with a data error (an exception the archive must leave alone); one named
``flaky-*`` fails transiently on its first try (a failures row), then succeeds."""

from __future__ import annotations

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError, TransientError
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

registry = Registry()


@registry.on("*")
async def record(ctx: HandlerContext, event: Event) -> None:
    if event.subject.startswith("broken-"):
        raise DataError(f"{event.subject}: field 'tax_id' missing; expected a VAT number")
    if event.subject.startswith("flaky-") and event.id not in _tried:
        _tried.add(event.id)
        raise TransientError(f"{event.subject}: ledger timed out")
    await ctx.local_step("ledger.post", lambda key: {"posted": event.id, "key": key})


_tried: set[str] = set()
