"""A refund reversal interrupted after any one of its changes in Tryton, then retried.

The ERP contract (tests/contract/erp/test_erp_refunds.py) states what reversals converge on for
every ERP; the crash points here are the Tryton connector's own JSON-RPC calls.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from contract.erp import builders
from quote2cash.canonical import InvoiceStatus, Money
from quote2cash.connectors.roles import PostedInvoice
from quote2cash.connectors.tryton import TrytonErp
from quote2cash.engine.errors import TransientError
from quote2cash.sandbox.tryton import ITEM_MASTER


async def _paid(erp: TrytonErp, unique: str) -> PostedInvoice:
    """A US customer's invoice paid in full by one payment (billing's ``ch_<unique>``)."""
    customer = builders.customer(unique, "US")
    customer_id = await erp.upsert_customer(customer, legal_entity="US", idempotency_key=unique)
    currency = erp.config.legal_entities["US"].currency
    invoice = builders.invoice(unique, customer_id, currency, ITEM_MASTER[0].code)
    posted = await erp.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
    await erp.apply_payment(
        builders.payment(posted.total), erp_invoice_id=posted.erp_id, idempotency_key="p" + unique
    )
    assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID
    return posted


_READS = frozenset({"read", "search", "search_read", "search_count", "login"})


class _CrashAfterEffects:
    """An aiohttp trace that lets the connector's requests through until ``effects`` of them
    changed something in Tryton (a model write/create/delete/button or a wizard step), then
    sends nothing more: the process 'died' right after that change."""

    def __init__(self, effects: int) -> None:
        self.effects = effects
        self.seen = 0
        self.crashed = False
        self.config = aiohttp.TraceConfig()
        self.config.on_request_start.append(self._start)
        self.config.on_request_chunk_sent.append(self._sent)

    async def _start(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any
    ) -> None:
        if self.seen >= self.effects:
            self.crashed = True
            raise aiohttp.ClientConnectionError("crash trial: the hub died before this call")

    async def _sent(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any
    ) -> None:
        found = re.search(rb'"method":"([^"]+)"', params.chunk)
        if found is None:
            return
        kind, *_, verb = found.group(1).decode().split(".")
        if (kind == "model" and verb not in _READS) or (kind == "wizard" and verb == "execute"):
            self.seen += 1


@pytest.mark.slow
async def test_a_retry_after_a_crash_after_any_change_finishes_without_duplicating(
    connector: TrytonErp,
) -> None:
    """Step n refunds 0.n more of a paid invoice and crashes after its n-th change in the ERP,
    until a step completes uncrashed; the retry (another key) must leave exactly that step's
    amount owed, and a redelivery must change nothing."""
    erp = connector
    unique = uuid.uuid4().hex[:10]
    posted = await _paid(erp, unique)
    currency = posted.total.currency
    charge = f"ch_{unique}"
    refunded = Money.zero(currency)
    step = 0
    crash = _CrashAfterEffects(0)
    while step == 0 or crash.crashed:
        step += 1
        delta = Money(Decimal(step) / 10, currency)
        refunded += delta
        refund = builders.refund(posted.total, refunded, charge)
        crash = _CrashAfterEffects(step - 1)
        async with (
            aiohttp.ClientSession(trace_configs=[crash.config]) as http,
            TrytonErp(erp.config, http=http) as dying,
        ):
            try:
                await dying.reverse_payment(
                    refund, erp_invoice_id=posted.erp_id, idempotency_key=f"r{step}"
                )
            except TransientError:
                assert crash.crashed
        reversal = await erp.reverse_payment(
            refund, erp_invoice_id=posted.erp_id, idempotency_key=f"r{step}-retry"
        )
        status = await erp.invoice_status(posted.erp_id)
        assert status.status is InvoiceStatus.OPEN, step
        assert status.amount_due == delta, step
        again = await erp.reverse_payment(
            refund, erp_invoice_id=posted.erp_id, idempotency_key=f"r{step}-again"
        )
        assert again == reversal
        assert await erp.invoice_status(posted.erp_id) == status
        await erp.apply_payment(
            builders.payment(delta),
            erp_invoice_id=posted.erp_id,
            idempotency_key=f"p{step}{unique}",
        )
        assert (await erp.invoice_status(posted.erp_id)).status is InvoiceStatus.PAID
    # crashed after reopening, booking, posting, unpaying, reconciling and re-paying the rest
    assert step > 7, step
