"""Handlers for retention tests (``q2c worker --handlers support.retention_handlers:registry``):
every event records one step (so it has steps and audit entries naming it); a subject named
``broken-*`` fails with a data error (an exception the archive must leave alone)."""

from __future__ import annotations

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

registry = Registry()


@registry.on("*")
async def record(ctx: HandlerContext, event: Event) -> None:
    if event.subject.startswith("broken-"):
        raise DataError(f"{event.subject}: field 'tax_id' missing; expected a VAT number")
    await ctx.step("ledger.post", lambda key: {"posted": event.id, "key": key})
