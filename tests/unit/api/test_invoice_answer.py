"""GetInvoiceStatus's answer: every field of the view, money as exact strings with their
currency, dates and times as ISO 8601, and the same JSON the generic encoder gives."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec

from quote2cash.api.app import _invoice_json, jsonable
from quote2cash.canonical import Money
from quote2cash.flows.status import InvoiceStatusView


def view(**changed: object) -> InvoiceStatusView:
    base: dict[str, object] = {
        "global_id": "INV-0001",
        "billing_id": "in_1",
        "erp_id": "17",
        "crm_id": "a0B1",
        "number": "Zürich-0001",
        "contract": "C-1",
        "status": "paid",
        "currency": "EUR",
        "total": Money(Decimal("147.00"), "EUR"),
        "amount_paid": Money(Decimal("147.00"), "EUR"),
        "amount_due": Money(Decimal("0.00"), "EUR"),
        "due_date": date(2027, 1, 1),
        "paid_at": datetime(2026, 12, 7, 5, 0, 1, 250000, tzinfo=UTC),
        "posted_in_erp": True,
        "payment_applied_in_erp": False,
        "as_of": datetime(2026, 12, 7, 5, 0, 2, tzinfo=UTC),
    }
    return InvoiceStatusView(**{**base, **changed})  # type: ignore[arg-type]


def test_every_field_and_exact_money() -> None:
    answer = _invoice_json(view())
    assert set(answer) == {f.name for f in fields(InvoiceStatusView)} | {"is_credit"}
    assert answer["total"] == {"amount": "147.00", "currency": "EUR"}
    assert answer["amount_due"] == {"amount": "0.00", "currency": "EUR"}
    assert answer["amount_refunded"] is None and answer["refund_reversed_in_erp"] is False
    assert answer["due_date"] == "2027-01-01"
    assert answer["paid_at"] == "2026-12-07T05:00:01.250000+00:00"
    assert answer["is_credit"] is False


def test_the_encoded_answer_equals_the_generic_encoders() -> None:
    for one in (
        view(),
        view(
            total=Money(Decimal("-12.30"), "EUR"),
            amount_refunded=Money(Decimal("5.00"), "EUR"),
            refund_reversed_in_erp=True,
            due_date=None,
            paid_at=None,
            global_id=None,
        ),
    ):
        encoded = msgspec.json.encode({"invoice": _invoice_json(one)})
        generic = {f.name: getattr(one, f.name) for f in fields(InvoiceStatusView)}
        generic = {
            k: {"amount": str(v.amount), "currency": v.currency} if isinstance(v, Money) else v
            for k, v in generic.items()
        }
        expected = jsonable({"invoice": {**generic, "is_credit": one.is_credit}})
        assert json.loads(encoded) == json.loads(json.dumps(expected))
