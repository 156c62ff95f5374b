"""Idempotency, authentication, rate limits and injected faults as the SDK and raw HTTP see them."""

from __future__ import annotations

import json

import pytest
import stripe

from quote2cash.sandbox.stripe import EmulatorConfig

from .conftest import API_KEY, Sandbox


def test_idempotent_replay_returns_the_stored_response(
    sandbox: Sandbox, client: stripe.StripeClient
) -> None:
    params = {"name": "Once", "metadata": {"deal": "D-1"}}
    first = client.v1.customers.create(
        params=params, options={"idempotency_key": "deal-D-1-customer"}
    )
    again = client.v1.customers.create(
        params=params, options={"idempotency_key": "deal-D-1-customer"}
    )
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.body == first.last_response.body
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert len(client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create(
            params={"name": "Twice"}, options={"idempotency_key": "deal-D-1-customer"}
        )
    assert info.value.http_status == 400
    assert info.value.json_body["error"]["type"] == "idempotency_error"
    other_account = sandbox.client(api_key="sk_test_other_account")
    separate = other_account.v1.customers.create(
        params=params, options={"idempotency_key": "deal-D-1-customer"}
    )
    assert separate.id != first.id


def test_idempotency_saves_endpoint_errors_but_not_validation_or_faults(sandbox: Sandbox) -> None:
    status, _, body = sandbox.raw(
        "POST", "/v1/customers/cus_missing", "name=x", {"Idempotency-Key": "k-404"}
    )
    assert status == 404
    status, headers, replay = sandbox.raw(
        "POST", "/v1/customers/cus_missing", "name=x", {"Idempotency-Key": "k-404"}
    )
    assert (status, headers.get("Idempotent-Replayed"), replay) == (404, "true", body)
    status, _, _ = sandbox.raw(
        "POST", "/v1/customers", "email=broken", {"Idempotency-Key": "k-400"}
    )
    assert status == 400
    status, headers, _ = sandbox.raw(
        "POST", "/v1/customers", "email=ok@x.example", {"Idempotency-Key": "k-400"}
    )
    assert status == 200 and "Idempotent-Replayed" not in headers
    sandbox.emulator.config.fail_next_500 = 1
    status, headers, fault = sandbox.raw(
        "POST", "/v1/customers", "name=retry", {"Idempotency-Key": "k-500"}
    )
    assert (
        status == 500
        and fault["error"]["type"] == "api_error"
        and headers["Stripe-Should-Retry"] == "true"
    )
    status, headers, created = sandbox.raw(
        "POST", "/v1/customers", "name=retry", {"Idempotency-Key": "k-500"}
    )
    assert status == 200 and created["name"] == "retry" and "Idempotent-Replayed" not in headers


def test_sdk_retries_absorb_injected_500s_without_duplicates(sandbox: Sandbox) -> None:
    sandbox.emulator.config.fail_next_500 = 2
    retrying = sandbox.client(max_network_retries=2)
    customer = retrying.v1.customers.create(params={"name": "Persistent"})
    assert customer.name == "Persistent"
    assert [c.id for c in retrying.v1.customers.list().data] == [customer.id]


def test_authentication(sandbox: Sandbox) -> None:
    status, _, body = sandbox.raw("GET", "/v1/customers", api_key=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    with pytest.raises(stripe.AuthenticationError) as info:
        sandbox.client(api_key="pk_test_public").v1.customers.list()
    assert info.value.http_status == 401
    assert info.value.json_body["error"]["code"] == "api_key_invalid"
    assert "pk_test_public" not in info.value.json_body["error"]["message"]
    sandbox.emulator.config = EmulatorConfig(api_keys={API_KEY})
    assert sandbox.client().v1.customers.list().data == []
    with pytest.raises(stripe.AuthenticationError):
        sandbox.client(api_key="sk_test_wrong_but_well_formed").v1.customers.list()


def test_rate_limit_storm_and_every_nth(sandbox: Sandbox, client: stripe.StripeClient) -> None:
    sandbox.emulator.config.fail_next_429 = 3
    for _ in range(3):
        status, headers, body = sandbox.raw("GET", "/v1/customers")
        assert status == 429 and headers["Retry-After"] == "1"
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit"
        assert body["error"]["doc_url"].endswith("/rate_limit")
    assert sandbox.raw("GET", "/v1/customers")[0] == 200
    sandbox.emulator.config.rate_limit_every_nth = 3
    statuses = [sandbox.raw("GET", "/v1/customers")[0] for _ in range(9)]
    assert statuses.count(429) == 3
    sandbox.emulator.config.rate_limit_every_nth = None
    sandbox.emulator.config.fail_next_429 = 1
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.customers.create(params={"name": "limited"}, options={"idempotency_key": "k-429"})
    assert info.value.http_status == 429
    created = client.v1.customers.create(
        params={"name": "limited"}, options={"idempotency_key": "k-429"}
    )
    assert created.last_response.headers.get("Idempotent-Replayed") is None


def test_requests_per_second_limit(sandbox: Sandbox) -> None:
    sandbox.emulator.config.rate_limit_per_second = 5
    statuses = [sandbox.raw("GET", "/v1/customers")[0] for _ in range(20)]
    assert statuses[:5] == [200] * 5
    assert statuses.count(429) >= 10


def test_burst_and_usage_count_every_call_and_name_the_limit(sandbox: Sandbox) -> None:
    sandbox.emulator.config.rate_limit_per_second = 1
    sandbox.emulator.config.rate_limit_burst = 3
    answers = [sandbox.raw("GET", "/v1/customers") for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
    assert answers[3][1]["Stripe-Rate-Limited-Reason"] == "global-rate"
    status, _, usage = sandbox.raw("GET", "/_emulator/usage")
    assert status == 200
    assert (usage["requests"], usage["rate_limited"]) == (5, 2)
    assert sum(usage["per_second"].values()) == 5
    assert sum(usage["accepted_per_second"].values()) == 3
    assert len(usage["accepted_at"]) == 3 and len(usage["limited_at"]) == 2


def test_usage_counts_calls_over_the_configured_budget_without_refusing_them(
    sandbox: Sandbox,
) -> None:
    # 3 calls allowed in any 100 s (burst 2 + 0.01/s x 100 s), so a slow machine counts the same
    budget = {"budget_rate": 0.01, "budget_burst": 2, "budget_window_seconds": 100}
    status, _, _ = sandbox.raw("POST", "/_emulator/config", json.dumps(budget))
    assert status == 200
    answers = [sandbox.raw("GET", "/v1/customers")[0] for _ in range(5)]
    assert answers == [200] * 5  # counted, never refused: refusing is the rate limiter's job
    _, _, usage = sandbox.raw("GET", "/_emulator/usage")
    assert (usage["budget_calls"], usage["over_budget"], usage["peak_in_window"]) == (5, 2, 5)
    status, _, body = sandbox.raw("POST", "/_emulator/config", json.dumps({"budget_rate": 0}))
    assert status == 400 and "budget_rate" in body["error"]


def test_expand_and_config_endpoint(sandbox: Sandbox, client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(
        params={
            "name": "Expand",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    expanded = client.v1.customers.retrieve(
        customer.id, params={"expand": ["invoice_settings.default_payment_method"]}
    )
    assert expanded.invoice_settings.default_payment_method.card.last4 == "4242"
    status, _, config = sandbox.raw(
        "POST",
        "/_emulator/config",
        '{"fail_next_429": 1}',
        {"Content-Type": "application/json"},
        api_key=None,
    )
    assert status == 200 and config["fail_next_429"] == 1
    assert sandbox.raw("GET", "/v1/customers")[0] == 429


def test_failed_requests_leave_no_partial_changes(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError):
        client.v1.customers.create(
            params={"name": "Declined", "payment_method": "pm_card_chargeDeclined"}
        )
    assert client.v1.customers.list().data == []
    assert client.v1.events.list(params={"type": "customer.created"}).data == []
    customer = client.v1.customers.create(
        params={
            "name": "Kept",
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
        }
    )
    product = client.v1.products.create(params={"name": "Seat"})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1000,
            "recurring": {"interval": "month"},
        }
    )
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"price": price.id, "quantity": 2}]}
    )
    item = sub["items"].data[0]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.subscriptions.update(
            sub.id,
            params={"items": [{"id": item.id, "quantity": 5}, {"id": "si_missing", "quantity": 1}]},
        )
    assert info.value.param == "items[1][id]"
    assert client.v1.subscription_items.retrieve(item.id).quantity == 2
    assert client.v1.invoice_items.list(params={"customer": customer.id}).data == []
    updated_events = client.v1.events.list(params={"type": "customer.subscription.updated"}).data
    assert all(e.data.object["items"].data[0].quantity == 2 for e in updated_events)
