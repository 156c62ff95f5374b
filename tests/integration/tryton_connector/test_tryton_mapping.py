"""Tryton <-> canonical mapping: pure functions, no server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from quote2cash.canonical import (
    Address,
    InvoiceLine,
    InvoiceStatus,
    Money,
    OrderLine,
    Ref,
    TaxRate,
)
from quote2cash.connectors.tryton import mapping

START, END = dt.date(2027, 1, 1), dt.date(2028, 1, 1)


def _line(amount: str, quantity: str | None, unit: str | None) -> InvoiceLine:
    return InvoiceLine(
        amount=Money(amount, "EUR"),
        quantity=Decimal(quantity) if quantity is not None else None,
        unit_amount=Decimal(unit) if unit is not None else None,
        service_start=START,
        service_end=END,
    )


@pytest.mark.parametrize(
    ("amount", "quantity", "unit", "expected"),
    [
        ("99.99", "3", "33.33", (3.0, Decimal("33.33"))),
        ("-12.34", "1", "-12.34", (1.0, Decimal("-12.34"))),
        ("30.00", "12000", "0.0025", (12000.0, Decimal("0.0025"))),
        # a unit price finer than Tryton's 4 decimals: one unit at the amount
        ("0.03", "12", "0.00250001", (1.0, Decimal("0.03"))),
        # a fractional quantity would be rounded by the unit of measure: one unit at the amount
        ("1.25", "2.5", "0.50", (1.0, Decimal("1.25"))),
        # billing rounded the product: Tryton must not round it differently
        ("33.34", "3", "11.1111", (1.0, Decimal("33.34"))),
        ("5.00", None, None, (1.0, Decimal("5.00"))),
    ],
)
def test_invoice_line_amount_multiplies_to_the_canonical_amount(
    amount: str, quantity: str | None, unit: str | None, expected: tuple[float, Decimal]
) -> None:
    result = mapping.invoice_line_amount(_line(amount, quantity, unit))
    assert (result.quantity, result.unit_price) == expected
    assert Decimal(str(result.quantity)) * result.unit_price == Decimal(amount)


def test_order_line_folds_an_exact_discount_into_the_unit_price() -> None:
    line = OrderLine(
        product=Ref.external("erp", "PLAT-SEAT"),
        quantity=4,
        unit_price=Money("50.00", "USD"),
        discount=Money("20.00", "USD"),
        amount=Money("180.00", "USD"),
    )
    assert mapping.order_line_amount(line) == mapping.LineAmount(4.0, Decimal("45"))
    odd = line.model_copy(update={"quantity": 3, "amount": Money("130.00", "USD")})
    assert mapping.order_line_amount(odd) == mapping.LineAmount(1.0, Decimal("130.00"))


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("draft", InvoiceStatus.DRAFT),
        ("validated", InvoiceStatus.DRAFT),
        ("posted", InvoiceStatus.OPEN),
        ("paid", InvoiceStatus.PAID),
        ("cancelled", InvoiceStatus.VOID),
    ],
)
def test_invoice_states_map_to_canonical_statuses(state: str, status: InvoiceStatus) -> None:
    assert mapping.invoice_status(state) is status


def test_an_unknown_invoice_state_is_refused() -> None:
    with pytest.raises(ValueError, match="'archived'"):
        mapping.invoice_status("archived")


def test_address_round_trips_through_the_street_block() -> None:
    address = Address(
        line1="500 Congress Ave", line2="Suite 2", city="Austin", postal_code="78701", country="US"
    )
    values = mapping.address_values(address, country_id=7)
    assert values == {
        "street_unstructured": "500 Congress Ave\nSuite 2",
        "city": "Austin",
        "postal_code": "78701",
        "country": 7,
    }
    assert mapping.address_from_tryton(values, "US") == address
    assert mapping.address_from_tryton({"city": "Austin"}, "US") is None


def test_party_markers_become_the_global_id_not_tax_ids() -> None:
    customer = mapping.customer_from_party(
        {"id": 12, "name": "Acme", "code": "C-0012"},
        addresses=[],
        identifiers=[
            (None, mapping.global_id_marker("cus-1")),
            (None, mapping.idempotency_marker("evt-1:upsert")),
            ("eu_vat", "DE811569869"),
        ],
        email="ap@acme.example",
    )
    assert customer.global_id == "cus-1"
    assert customer.external_ids == {"erp": "12", "erp_number": "C-0012"}
    assert [t.as_pair() for t in customer.tax_ids] == [("eu_vat", "DE811569869")]


def test_products_keep_code_as_sku_and_id_as_erp_id() -> None:
    product = mapping.product_from_tryton(
        {
            "id": 3,
            "code": "API-CALLS",
            "template.": {"name": "API calls"},
            "default_uom.": {"name": "Unit"},
            "active": True,
        }
    )
    assert (product.sku, product.name, product.unit_label) == ("API-CALLS", "API calls", "Unit")
    assert product.external_ids == {"erp": "3"} and product.global_id is None


def test_item_codes_try_erp_item_code_sku_product_code_then_global_id() -> None:
    ref = Ref(
        global_id="prod-1",
        external_ids={"product_code": "PC", "sku": "PLAT-SEAT", "erp": "1", "item_code": "IC"},
    )
    assert mapping.item_codes(ref) == ["1", "IC", "PLAT-SEAT", "PC", "prod-1"]
    assert mapping.item_codes(Ref(external_ids={"product_code": "X", "sku": "X"})) == ["X"]


@pytest.mark.parametrize(("text", "expected"), [("12", 12), (" 7 ", 7), ("0", None), ("x1", None)])
def test_record_ids_are_positive_integers(text: str, expected: int | None) -> None:
    assert mapping.record_id(text) == expected


# --- tax postings ----------------------------------------------------------------------------


def _eur(value: str) -> Money:
    return Money(value, "EUR")


def test_tax_postings_group_billings_tax_per_rate_in_first_seen_order() -> None:
    vat = TaxRate(code="DE-VAT-19", display_name="VAT", percentage=Decimal(19))
    reduced = TaxRate(code="DE-VAT-7", display_name="VAT", percentage=Decimal(7))
    postings = mapping.tax_postings(
        [
            (_eur("10.50"), _eur("2.00"), vat),
            (_eur("20.00"), _eur("1.40"), reduced),
            (_eur("23.50"), _eur("4.47"), vat),
        ],
        _eur("7.87"),
    )
    assert [(p.code, p.base, p.amount, p.line_bases) for p in postings] == [
        ("DE-VAT-19", Decimal("34.00"), Decimal("6.47"), (Decimal("10.50"), Decimal("23.50"))),
        ("DE-VAT-7", Decimal("20.00"), Decimal("1.40"), (Decimal("20.00"),)),
    ]
    assert postings[0].plausible(Decimal("0.19"))  # 6.46 exactly, 6.47 per line
    assert postings[0].per_line(Decimal("0.19"), "EUR") == Decimal("6.47")
    assert not postings[0].plausible(Decimal("0.20"))


def test_tax_without_a_rate_is_one_posting_over_the_unrated_lines() -> None:
    postings = mapping.tax_postings(
        [(_eur("99.99"), None, None), (_eur("-12.34"), None, None)], _eur("16.66")
    )
    assert [(p.code, p.base, p.amount) for p in postings] == [
        (None, Decimal("87.65"), Decimal("16.66"))
    ]
    assert mapping.tax_postings([(_eur("99.99"), None, None)], _eur("0")) == []


def test_a_credit_line_netting_several_billing_lines_allows_their_rounding() -> None:
    """A proration credit netted into one line (117.67 at 19 %) carries billing's tax rounded on
    each of its three lines (22.35), not the document's 22.36: plausible, not refused."""
    netted = [(_eur("117.67"), None, None)]
    [alone] = mapping.tax_postings(netted, _eur("22.35"))
    assert not alone.plausible(Decimal("0.19"))
    [netting] = mapping.tax_postings(netted, _eur("22.35"), pieces=[3])
    assert (netting.pieces, netting.amount) == (3, Decimal("22.35"))
    assert netting.plausible(Decimal("0.19"))
    assert not netting.plausible(Decimal("0.20"))
