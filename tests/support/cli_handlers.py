"""A handler registry that ``q2c worker --handlers support.cli_handlers:registry`` can load."""

from __future__ import annotations

import logging

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

registry = Registry()
log = logging.getLogger("quote2cash.test.handlers")


@registry.on("crm.opportunity.closed_won")
async def closed_won(ctx: HandlerContext, event: Event) -> None:
    log.warning("activating deal %s", event.subject)
    ctx.emit("billing.subscription.requested", event.subject, {"seats": event.data["seats"]})


@registry.on("billing.subscription.requested")
async def requested(ctx: HandlerContext, event: Event) -> None:
    log.warning("subscription requested for %s", event.subject)
