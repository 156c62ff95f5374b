"""Classified failure: auth; rate limits and 5xx handed to the engine, whose retry makes each
thing once; unknown ids; bad prices."""

from __future__ import annotations

import pytest

from quote2cash.canonical import Customer
from quote2cash.connectors.roles import Billing
from quote2cash.engine.errors import AuthError, DataError, MappingError, TransientError
from support.engine_layer import EngineLayer

from .harness import BillingHarness, subscription_for


async def test_a_rejected_secret_is_an_auth_error_that_names_billing_not_the_secret(
    harness: BillingHarness,
) -> None:
    wrong = harness.billing_with_bad_secret()
    secret = harness.bad_secret
    with pytest.raises(AuthError) as info:
        await wrong.upsert_customer(Customer(name="X"), idempotency_key="k1")
    assert info.value.system == "billing"
    assert info.value.category == "auth"
    text = f"{info.value} {info.value!r} {info.value.args}"
    assert "billing" in str(info.value)
    assert secret not in text and secret[-8:] not in text
    assert secret not in repr(wrong)
    check = await wrong.check()
    assert (check.reachable, check.authenticated) == (True, False)
    assert secret not in check.detail


async def test_check_reports_a_working_connection(billing: Billing) -> None:
    check = await billing.check()
    assert (check.system, check.reachable, check.authenticated) == ("billing", True, True)
    assert check.latency_ms is not None and check.latency_ms >= 0


async def test_a_429_storm_reaches_the_engine_whose_retries_make_the_subscription_once(
    billing: Billing, harness: BillingHarness
) -> None:
    price = harness.seat_price("10.00")
    customer = harness.customer_with_card()
    harness.rate_limit_next(3)
    engine = EngineLayer()
    created = await engine.run(
        lambda: billing.create_subscription(
            subscription_for(customer, [(price, 1)]), idempotency_key="evt-1:subscribe"
        )
    )
    assert len(engine.failures) == 3, "each 429 is the engine's to retry, not the connector's"
    assert all(f.system == "billing" for f in engine.failures)
    assert harness.pending_faults() == 0
    harness.clear_faults()
    assert created.status == "active"
    assert harness.count("subscriptions") == 1
    assert harness.count("invoices") == 1


async def test_a_steady_rate_limit_still_completes_each_step_once(
    billing: Billing, harness: BillingHarness
) -> None:
    """Every 4th request refused: the engine re-runs the whole step, which needs fewer requests."""
    price = harness.seat_price("10.00")
    harness.rate_limit_every(4)
    engine = EngineLayer()
    for n in range(3):
        customer_id = await engine.run(
            lambda n=n: billing.upsert_customer(
                Customer(global_id=f"c-{n}", name=f"Customer {n}"),
                idempotency_key=f"evt-{n}:upsert",
            )
        )
        harness.clear_faults()
        harness.give_card(customer_id)
        harness.rate_limit_every(4)
        sub = subscription_for(
            Customer(name="x", external_ids={"billing": customer_id}), [(price, 2)]
        )
        await engine.run(
            lambda sub=sub, n=n: billing.create_subscription(
                sub, idempotency_key=f"evt-{n}:subscribe"
            )
        )
    harness.clear_faults()
    assert engine.failures, "the rate limit reached the engine's layer"
    assert harness.count("customers") == 3
    assert harness.count("subscriptions") == 3


async def test_retry_after_is_handed_to_the_engine_and_honoured(
    billing: Billing, harness: BillingHarness
) -> None:
    harness.rate_limit_next(1, retry_after=1)
    engine = EngineLayer()
    await engine.run(
        lambda: billing.upsert_customer(Customer(name="Patient"), idempotency_key="evt-1:upsert")
    )
    assert [f.retry_after for f in engine.failures] == [1]
    assert engine.delays[0] >= 1
    assert harness.count("customers") == 1


async def test_a_long_storm_becomes_a_transient_error_with_retry_after(
    billing: Billing, harness: BillingHarness
) -> None:
    harness.rate_limit_next(100, retry_after=30)
    with pytest.raises(TransientError) as info:
        await billing.upsert_customer(Customer(name="Later"), idempotency_key="evt-1:upsert")
    assert harness.pending_faults() == 99, "one request, no retry inside the connector"
    assert info.value.retry_after == 30
    assert info.value.system == "billing"
    harness.clear_faults()
    assert harness.count("customers") == 0


async def test_5xx_reach_the_engine_whose_retries_make_the_customer_once(
    billing: Billing, harness: BillingHarness
) -> None:
    harness.fail_next_server_errors(2)
    engine = EngineLayer()
    customer_id = await engine.run(
        lambda: billing.upsert_customer(
            Customer(global_id="c-500", name="Resilient"), idempotency_key="evt-1:upsert"
        )
    )
    assert len(engine.failures) == 2
    assert harness.pending_faults() == 0
    harness.clear_faults()
    assert harness.count("customers") == 1
    assert harness.customer(customer_id).name == "Resilient"


async def test_persistent_server_errors_end_as_transient(
    billing: Billing, harness: BillingHarness
) -> None:
    harness.fail_next_server_errors(50)
    with pytest.raises(TransientError):
        await billing.get_subscription("sub_anything")
    harness.clear_faults()


async def test_unknown_ids_are_data_errors_naming_the_id(billing: Billing) -> None:
    with pytest.raises(DataError) as sub:
        await billing.get_subscription("sub_doesnotexist")
    assert "sub_doesnotexist" in str(sub.value) and sub.value.system == "billing"
    with pytest.raises(DataError) as inv:
        await billing.get_invoice("in_doesnotexist")
    assert "in_doesnotexist" in str(inv.value)
    with pytest.raises(DataError) as cancel:
        await billing.cancel("sub_gone", at_period_end=False, idempotency_key="k")
    assert "sub_gone" in str(cancel.value)


async def test_an_unknown_price_is_a_mapping_error_naming_subscription_and_price(
    billing: Billing, harness: BillingHarness
) -> None:
    customer = harness.customer_with_card()
    for ref in ("no_such_lookup_key", "price_doesnotexist"):
        requested = subscription_for(customer, [(ref, 1)], contract_number="C-77")
        with pytest.raises(MappingError) as info:
            await billing.create_subscription(requested, idempotency_key=f"evt-{ref}")
        assert "C-77" in str(info.value) and ref in str(info.value)
    assert harness.count("subscriptions") == 0


async def test_a_price_in_another_currency_is_a_mapping_error(
    billing: Billing, harness: BillingHarness
) -> None:
    usd = harness.seat_price("10.00", "USD")
    customer = harness.customer_with_card()
    with pytest.raises(MappingError) as info:
        await billing.create_subscription(
            subscription_for(customer, [(usd, 1)], currency="EUR"), idempotency_key="evt-1"
        )
    assert "USD" in str(info.value) and "EUR" in str(info.value)
