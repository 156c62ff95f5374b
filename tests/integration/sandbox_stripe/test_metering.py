"""Billing meters: events deduplicated by identifier, aggregated into the renewal invoice."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import stripe

from .conftest import DAY, T0, Sandbox, make_clock, make_customer, make_seat_price

FEB_1 = T0 + 31 * DAY


def test_meter_events_dedup_and_usage_invoiced(client: stripe.StripeClient) -> None:
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "API calls",
            "event_name": "api_calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    assert meter.customer_mapping.event_payload_key == "stripe_customer_id"
    product = client.v1.products.create(params={"name": "API usage"})
    metered = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount_decimal": "0.5",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    assert metered.unit_amount is None and metered.unit_amount_decimal == Decimal("0.5")
    seat = make_seat_price(client, 1000)
    clock = make_clock(client)
    customer = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"price": seat.id, "quantity": 2}, {"price": metered.id}],
        }
    )
    assert sub.latest_invoice and client.v1.invoices.retrieve(sub.latest_invoice).total == 2000

    def record(value: str, identifier: str, at: int) -> None:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "api_calls",
                "payload": {"stripe_customer_id": customer.id, "value": value},
                "identifier": identifier,
                "timestamp": at,
            }
        )

    record("100", "batch-1", T0 + DAY)
    record("251", "batch-2", T0 + 2 * DAY)
    with pytest.raises(stripe.InvalidRequestError) as info:
        record("100", "batch-1", T0 + DAY)
    assert info.value.http_status == 400 and info.value.param == "identifier"
    record("9999", "next-period", FEB_1 + DAY)
    record("1000", "mistake", T0 + 3 * DAY)
    adjustment = client.v1.billing.meter_event_adjustments.create(
        params={"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "mistake"}}
    )
    assert (adjustment.status, adjustment.cancel.identifier) == ("complete", "mistake")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meter_event_adjustments.create(
            params={
                "event_name": "api_calls",
                "type": "cancel",
                "cancel": {"identifier": "mistake"},
            }
        )
    summary = client.v1.billing.meters.event_summaries.list(
        meter.id, params={"customer": customer.id, "start_time": T0, "end_time": FEB_1}
    )
    assert summary.data[0].aggregated_value == 351
    with pytest.raises(stripe.InvalidRequestError) as bad:
        record("lots", "batch-3", T0 + DAY)
    assert bad.value.param == "payload[value]"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "nope",
                "payload": {"stripe_customer_id": customer.id, "value": "1"},
            }
        )
    assert unknown.value.param == "event_name"
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1 + 3600})
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    usage = [line for line in renewal.lines.data if line.pricing.price_details.price == metered.id]
    assert len(usage) == 1
    # 351 units at 0.5 cent = 175.5 -> 176 (half away from zero)
    assert (usage[0].quantity, usage[0].amount) == (351, 176)
    assert (usage[0].period.start, usage[0].period.end) == (T0, FEB_1)
    assert renewal.total == 2000 + 176 and renewal.status == "paid"


def test_count_meter_and_custom_payload_keys(client: stripe.StripeClient) -> None:
    meter = client.v1.billing.meters.create(
        params={
            "display_name": "Logins",
            "event_name": "logins",
            "default_aggregation": {"formula": "count"},
            "customer_mapping": {"event_payload_key": "account", "type": "by_id"},
        }
    )
    product = client.v1.products.create(params={"name": "Logins"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 3,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    clock = make_clock(client)
    customer = make_customer(client, clock)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id}]}
    )
    for i in range(4):
        client.v1.billing.meter_events.create(
            params={
                "event_name": "logins",
                "payload": {"account": customer.id},
                "identifier": f"l{i}",
            }
        )
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": FEB_1})
    renewal = client.v1.invoices.list(params={"subscription": sub.id}).data[0]
    assert [(line.quantity, line.amount) for line in renewal.lines.data] == [(4, 12)]


def test_an_identifier_is_deduplicated_for_24_hours_of_real_time_only(sandbox: Sandbox) -> None:
    """Stripe dedups ``identifier`` in a rolling 24 h window: the hub cannot lean on it for
    older postings (its own postings record covers all history)."""
    client = sandbox.client()
    client.v1.billing.meters.create(
        params={
            "display_name": "Calls",
            "event_name": "calls",
            "default_aggregation": {"formula": "sum"},
        }
    )
    customer = make_customer(client)
    store = sandbox.emulator.store
    now = [float(T0 + 40 * DAY)]
    store.clock = lambda: now[0]
    try:

        def record() -> None:
            client.v1.billing.meter_events.create(
                params={
                    "event_name": "calls",
                    "payload": {"stripe_customer_id": customer.id, "value": "5"},
                    "identifier": "agg-1:v1",
                    "timestamp": T0 + 39 * DAY,
                }
            )

        record()
        now[0] += DAY - 1
        with pytest.raises(stripe.InvalidRequestError) as info:
            record()
        assert info.value.code == "duplicate_meter_event"
        now[0] += 1
        record()
        events = [e for e in store.all("billing.meter_event") if e["identifier"] == "agg-1:v1"]
        assert len(events) == 2
    finally:
        store.clock = time.time


def test_an_identifier_longer_than_100_characters_is_refused(client: stripe.StripeClient) -> None:
    client.v1.billing.meters.create(
        params={"display_name": "C", "event_name": "c", "default_aggregation": {"formula": "sum"}}
    )
    customer = make_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meter_events.create(
            params={
                "event_name": "c",
                "payload": {"stripe_customer_id": customer.id, "value": "1"},
                "identifier": "x" * 101,
            }
        )
    assert info.value.param == "identifier" and "100 characters" in str(info.value)


def test_event_summaries_take_whole_minutes_only(client: stripe.StripeClient) -> None:
    meter = client.v1.billing.meters.create(
        params={"display_name": "M", "event_name": "m", "default_aggregation": {"formula": "sum"}}
    )
    customer = make_customer(client)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.billing.meters.event_summaries.list(
            meter.id, params={"customer": customer.id, "start_time": T0 + 1, "end_time": T0 + DAY}
        )
    assert info.value.param == "start_time" and "minute" in str(info.value)
