"""The same ERP scenario on Tryton's PostgreSQL backend (template cloned with CREATE DATABASE)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from integration.tryton.tryton_scenarios import (
    EU_VAT_NOT_VALIDATED,
    create_draft_seat_invoice,
    create_german_customer,
    pay_invoice,
)
from quote2cash.sandbox.tryton import TrytonEndpoint

pytestmark = pytest.mark.postgres


async def test_postgres_sandbox_posts_and_collects_a_deferred_invoice(
    tryton_pg_server: TrytonEndpoint,
) -> None:
    setup = tryton_pg_server.setup
    async with tryton_pg_server.client(max_concurrency=4) as erp:
        companies = await erp.model("company.company").search_read(
            [], ["rec_name", "currency.code"], order=[("id", "ASC")]
        )
        assert [(c["rec_name"], c["currency."]["code"]) for c in companies] == [
            ("Q2C Inc.", "USD"),
            ("Q2C GmbH", "EUR"),
        ]
        gmbh_ctx = erp.context_for(company=setup.companies["gmbh"].company)
        party = await create_german_customer(erp, setup)
        draft = await create_draft_seat_invoice(erp, setup, party)
        await erp.model("account.invoice").execute_button(
            "post", [draft.invoice], context=gmbh_ctx, allow_warnings=[EU_VAT_NOT_VALIDATED]
        )
        [posted] = await erp.model("account.invoice").read(
            [draft.invoice], ["state", "total_amount"], context=gmbh_ctx
        )
        assert (posted["state"], posted["total_amount"]) == ("posted", Decimal("547.40"))
        assert (
            await erp.model("account.invoice.deferred").search_count(
                [("invoice_line", "=", draft.line)], context=gmbh_ctx
            )
            == 1
        )
        await pay_invoice(erp, setup, draft.invoice)
        [paid] = await erp.model("account.invoice").read(
            [draft.invoice], ["state"], context=gmbh_ctx
        )
        assert paid["state"] == "paid"
