"""Billing's tax posted in Tryton: the right ERP tax per rate, equal to the cent, credit notes too.

The GmbH's taxes are named by the group's tax codes (``config/tax.yaml``): ``DE-VAT-19`` (19 %) and
``EU-VAT-RC`` (reverse charge, 0 %). The amounts 10.50 / 23.50 / 41.50 at 19 % are 1.995, 4.465 and
7.885: rounded per line (billing) 14.36 in all, per document 14.35 (half up) or 14.34 (half even).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from contract.erp import builders
from quote2cash.canonical import (
    CreditMemo,
    CreditMemoLine,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    Ref,
    TaxRate,
    TaxTreatment,
)
from quote2cash.connectors.tryton import TrytonClient, TrytonErp
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.errors import MappingError
from quote2cash.masterdata import load_entities, load_tax

TAX = load_tax(
    packaged_config_dir() / "tax.yaml", load_entities(packaged_config_dir() / "entities.yaml")
)
VAT = TAX.rate("DE-VAT-19")
REVERSE = TAX.rate("EU-VAT-RC")
AMOUNTS = (Decimal("10.50"), Decimal("23.50"), Decimal("41.50"))


def line_tax(amount: Decimal, rate: TaxRate) -> Money:
    return Money.quantize(amount * rate.percentage / 100, "EUR")


def taxed_invoice(unique: str, party: str, rate: TaxRate, exempt: bool = False) -> Invoice:
    start, end = builders.service_period()
    lines = tuple(
        InvoiceLine(
            description=f"Seat tier {i}",
            product=builders.item("PLAT-SEAT"),
            quantity=Decimal(1),
            unit_amount=amount,
            amount=Money(amount, "EUR"),
            tax=Money.zero("EUR") if exempt else line_tax(amount, rate),
            tax_rate=rate,
            service_start=start,
            service_end=end,
        )
        for i, amount in enumerate(AMOUNTS)
    )
    tax = Money.sum((line.tax for line in lines if line.tax is not None), "EUR")
    return Invoice(
        number=f"INV-{unique}",
        customer=Ref(global_id=f"cus-{unique}", external_ids={"erp": party}),
        currency="EUR",
        status=InvoiceStatus.OPEN,
        issued_at=dt.datetime.now(dt.UTC),
        lines=lines,
        tax=tax,
        total=Money.sum((line.amount for line in lines), "EUR") + tax,
    )


async def _party(connector: TrytonErp, unique: str) -> str:
    return await connector.upsert_customer(
        builders.customer(unique), legal_entity="DE", idempotency_key=unique
    )


async def _tax_lines(ledger: TrytonClient, invoice_id: str) -> list[tuple[str, Decimal, Decimal]]:
    rows = await ledger.model("account.invoice.tax").search_read(
        [("invoice", "=", int(invoice_id))], ["tax.name", "base", "amount"]
    )
    return sorted((r["tax."]["name"], Decimal(r["base"]), Decimal(r["amount"])) for r in rows)


async def test_a_three_line_invoice_posts_billings_per_line_tax_to_the_cent(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = uuid.uuid4().hex[:10]
    party = await _party(connector, unique)
    invoice = taxed_invoice(unique, party, VAT)
    assert invoice.tax == Money("14.36", "EUR")
    assert Money.quantize(sum(AMOUNTS) * VAT.percentage / 100, "EUR") != invoice.tax
    posted = await connector.post_invoice(invoice, legal_entity="DE", idempotency_key=unique)
    assert posted.total == invoice.total == Money("89.86", "EUR")
    [row] = await ledger.model("account.invoice").read(
        [int(posted.erp_id)], ["state", "tax_amount", "untaxed_amount", "total_amount"]
    )
    assert (row["state"], row["tax_amount"], row["untaxed_amount"], row["total_amount"]) == (
        "posted",
        Decimal("14.36"),
        Decimal("75.50"),
        Decimal("89.86"),
    )
    assert await _tax_lines(ledger, posted.erp_id) == [
        ("DE VAT 19%", Decimal("75.50"), Decimal("14.36"))
    ]
    tax_account = connector.config.legal_entities["DE"].taxes["DE-VAT-19"]
    [tax] = await ledger.model("account.tax").read([tax_account], ["invoice_account"])
    moves = await ledger.model("account.move.line").search_read(
        [("account", "=", tax["invoice_account"]), ("move.origin", "like", "account.invoice,%")],
        ["credit", "move.origin"],
    )
    assert Decimal("14.36") in [Decimal(m["credit"]) for m in moves]


async def test_a_reverse_charged_invoice_posts_a_zero_reverse_charge_tax_line(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = uuid.uuid4().hex[:10]
    party = await _party(connector, unique)
    invoice = taxed_invoice(unique, party, REVERSE)
    assert REVERSE.treatment is TaxTreatment.REVERSE_CHARGE and invoice.tax.is_zero()
    posted = await connector.post_invoice(invoice, legal_entity="DE", idempotency_key=unique)
    assert posted.total == Money("75.50", "EUR")
    assert await _tax_lines(ledger, posted.erp_id) == [
        ("EU VAT reverse charge", Decimal("75.50"), Decimal("0"))
    ]
    [notice] = await ledger.model("account.invoice.tax").search_read(
        [("invoice", "=", int(posted.erp_id))], ["legal_notice"]
    )
    assert "Reverse charge" in notice["legal_notice"]


async def test_a_credit_note_credits_the_tax_on_the_same_erp_tax(
    connector: TrytonErp, ledger: TrytonClient
) -> None:
    unique = uuid.uuid4().hex[:10]
    party = await _party(connector, unique)
    invoice = taxed_invoice(unique, party, VAT)
    posted = await connector.post_invoice(invoice, legal_entity="DE", idempotency_key=unique)
    credited = invoice.lines[1]
    assert credited.tax is not None
    memo = CreditMemo(
        number=f"CN-{unique}",
        customer=Ref.to(f"cus-{unique}"),
        invoice=Ref.external("erp", posted.erp_id),
        currency="EUR",
        issued_at=dt.datetime.now(dt.UTC),
        lines=(
            CreditMemoLine(
                description="Seat tier 1 credited",
                amount=credited.amount,
                tax=credited.tax,
                tax_rate=VAT,
            ),
        ),
        tax=credited.tax,
        total=credited.amount + credited.tax,
    )
    credit = await connector.issue_credit_note(
        memo, erp_invoice_id=posted.erp_id, idempotency_key=f"cn-{unique}"
    )
    [row] = await ledger.model("account.invoice").read(
        [int(credit)], ["state", "tax_amount", "total_amount"]
    )
    assert (row["state"], row["tax_amount"], row["total_amount"]) == (
        "posted",
        Decimal("-4.47"),
        Decimal("-27.97"),
    )
    assert await _tax_lines(ledger, credit) == [("DE VAT 19%", Decimal("-23.50"), Decimal("-4.47"))]
    status = await connector.invoice_status(posted.erp_id)
    assert status.amount_due == Money("61.89", "EUR")  # 89.86 - 27.97


async def test_a_rate_the_erp_has_no_tax_for_is_a_mapping_error_naming_the_code(
    connector: TrytonErp,
) -> None:
    unique = uuid.uuid4().hex[:10]
    party = await _party(connector, unique)
    reduced = VAT.model_copy(update={"code": "DE-VAT-7", "percentage": Decimal(7)})
    with pytest.raises(MappingError) as refused:
        await connector.post_invoice(
            taxed_invoice(unique, party, reduced), legal_entity="DE", idempotency_key=unique
        )
    assert f"INV-{unique}" in str(refused.value) and "'DE-VAT-7'" in str(refused.value)
