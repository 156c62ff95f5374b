"""Every object the emulator serves has the keys and JSON types of Stripe's published fixture.

The check is recursive: each key of the fixture object must be present with the same JSON type
(bool, int, str, object, array). A ``null`` in the fixture admits any value. Where the fixture shows
an example value but Stripe documents the field as nullable (and the emulator legitimately has no
value for it), the field is listed in ``NULLABLE`` below; nothing else may be null. Fields whose
contents depend on another field (``event.data.object``) are checked by ``object`` name only, and
``metadata`` is a free-form map (its example keys are not required).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stripe

from .conftest import T0, make_clock, make_customer, make_seat_price

FIXTURES = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures" / "stripe" / "fixtures3.json").read_text()
)["resources"]

# Nullable in Stripe's API reference; the fixture happens to show a populated example.
NULLABLE: dict[str, set[str]] = {
    "customer": {
        "address",
        "currency",
        "discount",
        "shipping",
        "invoice_settings.rendering_options",
    },
    "product": {"default_price", "description", "package_dimensions"},
    "price": {"custom_unit_amount", "transform_quantity"},
    "subscription": {
        "automatic_tax.liability",
        "billing_cycle_anchor_config",
        "billing_mode.flexible",
        "billing_thresholds",
        "cancel_at",
        "canceled_at",
        "ended_at",
        "next_pending_invoice_item_invoice",
        "pause_collection",
        "payment_settings.payment_method_options",
        "pending_invoice_item_interval",
        "pending_update",
        "transfer_data",
        "trial_end",
        "trial_start",
        "items.data[].billing_thresholds",
        "items.data[].plan.transform_usage",
        "items.data[].price.custom_unit_amount",
        "items.data[].price.transform_quantity",
    },
    "subscription_item": {
        "billing_thresholds",
        "plan.transform_usage",
        "price.custom_unit_amount",
        "price.transform_quantity",
    },
    "invoice": {
        "automatic_tax.liability",
        "customer_address",
        "customer_shipping",
        "due_date",
        "from_invoice",
        "last_finalization_error",
        "next_payment_attempt",
        "parent.quote_details",
        "payment_settings.payment_method_options",
        "rendering",
        "shipping_cost",
        "shipping_details",
        "webhooks_delivered_at",
        "lines.data[].parent.invoice_item_details",
        "lines.data[].parent.subscription_item_details.proration_details.credited_items",
    },
    "invoiceitem": {"parent.subscription_details.subscription_item"},
    "credit_note": {
        "shipping_cost",
        "voided_at",
        "out_of_band_amount",
        "total_excluding_tax",
        "lines.data[].tax_rates[].flat_amount",
    },
    "credit_note_line_item": {"tax_rates[].flat_amount"},
    # A percentage rate has no flat amount.
    "tax_rate": {"flat_amount"},
    "payment_intent": {
        "automatic_payment_methods",
        "canceled_at",
        "last_payment_error",
        "next_action",
        "payment_method_configuration_details",
        "processing",
        "shipping",
        "transfer_data",
    },
    "refund": set(),
    "billing.meter": set(),
    "billing.meter_event": set(),
    "billing.meter_event_adjustment": set(),
    "test_helpers.test_clock": set(),
    "event": set(),
    "webhook_endpoint": set(),
    # Also served, beyond the resources the emulator is specified for:
    "payment_method": {
        "card.generated_from",
        "card.wallet",
        "billing_details.address",
        "billing_details.email",
        "billing_details.phone",
    },
    "charge": {
        "billing_details.address",
        "billing_details.name",
        "description",
        "payment_method_details.card.installments",
        "payment_method_details.card.three_d_secure",
        "payment_method_details.card.wallet",
        "shipping",
        "source",
        "transfer_data",
    },
    "invoice_payment": set(),
    "plan": {"transform_usage"},
    "line_item": {
        "parent.invoice_item_details",
        "parent.subscription_item_details.proration_details.credited_items",
    },
    "deleted_customer": set(),
    "deleted_subscription_item": set(),
    "deleted_invoiceitem": set(),
    "deleted_product": set(),
    "deleted_webhook_endpoint": set(),
    "deleted_invoice": set(),
    "deleted_test_helpers.test_clock": set(),
    "deleted_plan": set(),
    # Coupons and the discounts redeemed from them (a percent coupon has no currency).
    "coupon": {"currency"},
    "discount": set(),
    "deleted_coupon": set(),
}
POLYMORPHIC = {"event": {"data.object"}}
LIST_FIXTURE = {"object": "list", "data": [], "has_more": False, "url": "/v1/things"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_errors(fixture: Any, ours: Any, resource: str, path: str = "") -> list[str]:
    """Every place where ``ours`` lacks a fixture key or has a different JSON type."""
    nullable = NULLABLE.get(resource, set())
    errors: list[str] = []
    for key, expected in fixture.items():
        where = f"{path}.{key}" if path else key
        if key not in ours:
            errors.append(f"{resource}: missing key {where}")
            continue
        actual = ours[key]
        if expected is None:
            continue
        if actual is None:
            if where not in nullable:
                errors.append(f"{resource}: {where} is null, fixture has {_json_type(expected)}")
            continue
        if _json_type(actual) != _json_type(expected):
            errors.append(
                f"{resource}: {where} is {_json_type(actual)}, fixture has {_json_type(expected)}"
            )
            continue
        if where in POLYMORPHIC.get(resource, set()) or key == "metadata":
            continue
        if isinstance(expected, dict):
            errors.extend(shape_errors(expected, actual, resource, where))
        elif isinstance(expected, list) and expected and actual and isinstance(expected[0], dict):
            errors.extend(shape_errors(expected[0], actual[0], resource, where + "[]"))
    if (
        "object" in fixture
        and isinstance(fixture["object"], str)
        and ours.get("object") != fixture["object"]
    ):
        errors.append(
            f"{resource}: object {ours.get('object')!r} at {path or '<root>'} "
            f"!= {fixture['object']!r}"
        )
    return errors


def raw(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(obj.last_response.body)
    return data


@pytest.fixture
def served(client: stripe.StripeClient) -> dict[str, dict[str, Any]]:
    """One live example of each resource, fetched as raw JSON through the SDK."""
    out: dict[str, dict[str, Any]] = {}
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": "http://127.0.0.1:9/none", "enabled_events": ["*"], "description": "shape"}
    )
    out["webhook_endpoint"] = raw(client.v1.webhook_endpoints.retrieve(endpoint.id))
    clock = make_clock(client)
    out["test_helpers.test_clock"] = raw(client.v1.test_helpers.test_clocks.retrieve(clock.id))
    customer = make_customer(client, clock, metadata={"crm_id": "001"})
    out["customer"] = raw(client.v1.customers.retrieve(customer.id))
    price = make_seat_price(client)
    out["price"] = raw(client.v1.prices.retrieve(price.id))
    out["product"] = raw(client.v1.products.retrieve(price.product))
    vat = client.v1.tax_rates.create(
        params={
            "display_name": "VAT",
            "description": "VAT Germany",
            "percentage": 19,
            "inclusive": False,
            "country": "DE",
            "jurisdiction": "DE",
            "tax_type": "vat",
        }
    )
    out["tax_rate"] = raw(client.v1.tax_rates.retrieve(vat.id))
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": price.id, "quantity": 4}],
            "default_tax_rates": [vat.id],
        }
    )
    out["subscription"] = raw(client.v1.subscriptions.retrieve(sub.id))
    out["subscription_item"] = raw(client.v1.subscription_items.retrieve(sub["items"].data[0].id))
    out["invoice"] = raw(client.v1.invoices.retrieve(sub.latest_invoice))
    client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "quantity": 6}],
            "proration_date": T0 + 86400,
        },
    )
    item = client.v1.invoice_items.list(params={"customer": customer.id, "pending": True}).data[0]
    out["invoiceitem"] = raw(client.v1.invoice_items.retrieve(item.id))
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {
                    "type": "invoice_line_item",
                    "invoice_line_item": invoice.lines.data[0].id,
                    "quantity": 1,
                }
            ],
            "credit_amount": 1190,  # one seat of 10.00 plus 19 % VAT
        }
    )
    out["credit_note"] = raw(client.v1.credit_notes.retrieve(note.id))
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1099,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    out["payment_intent"] = raw(client.v1.payment_intents.retrieve(intent.id))
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})
    out["refund"] = raw(client.v1.refunds.retrieve(refund.id))
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "calls",
            "event_name": "calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    out["billing.meter"] = raw(client.v1.billing.meters.retrieve(meter.id))
    out["billing.meter_event"] = raw(
        client.v1.billing.meter_events.create(
            params={
                "event_name": "calls",
                "payload": {"stripe_customer_id": customer.id, "value": "25"},
            }
        )
    )
    out["billing.meter_event_adjustment"] = raw(
        client.v1.billing.meter_event_adjustments.create(
            params={
                "event_name": "calls",
                "type": "cancel",
                "cancel": {"identifier": out["billing.meter_event"]["identifier"]},
            }
        )
    )
    event = client.v1.events.list(params={"type": "customer.created"}).data[0]
    out["event"] = raw(client.v1.events.retrieve(event.id))
    out["list"] = raw(client.v1.customers.list())
    out["payment_method"] = raw(client.v1.payment_methods.retrieve(intent.payment_method))
    out["charge"] = raw(client.v1.charges.retrieve(intent.latest_charge))
    paid = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data[0]
    out["invoice_payment"] = raw(client.v1.invoice_payments.retrieve(paid.id))
    out["plan"] = raw(client.v1.plans.retrieve(price.id))
    out["line_item"] = raw(client.v1.invoices.line_items.list(invoice.id))["data"][0]
    out["credit_note_line_item"] = raw(client.v1.credit_notes.line_items.list(note.id))["data"][0]
    coupon = client.v1.coupons.create(
        params={
            "percent_off": 25.5,
            "duration": "repeating",
            "duration_in_months": 3,
            "redeem_by": T0 + 3650 * 86400,
            "max_redemptions": 5,
            "name": "25.5% off",
        }
    )
    discounted = client.v1.subscription_items.create(
        params={
            "subscription": sub.id,
            "price": make_seat_price(client, 900).id,
            "discounts": [{"coupon": coupon.id}],
            "proration_behavior": "none",
            "expand": ["discounts"],
        }
    )
    out["discount"] = raw(discounted)["discounts"][0]
    out["coupon"] = raw(client.v1.coupons.retrieve(coupon.id))
    client.v1.subscription_items.delete(discounted.id, params={"proration_behavior": "none"})
    out["deleted_coupon"] = raw(client.v1.coupons.delete(coupon.id))
    extra_item = client.v1.subscription_items.create(
        params={
            "subscription": sub.id,
            "price": make_seat_price(client, 700).id,
            "proration_behavior": "none",
        }
    )
    out["deleted_subscription_item"] = raw(
        client.v1.subscription_items.delete(extra_item.id, params={"proration_behavior": "none"})
    )
    pending = client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 100, "currency": "usd"}
    )
    out["deleted_invoiceitem"] = raw(client.v1.invoice_items.delete(pending.id))
    draft = client.v1.invoices.create(params={"customer": customer.id})
    out["deleted_invoice"] = raw(client.v1.invoices.delete(draft.id))
    lonely = client.v1.products.create(params={"name": "No prices"})
    out["deleted_product"] = raw(client.v1.products.delete(lonely.id))
    out["deleted_plan"] = raw(client.v1.plans.delete(price.id))
    out["deleted_webhook_endpoint"] = raw(client.v1.webhook_endpoints.delete(endpoint.id))
    out["deleted_customer"] = raw(client.v1.customers.delete(customer.id))
    out["deleted_test_helpers.test_clock"] = raw(
        client.v1.test_helpers.test_clocks.delete(clock.id)
    )
    return out


RESOURCES = sorted(NULLABLE)


@pytest.mark.parametrize("resource", RESOURCES)
def test_shape_matches_fixture(served: dict[str, dict[str, Any]], resource: str) -> None:
    assert shape_errors(FIXTURES[resource], served[resource], resource) == []


def test_list_object_shape(served: dict[str, dict[str, Any]]) -> None:
    assert shape_errors(LIST_FIXTURE, served["list"], "list") == []
    assert served["list"]["url"] == "/v1/customers"


def test_checker_catches_missing_keys_and_wrong_types() -> None:
    fixture = FIXTURES["customer"]
    broken = dict(fixture)
    del broken["balance"]
    broken["delinquent"] = 0
    broken["invoice_settings"] = {**fixture["invoice_settings"], "custom_fields": None, "footer": 5}
    broken["address"] = None
    broken["test_clock"] = "clock_x"
    errors = shape_errors(fixture, broken, "customer")
    assert "customer: missing key balance" in errors
    assert "customer: delinquent is integer, fixture has boolean" in errors
    assert len(errors) == 2
    broken["object"] = "account"
    broken["balance"] = 0
    broken["delinquent"] = False
    broken["livemode"] = None
    assert shape_errors(fixture, broken, "customer") == [
        "customer: livemode is null, fixture has boolean",
        "customer: object 'account' at <root> != 'customer'",
    ]
