"""One closed-won deal through the flows, paid by card and partly refunded, puts its business
events on the JetStream stream: each once, in the order the hub made them true, all with the
deal's correlation id, each satisfying its docs/asyncapi.yaml payload schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import missing_service
from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, running_hub, sf_products
from e2e.test_amendments import LifecycleHub, lifecycle_hub, request, won_deal
from integration.bus.conftest import NATS_URL, _reachable, bus_config, drop_stream, stream_messages
from quote2cash.bus import outbox_store
from quote2cash.bus.publisher import BusConfig, BusPublisher, connect, ensure_stream
from quote2cash.engine.queries import failed_events, list_events
from quote2cash.masterdata.xref import Kind
from support.asyncapi import message_of_type, payload_validator

ADDRESS = {
    "BillingStreet": "1 Stream Street",
    "BillingCity": "Austin",
    "BillingPostalCode": "73301",
    "BillingState": "TX",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}


@pytest.fixture
def bus() -> Iterator[BusConfig]:
    try:
        asyncio.run(_reachable(NATS_URL))
    except Exception as exc:
        missing_service(f"NATS JetStream at {NATS_URL} unreachable: {type(exc).__name__}")
    config = bus_config()
    yield config
    asyncio.run(drop_stream(config))


async def _settled(hub: Hub) -> None:
    await hub.settle()
    failures = failed_events(hub.runtime)
    assert failures == [], [e.last_error for e in failures]


async def _publish_all(hub: Hub | LifecycleHub, bus: BusConfig) -> BusPublisher:
    publisher = BusPublisher(hub.runtime.engine, bus)
    async with connect(bus) as js:
        await ensure_stream(js, bus)
        while await publisher.publish_batch(js):
            pass
    return publisher


async def test_a_deal_paid_and_refunded_is_on_the_stream_in_its_trace(
    world: World, tmp_path: Path, bus: BusConfig
) -> None:
    client = world.stripe()
    desk = world.desk
    account = desk.account("Stream Works LLC", currency="USD", **ADDRESS)
    opportunity = desk.deal(
        account,
        "USD",
        [Line(sf_products(desk)["PLAT-SEAT"], 2, "49.00")],
        name="Stream",
        Contract_Number__c="C-BUS-0001",
    )
    async with running_hub(world, tmp_path, days_until_due=14) as hub:
        await _settled(hub)
        [closed] = list_events(hub.runtime, type_prefix="crm.opportunity.closed_won")
        deal = closed.correlation_id
        [sub] = [
            s
            for s in client.v1.subscriptions.list().auto_paging_iter()
            if s.metadata.to_dict().get("contract_number") == "C-BUS-0001"
        ]
        [bill] = client.v1.invoices.list(params={"customer": str(sub.customer)}).data
        client.v1.invoices.pay(bill.id, params={"payment_method": "pm_card_visa"})
        await _settled(hub)
        [paid] = client.v1.invoice_payments.list(params={"invoice": bill.id, "status": "paid"}).data
        client.v1.refunds.create(
            params={"payment_intent": paid.payment.payment_intent, "amount": 1000}
        )
        await _settled(hub)

        # Twice: the second run finds nothing left to send.
        first = await _publish_all(hub, bus)
        again = await _publish_all(hub, bus)
        assert outbox_store.backlog(hub.runtime.engine).pending == 0
        assert first.stats.published > 0 and again.stats.published == 0

    messages = await stream_messages(bus)
    types = [m.envelope["type"] for m in messages]
    assert sorted(types) == [
        "q2c.customer.created",
        "q2c.invoice.posted",
        "q2c.payment.received",
        "q2c.payment.reversed",
        "q2c.subscription.activated",
    ], types
    # In the order the hub made them true (billing's own order decides activation vs invoice).
    assert types[0] == "q2c.customer.created"
    assert types.index("q2c.invoice.posted") < types.index("q2c.payment.received")
    assert types.index("q2c.payment.received") < types.index("q2c.payment.reversed")
    assert {m.envelope["correlation_id"] for m in messages} == {deal}
    assert len({m.msg_id for m in messages}) == len(messages)
    for m in messages:
        assert m.msg_id == m.envelope["id"]
        assert m.subject == f"{bus.subject_prefix}.{m.envelope['type'].removeprefix('q2c.')}"
        validator = payload_validator(message_of_type(m.envelope["type"]))
        assert [e.message for e in validator.iter_errors(m.envelope)] == [], m.envelope["type"]
    data = {m.envelope["type"]: m.envelope["data"] for m in messages}
    assert data["q2c.subscription.activated"]["opportunity_id"] == opportunity
    assert data["q2c.subscription.activated"]["contract_number"] == "C-BUS-0001"
    assert data["q2c.invoice.posted"]["invoice_id"] == bill.id
    assert data["q2c.invoice.posted"]["total"] == "98.00"
    assert data["q2c.payment.received"]["amount"] == "98.00"
    assert data["q2c.payment.reversed"]["amount_refunded"] == "10.00"
    assert data["q2c.payment.reversed"]["balance_due"] == "10.00"
    contract_events = [
        m for m in messages if m.envelope["subject"] != messages[0].envelope["subject"]
    ]
    assert {m.envelope["subject"] for m in contract_events} == {"contract:C-BUS-0001"}


__all__ = ["lifecycle_hub"]  # the fixture, imported for the test below


async def test_amended_then_cancelled_contract_is_on_the_stream_in_its_trace(
    world: World, lifecycle_hub: LifecycleHub, bus: BusConfig
) -> None:
    hub, desk = lifecycle_hub, world.desk
    _, _, crm_sub = await won_deal(world, hub, "Strom Abo GmbH", "C-BUS-0002")
    await hub.settle()
    [closed] = list_events(hub.runtime, type_prefix="crm.opportunity.closed_won")
    # 5 -> 3 seats, invoiced at once (a credit), then cancelled at once
    request(desk, crm_sub, 1, previous=5, new=3)
    await hub.settle()
    request(desk, crm_sub, 2, previous=3, new=0)
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    await _publish_all(hub, bus)

    messages = await stream_messages(bus)
    types = [m.envelope["type"] for m in messages]
    for expected in (
        "q2c.subscription.activated",
        "q2c.subscription.amended",
        "q2c.credit_note.issued",
        "q2c.subscription.cancelled",
    ):
        assert expected in types, types
    assert types.index("q2c.subscription.amended") < types.index("q2c.subscription.cancelled")
    assert {m.envelope["correlation_id"] for m in messages} == {closed.correlation_id}
    for m in messages:
        validator = payload_validator(message_of_type(m.envelope["type"]))
        assert [e.message for e in validator.iter_errors(m.envelope)] == [], m.envelope["type"]
    data = {m.envelope["type"]: m.envelope["data"] for m in messages}
    amended = data["q2c.subscription.amended"]
    assert (amended["previous_seats"], amended["seats"]) == (5, 3)
    assert data["q2c.subscription.cancelled"]["status"] == "canceled"
    assert data["q2c.subscription.cancelled"]["canceled_at"] is not None


async def test_a_renewal_is_on_the_stream_with_its_invoice(
    world: World, lifecycle_hub: LifecycleHub, bus: BusConfig
) -> None:
    hub, desk, client = lifecycle_hub, world.desk, world.stripe()
    name, email = "Erneuerung Bus GmbH", "billing@erneuerung-bus.example"
    account = desk.account(
        name,
        currency="EUR",
        BillingStreet="Ring 3",
        BillingCity="Bonn",
        BillingPostalCode="53111",
        BillingCountryCode="DE",
        BillingCountry="Germany",
        Billing_Email__c=email,
    )
    # Billing runs this customer on a test clock: the hub finds it by email and global id.
    clock = client.v1.test_helpers.test_clocks.create(
        params={"frozen_time": int(datetime.now(UTC).timestamp())}
    )
    gid = hub.deps.xref.ensure_global_id(Kind.CUSTOMER, "crm", account, actor="test")
    client.v1.customers.create(
        params={
            "name": name,
            "email": email,
            "test_clock": clock.id,
            "metadata": {"hub_global_id": gid},
        }
    )
    _, billing_id, _ = await won_deal(world, hub, name, "C-BUS-0003", account=account)
    await hub.settle()
    first_end = client.v1.subscriptions.retrieve(billing_id)["items"]["data"][0][
        "current_period_end"
    ]
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": first_end + 60})
    await hub.settle()
    assert failed_events(hub.runtime) == [], [e.last_error for e in failed_events(hub.runtime)]
    await _publish_all(hub, bus)

    messages = await stream_messages(bus)
    types = [m.envelope["type"] for m in messages]
    assert types.count("q2c.invoice.posted") == 2, types
    heard = [e.type for e in list_events(hub.runtime, limit=100) if "subscription" in e.type]
    assert types.count("q2c.subscription.renewed") == 1, heard
    [renewed] = [m.envelope for m in messages if m.envelope["type"] == "q2c.subscription.renewed"]
    assert renewed["data"]["subscription_id"] == billing_id
    assert (
        renewed["data"]["current_period_start"]
        >= datetime.fromtimestamp(first_end, UTC).isoformat()
    )
    assert renewed["subject"] == "contract:C-BUS-0003"
    [closed] = list_events(hub.runtime, type_prefix="crm.opportunity.closed_won")
    assert {m.envelope["correlation_id"] for m in messages} == {closed.correlation_id}
    for m in messages:
        validator = payload_validator(message_of_type(m.envelope["type"]))
        assert [e.message for e in validator.iter_errors(m.envelope)] == [], m.envelope["type"]
