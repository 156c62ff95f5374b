"""Business rules: a bad record is refused with a message naming record, field and expectation."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from quote2cash.canonical import (
    Address,
    Amendment,
    CreditMemo,
    Customer,
    Invoice,
    InvoiceLine,
    LegalEntity,
    Money,
    Order,
    Payment,
    PricePlan,
    RecordValidationError,
    Ref,
    Subscription,
    UsageRecord,
    validate_record,
)


def _m(amount: str, currency: str = "USD") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


LINE = {
    "global_id": "il_1",
    "amount": _m("90.00"),
    "tax": _m("9.00"),
    "service_start": "2025-01-01",
    "service_end": "2025-02-01",
}
VALID: dict[type[BaseModel], dict[str, Any]] = {
    Customer: {
        "global_id": "cus_1",
        "external_ids": {"crm": "001A", "erp": "42"},
        "name": "Acme GmbH",
        "email": "ap@acme.example",
        "address": {"line1": "Hauptstr. 1", "city": "Berlin", "country": "DE"},
        "tax_ids": [["eu_vat", "DE123456789"], {"type": "us_ein", "value": "12-3456789"}],
        "currency": "EUR",
    },
    LegalEntity: {
        "global_id": "le_de",
        "name": "Q2C GmbH",
        "country": "DE",
        "base_currency": "EUR",
    },
    PricePlan: {
        "global_id": "price_1",
        "product": {"global_id": "prod_1"},
        "currency": "USD",
        "unit_amount": "0.0025",
        "interval": "month",
        "usage_type": "metered",
    },
    Order: {
        "global_id": "ord_1",
        "customer": {"external_ids": {"crm": "001A"}},
        "currency": "USD",
        "start_date": "2025-01-01",
        "end_date": "2026-01-01",
        "lines": [
            {
                "product": {"global_id": "prod_1"},
                "quantity": 10,
                "unit_price": _m("12.50"),
                "discount": _m("5.00"),
                "amount": _m("120.00"),
            }
        ],
    },
    Subscription: {
        "global_id": "sub_1",
        "customer": {"global_id": "cus_1"},
        "currency": "USD",
        "status": "active",
        "items": [{"global_id": "si_1", "price_plan": {"global_id": "price_1"}, "quantity": 5}],
        "current_period_start": "2025-01-01T00:00:00Z",
        "current_period_end": "2025-02-01T00:00:00Z",
    },
    Amendment: {
        "global_id": "amd_1",
        "subscription": {"global_id": "sub_1"},
        "subscription_item": {"global_id": "si_1"},
        "amendment_number": 1,
        "effective_at": "2025-01-15T00:00:00Z",
        "previous_quantity": 5,
        "new_quantity": 8,
    },
    Invoice: {
        "global_id": "in_123",
        "customer": {"global_id": "cus_1"},
        "currency": "USD",
        "status": "open",
        "due_date": "2025-02-15",
        "lines": [LINE],
        "tax": _m("9.00"),
        "total": _m("99.00"),
        "amount_paid": _m("0.00"),
    },
    CreditMemo: {
        "global_id": "cn_1",
        "customer": {"global_id": "cus_1"},
        "invoice": {"global_id": "in_123"},
        "currency": "USD",
        "issued_at": "2025-01-20T00:00:00Z",
        "lines": [{"amount": _m("10.00"), "tax": _m("1.00")}],
        "tax": _m("1.00"),
        "total": _m("11.00"),
    },
    Payment: {
        "global_id": "py_1",
        "invoice": {"global_id": "in_123"},
        "amount": _m("99.00"),
        "status": "succeeded",
        "created_at": "2025-01-20T00:00:00Z",
    },
    UsageRecord: {
        "subscription_item": {"global_id": "si_1"},
        "quantity": "1.5",
        "timestamp": "2025-01-20T00:00:00Z",
        "idempotency_key": "evt_1",
    },
}


def _changed(model: type[BaseModel], changes: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(VALID[model])
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DROP:
            del node[leaf]
        else:
            node[leaf] = value
    return data


_DROP = object()


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_valid_examples_pass(model: type[BaseModel]) -> None:
    assert validate_record(model, VALID[model]) == model.model_validate(VALID[model])


# (model, changes, fragments the message must contain: record, field, expectation)
BAD = [
    (
        Invoice,
        {"total": _m("100.00")},
        ["Invoice in_123: total 100.00 USD != lines 90.00 + tax 9.00 USD"],
    ),
    (
        Invoice,
        {"tax": _m("8.00"), "total": _m("98.00")},
        ["Invoice in_123", "tax 8.00 USD != sum of line taxes 9.00 USD"],
    ),
    (
        Invoice,
        {"lines.0.amount": _m("90.00", "EUR"), "lines.0.tax": _m("9.00", "EUR")},
        ["Invoice in_123", "lines[0] currency EUR != currency USD"],
    ),
    (Invoice, {"total": _m("99.00", "EUR")}, ["Invoice in_123", "total currency EUR != USD"]),
    (
        Invoice,
        {"lines.0.service_end": "2025-01-01"},
        [
            "Invoice in_123",
            "lines.0",
            "InvoiceLine il_1: service_end 2025-01-01 must be after service_start 2025-01-01",
        ],
    ),
    (
        Invoice,
        {"lines.0.tax": _m("9.00", "EUR")},
        ["lines.0", "tax currency EUR != amount currency USD"],
    ),
    (
        Invoice,
        {"status": "paid_out"},
        ["Invoice in_123", "status", "'draft', 'open', 'paid', 'void' or 'uncollectible'"],
    ),
    (Invoice, {"currency": "usd"}, ["Invoice in_123", "currency", "expected 'USD'"]),
    (Invoice, {"due_date": "2025-02-30"}, ["Invoice in_123", "due_date", "valid date"]),
    (
        Invoice,
        {"amount_paid": _m("-1.00")},
        ["Invoice in_123", "amount_paid -1.00 USD must be >= 0"],
    ),
    (
        Invoice,
        {"issued_at": "2025-01-01T00:00:00"},
        ["Invoice in_123", "issued_at", "timezone-aware"],
    ),
    (Invoice, {"tax": {"amount": 9.0, "currency": "USD"}}, ["Invoice in_123", "tax", "not float"]),
    (
        Invoice,
        {"customer": {}},
        ["Invoice in_123", "customer", "Ref needs a global_id or at least one external id"],
    ),
    (Invoice, {"total": _DROP}, ["Invoice in_123", "total", "Field required"]),
    (Invoice, {"totl": _m("1.00")}, ["Invoice in_123", "totl", "Extra inputs are not permitted"]),
    (
        Order,
        {"lines.0.amount": _m("125.00")},
        [
            "Order ord_1",
            "lines.0",
            "amount 125.00 USD != unit_price 12.50 x quantity 10 - discount 5.00 = 120.00 USD",
        ],
    ),
    (
        Order,
        {"lines.0.quantity": -1},
        ["Order ord_1", "lines.0.quantity", "greater than or equal to 0"],
    ),
    (Order, {"lines.0.quantity": 2.5}, ["Order ord_1", "lines.0.quantity", "valid integer"]),
    (Order, {"lines.0.quantity": "10"}, ["Order ord_1", "lines.0.quantity", "valid integer"]),
    (Order, {"currency": "EUR"}, ["Order ord_1: lines[0] currency USD != order currency EUR"]),
    (
        Order,
        {"end_date": "2024-12-31"},
        ["Order ord_1: end_date 2024-12-31 must be after start_date 2025-01-01"],
    ),
    (Order, {"lines": []}, ["Order ord_1: lines must not be empty"]),
    (
        Subscription,
        {"items.0.quantity": -3},
        ["Subscription sub_1", "items.0.quantity", "greater than or equal to 0"],
    ),
    (
        Subscription,
        {"current_period_end": "2024-12-01T00:00:00Z"},
        [
            "Subscription sub_1: current_period_end 2024-12-01T00:00:00+00:00 must be after "
            "current_period_start"
        ],
    ),
    (Subscription, {"status": "live"}, ["Subscription sub_1", "status", "'active'"]),
    (
        Amendment,
        {"amendment_number": 0},
        ["Amendment amd_1", "amendment_number", "greater than or equal to 1"],
    ),
    (
        Amendment,
        {"new_quantity": 5},
        ["Amendment amd_1: new_quantity 5 must differ from previous_quantity 5"],
    ),
    (
        Amendment,
        {"proration_behavior": "sometimes"},
        ["Amendment amd_1", "proration_behavior", "'create_prorations'"],
    ),
    (
        PricePlan,
        {"per_seat": True},
        ["PricePlan price_1: per_seat price must have usage_type 'licensed'"],
    ),
    (PricePlan, {"interval": "week"}, ["PricePlan price_1", "interval", "'month' or 'year'"]),
    (
        PricePlan,
        {"interval_count": 0},
        ["PricePlan price_1", "interval_count", "greater than or equal to 1"],
    ),
    (PricePlan, {"unit_amount": 0.0025}, ["PricePlan price_1", "unit_amount", "not float"]),
    (
        PricePlan,
        {"unit_amount": "-1"},
        ["PricePlan price_1", "unit_amount", "greater than or equal to 0"],
    ),
    (PricePlan, {"currency": "ABC"}, ["PricePlan price_1", "currency", "known ISO 4217 code"]),
    (Customer, {"address.country": "de"}, ["Customer cus_1", "address.country", "expected 'DE'"]),
    (Customer, {"address.country": "DEU"}, ["Customer cus_1", "address.country", "[A-Z]{2}"]),
    (
        Customer,
        {"tax_ids": [["EU VAT", "DE1"]]},
        ["Customer cus_1", "tax_ids.0.type", "should match pattern"],
    ),
    (Customer, {"email": "not-an-email"}, ["Customer cus_1", "email", "name@domain.tld"]),
    (
        Customer,
        {"external_ids": {"CRM": "1"}},
        ["Customer cus_1", "external_ids.CRM.[key]", "should match pattern"],
    ),
    (
        Customer,
        {"external_ids": {"crm": ""}},
        ["Customer cus_1", "external_ids.crm", "at least 1 character"],
    ),
    (Payment, {"status": "failed"}, ["Payment py_1: a failed payment needs a failure_reason"]),
    (
        Payment,
        {"failure_reason": "card declined"},
        ["Payment py_1: failure_reason/failure_code are only for status 'failed'"],
    ),
    (Payment, {"status": "refunded"}, ["Payment py_1: a refunded payment needs amount_refunded"]),
    (
        Payment,
        {"amount_refunded": _m("100.00")},
        ["Payment py_1: amount_refunded 100.00 USD must be > 0 and <= amount 99.00 USD"],
    ),
    (Payment, {"amount": _m("0.00")}, ["Payment py_1: amount 0.00 USD must be > 0"]),
    (
        CreditMemo,
        {"total": _m("10.00")},
        ["CreditMemo cn_1: total 10.00 USD != lines 10.00 + tax 1.00 USD"],
    ),
    (
        CreditMemo,
        {"lines.0.amount": _m("-10.00"), "total": _m("-9.00")},
        ["CreditMemo cn_1", "amount -10.00 USD must be >= 0 (a credit)"],
    ),
    (UsageRecord, {"quantity": 1.5}, ["UsageRecord evt_1", "quantity", "not float"]),
    (
        UsageRecord,
        {"quantity": "-1"},
        ["UsageRecord evt_1", "quantity", "greater than or equal to 0"],
    ),
    (UsageRecord, {"quantity": "NaN"}, ["UsageRecord evt_1", "quantity", "finite number"]),
    (
        UsageRecord,
        {"meter": "api_calls"},
        ["UsageRecord evt_1: give exactly one of subscription_item or meter"],
    ),
    (
        UsageRecord,
        {"subscription_item": None, "meter": "api_calls"},
        ["UsageRecord evt_1: meter usage needs the customer"],
    ),
    (
        UsageRecord,
        {"timestamp": "2025-01-20T00:00:00"},
        ["UsageRecord evt_1", "timestamp", "timezone-aware"],
    ),
]


@pytest.mark.parametrize(
    ("model", "changes", "fragments"), BAD, ids=[f"{m.__name__}-{'+'.join(c)}" for m, c, _ in BAD]
)
def test_bad_records_are_refused_with_a_clear_message(
    model: type[BaseModel], changes: dict[str, Any], fragments: list[str]
) -> None:
    data = _changed(model, changes)

    with pytest.raises(RecordValidationError) as raised:
        validate_record(model, data)
    with pytest.raises(ValidationError):
        model.model_validate(data)

    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message


def test_validate_record_uses_the_given_name_and_keeps_structured_errors() -> None:
    data = _changed(Invoice, {"total": _m("1.00")})
    with pytest.raises(RecordValidationError) as raised:
        validate_record(Invoice, data, record="Stripe invoice in_X")
    assert str(raised.value).startswith("Stripe invoice in_X: ")
    assert raised.value.record == "Stripe invoice in_X"
    assert raised.value.errors[0]["type"] == "value_error"


def test_record_label_falls_back_to_external_ids() -> None:
    data = _changed(Invoice, {"global_id": None, "total": _m("1.00")})
    data["external_ids"] = {"billing": "in_999"}
    with pytest.raises(RecordValidationError, match=r"^Invoice billing:in_999: total 1.00 USD"):
        validate_record(Invoice, data)
    anonymous = _changed(Invoice, {"global_id": None, "total": _m("1.00")})
    with pytest.raises(RecordValidationError, match=r"^Invoice: total 1\.00 USD"):
        validate_record(Invoice, anonymous)


def test_derived_amounts() -> None:
    invoice = Invoice.model_validate(VALID[Invoice])
    assert invoice.subtotal == Money("90.00", "USD")
    assert invoice.amount_due == Money("99.00", "USD")
    order = Order.model_validate(VALID[Order])
    assert order.total == Money("120.00", "USD")
    line = InvoiceLine.model_validate(LINE)
    assert line.service_days == 31
    assert line.service_last_day.isoformat() == "2025-01-31"
    plan = PricePlan.model_validate(VALID[PricePlan])
    assert plan.amount_for(1001) == Money("2.50", "USD")
    assert plan.amount_for(1002) == Money("2.51", "USD")
    assert plan.amount_for("1") == Money("0.00", "USD")


def test_tax_ids_are_pairs_and_refs_are_readable() -> None:
    customer = Customer.model_validate(VALID[Customer])
    assert [t.as_pair() for t in customer.tax_ids] == [
        ("eu_vat", "DE123456789"),
        ("us_ein", "12-3456789"),
    ]
    assert customer.id_in("crm") == "001A"
    assert customer.label == "Customer cus_1"
    ref = Ref.external("crm", "001A")
    assert ref.id_in("crm") == "001A" and ref.id_in("erp") is None
    assert str(ref) == "crm:001A"
    assert str(Ref.to("cus_1")) == "cus_1"


def test_invoice_tax_may_be_known_only_per_invoice() -> None:
    data = _changed(Invoice, {"lines.0.tax": None})
    assert Invoice.model_validate(data).tax == Money("9.00", "USD")


def test_address_is_a_value() -> None:
    a = Address(line1="1 Main St", city="Springfield", country="US")
    assert a == Address.model_validate_json(a.model_dump_json())
