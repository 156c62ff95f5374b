"""What every ``Crm`` implementation must do, written against the protocol only.

Seeding, fault injection and reading what was written back go through the harness
(``harness.CrmHarness``); everything else asserted is what the connector returned.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from quote2cash.canonical import Address, Money, Order, OrderStatus, TaxIdValue
from quote2cash.connectors.roles import AccountFinancials, ChangedAccount, Crm
from quote2cash.engine.errors import AuthError, DataError, TransientError

from .harness import CrmHarness, Line, PublishedInvoice


async def all_deals(crm: Crm, **kwargs: object) -> tuple[list[Order], int]:
    orders: list[Order] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await crm.closed_won_deals(cursor=cursor, **kwargs)  # type: ignore[arg-type]
        pages += 1
        orders += page.items
        cursor = page.next_cursor
        if cursor is None:
            return orders, pages


def seed_two_currencies(harness: CrmHarness) -> dict[str, str]:
    ids: dict[str, str] = {}
    ids["eur_account"] = harness.account("Müller Maschinenbau GmbH", "EUR")
    ids["usd_account"] = harness.account("Acme Corp", "USD")
    ids["seat"] = harness.product("SEAT-PRO", "Pro seat", {"EUR": "40.00", "USD": "35.00"})
    ids["support"] = harness.product("SUPPORT", "Premium support", {"EUR": "99.99"})
    ids["eur_deal"] = harness.deal(
        ids["eur_account"],
        "EUR",
        [
            Line(ids["seat"], 3, "33.33", service_date=date(2026, 12, 1)),
            Line(ids["support"], 1, "99.99", service_date=date(2026, 12, 15)),
        ],
        name="Müller 2027",
        contract_number="C-2026-0042",
    )
    ids["usd_deal"] = harness.deal(
        ids["usd_account"], "USD", [Line(ids["seat"], 3, "33.33")], close_date=date(2026, 11, 24)
    )
    ids["open_deal"] = harness.deal(
        ids["usd_account"], "USD", [Line(ids["seat"], 7, "35.00")], won=False
    )
    return ids


async def test_implements_the_protocol(harness: CrmHarness):
    crm = harness.crm()
    assert isinstance(crm, Crm)
    assert crm.system == "crm"


async def test_closed_won_deals_have_exact_amounts_in_their_currency(harness: CrmHarness):
    ids = seed_two_currencies(harness)
    orders, _ = await all_deals(harness.crm())
    by_deal = {o.id_in("crm"): o for o in orders}
    assert set(by_deal) == {ids["eur_deal"], ids["usd_deal"]}

    eur = by_deal[ids["eur_deal"]]
    assert eur.currency == "EUR" and eur.status is OrderStatus.BOOKED
    assert eur.number == "C-2026-0042"
    assert eur.customer.id_in("crm") == ids["eur_account"]
    assert eur.start_date == date(2026, 12, 1)
    seat, support = eur.lines
    assert seat.quantity == 3
    assert seat.unit_price == Money("33.33", "EUR")
    assert seat.amount == Money("99.99", "EUR")
    assert seat.product.id_in("crm") == ids["seat"]
    assert support.amount == Money("99.99", "EUR")
    assert eur.total == Money("199.98", "EUR")
    assert isinstance(eur.total.amount, Decimal)

    usd = by_deal[ids["usd_deal"]]
    assert usd.currency == "USD"
    assert usd.number == ids["usd_deal"]
    assert usd.start_date == date(2026, 11, 24)
    assert usd.total == Money("99.99", "USD")


async def test_get_deal_reads_one_deal_whatever_its_stage(harness: CrmHarness):
    ids = seed_two_currencies(harness)
    crm = harness.crm()
    won = await crm.get_deal(ids["eur_deal"])
    assert won.total == Money("199.98", "EUR") and won.status is OrderStatus.BOOKED
    still_open = await crm.get_deal(ids["open_deal"])
    assert still_open.status is OrderStatus.DRAFT
    assert still_open.total == Money("245.00", "USD")


async def test_since_skips_deals_not_changed_since(harness: CrmHarness):
    seed_two_currencies(harness)
    crm = harness.crm()
    earlier = datetime.now(UTC) - timedelta(days=1)
    later = datetime.now(UTC) + timedelta(days=1)
    assert len((await all_deals(crm, since=earlier))[0]) == 2
    assert (await all_deals(crm, since=later))[0] == []


async def test_pages_cover_every_deal_once(harness: CrmHarness):
    account = harness.account("Volume Inc", "USD")
    product = harness.product("API-CALLS", "API calls", {"USD": "10.00"})
    count = harness.page_size + 5
    seeded = harness.many_won_deals(account, product, count)
    crm = harness.crm()
    orders: list[Order] = []
    cursor: str | None = None
    sizes: list[int] = []
    while True:
        page = await crm.closed_won_deals(cursor=cursor, limit=harness.page_size)
        sizes.append(len(page.items))
        orders += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(sizes) >= 2 and max(sizes) <= harness.page_size
    assert sorted(o.id_in("crm") or "" for o in orders) == sorted(seeded)
    assert {o.total for o in orders} == {Money("10.01", "USD")}


async def test_get_account_maps_the_customer(harness: CrmHarness):
    account_id = harness.account(
        "Müller Maschinenbau GmbH",
        "EUR",
        address=Address(
            line1="Hauptstraße 1",
            line2="Hinterhaus",
            city="Stuttgart",
            postal_code="70173",
            country="DE",
        ),
        erp_customer_number="CUST-0007",
    )
    customer = await harness.crm().get_account(account_id)
    assert customer.name == "Müller Maschinenbau GmbH"
    assert customer.external_ids == {"crm": account_id, "erp": "CUST-0007"}
    assert customer.currency == "EUR"
    assert customer.address is not None
    assert (customer.address.line1, customer.address.city) == ("Hauptstraße 1", "Stuttgart")
    assert customer.address.line2 == "Hinterhaus"
    assert customer.address.country == "DE"


async def test_unknown_account_is_a_data_error_naming_the_id(harness: CrmHarness):
    missing = harness.missing_account_id()
    with pytest.raises(DataError) as excinfo:
        await harness.crm().get_account(missing)
    assert missing in str(excinfo.value)
    assert excinfo.value.system == "crm"


async def test_unknown_deal_is_a_data_error_naming_the_id(harness: CrmHarness):
    account = harness.account("Gone", "USD")
    product = harness.product("X", "X", {"USD": "1.00"})
    deal = harness.deal(account, "USD", [Line(product, 1, "1.00")])
    harness.delete_deal(deal)
    with pytest.raises(DataError) as excinfo:
        await harness.crm().get_deal(deal)
    assert deal in str(excinfo.value)


async def test_list_products_gives_skus(harness: CrmHarness):
    seed_two_currencies(harness)
    products = await harness.crm().list_products()
    assert {p.sku: p.name for p in products} == {
        "SEAT-PRO": "Pro seat",
        "SUPPORT": "Premium support",
    }
    assert all(p.active and p.id_in("crm") for p in products)


async def test_approved_seat_changes_are_amendment_requests(harness: CrmHarness):
    account = harness.account("Seats GmbH", "EUR")
    seat = harness.product("SEAT-PRO", "Pro seat", {"EUR": "40.00"})
    subscription = harness.subscription(account, 10, billing_id="sub_123")
    first = harness.request_seat_change(subscription, seat, 15, date(2027, 1, 1))
    draft = harness.request_seat_change(subscription, seat, 20, date(2027, 2, 1), approved=False)
    page = await harness.crm().amendment_requests()
    assert [a.id_in("crm") for a in page.items] == [first]
    amendment = page.items[0]
    assert amendment.subscription.external_ids == {"crm": subscription, "billing": "sub_123"}
    assert (amendment.previous_quantity, amendment.new_quantity) == (10, 15)
    assert amendment.amendment_number == 1
    assert amendment.effective_at == datetime(2027, 1, 1, tzinfo=UTC)
    harness.approve(draft)
    later = await harness.crm().amendment_requests()
    assert {a.id_in("crm"): a.amendment_number for a in later.items} == {first: 1, draft: 2}


async def test_publish_status_twice_leaves_one_record(harness: CrmHarness):
    crm = harness.crm()
    update = harness.invoice_status("INV-2026-0001", "open", "199.98")
    first = await crm.publish_status([update], idempotency_key="evt-1:publish")
    again = await crm.publish_status([update], idempotency_key="evt-1:publish")
    assert [r.error for r in first + again] == [None, None]
    assert first[0].created is True and again[0].created is False
    assert first[0].crm_id == again[0].crm_id
    assert harness.published_invoices("INV-2026-0001") == [
        PublishedInvoice("open", Decimal("199.98"))
    ]


async def test_publish_status_updates_what_it_created(harness: CrmHarness):
    crm = harness.crm()
    opened = harness.invoice_status("INV-7", "open", "50.00")
    paid = harness.invoice_status("INV-7", "paid", "50.00")
    created = await crm.publish_status([opened], idempotency_key="evt-2:publish")
    updated = await crm.publish_status([paid], idempotency_key="evt-3:publish")
    assert (created[0].created, updated[0].created) == (True, False)
    assert [r.standing for r in harness.published_invoices("INV-7")] == ["paid"]


async def test_refused_status_fails_that_record_only(harness: CrmHarness):
    bad, field = harness.invoice_status_the_crm_refuses("INV-BAD")
    good = harness.invoice_status("INV-GOOD", "open", "1.00")
    results = await harness.crm().publish_status([bad, good], idempotency_key="evt-4:publish")
    assert [r.external_id for r in results] == ["INV-BAD", "INV-GOOD"]
    assert results[0].error is not None and field in results[0].error
    assert results[0].crm_id is None
    assert results[1].error is None and results[1].created is True
    assert harness.published_invoices("INV-BAD") == []
    assert len(harness.published_invoices("INV-GOOD")) == 1


async def all_changed(crm: Crm, since: datetime | None = None) -> list[ChangedAccount]:
    found: list[ChangedAccount] = []
    cursor: str | None = None
    while True:
        page = await crm.changed_accounts(since=since, cursor=cursor)
        assert page.rejected == []
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found


async def test_changed_accounts_are_the_onboarded_ones_changed_since(harness: CrmHarness):
    started = datetime.now(UTC) - timedelta(seconds=2)
    onboarded = harness.onboarded_account("Onboarded GmbH", "CUS-0001")
    harness.account("Prospect GmbH", "EUR")
    crm = harness.crm()
    changed = await all_changed(crm, since=started)
    assert [c.account_id for c in changed] == [onboarded]
    assert changed[0].changed_at >= started.replace(microsecond=0)
    assert changed[0].changed_at.utcoffset() == timedelta(0)
    assert await all_changed(crm, since=datetime.now(UTC) + timedelta(days=1)) == []
    harness.edit_account(onboarded, name="Onboarded AG")
    [again] = await all_changed(crm, since=changed[0].changed_at)
    assert again.account_id == onboarded and again.changed_at >= changed[0].changed_at


async def test_changed_account_pages_cover_every_account_once(harness: CrmHarness):
    seeded = harness.many_onboarded_accounts(harness.page_size + 5)
    crm = harness.crm()
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = await crm.changed_accounts(cursor=cursor, limit=harness.page_size)
        sizes.append(len(page.items))
        seen += [c.account_id for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(sizes) >= 2 and max(sizes) <= harness.page_size
    assert sorted(seen) == sorted(seeded)


async def test_account_financials_are_written_to_the_account(harness: CrmHarness):
    account = harness.onboarded_account("Financials GmbH", "CUS-0002", tax_id="DE999999999")
    crm = harness.crm()
    vat = TaxIdValue(type="eu_vat", value="DE811569869")
    update = AccountFinancials(account, tax_ids=(vat,), legal_entity="DE")
    results = await crm.publish_status([update], idempotency_key="evt-5:financials")
    assert [r.error for r in results] == [None]
    assert harness.account_financials(account) == ("DE811569869", "DE")
    shown = await crm.get_account(account)
    assert [t.value for t in shown.tax_ids] == ["DE811569869"]
    unchanged = AccountFinancials(account, legal_entity="US")
    await crm.publish_status([unchanged], idempotency_key="evt-6:financials")
    assert harness.account_financials(account) == ("DE811569869", "US")
    cleared = AccountFinancials(account, tax_ids=())
    await crm.publish_status([cleared], idempotency_key="evt-7:financials")
    assert harness.account_financials(account) == (None, "US")


async def test_bad_secret_is_an_auth_error_naming_crm_not_the_secret(harness: CrmHarness):
    crm = harness.crm_with_bad_secret()
    with pytest.raises(AuthError) as excinfo:
        await crm.closed_won_deals()
    error = excinfo.value
    assert error.system == "crm" and "crm" in str(error)
    assert harness.bad_secret not in str(error) and harness.bad_secret not in repr(error)
    check = await crm.check()
    assert check.authenticated is False and harness.bad_secret not in check.detail


async def test_daily_limit_exhausted_is_transient(harness: CrmHarness):
    crm = harness.crm()
    await crm.list_products()
    harness.exhaust_daily_limit()
    with pytest.raises(TransientError) as excinfo:
        await crm.closed_won_deals()
    assert excinfo.value.system == "crm"
    assert excinfo.value.retry_after is not None and excinfo.value.retry_after > 0


async def test_expired_session_is_renewed_transparently(harness: CrmHarness):
    ids = seed_two_currencies(harness)
    crm = harness.crm()
    assert (await crm.get_deal(ids["usd_deal"])).total == Money("99.99", "USD")
    harness.expire_sessions()
    assert (await crm.get_deal(ids["usd_deal"])).total == Money("99.99", "USD")
    harness.expire_sessions()
    results = await crm.publish_status(
        [harness.invoice_status("INV-9", "open", "9.99")], idempotency_key="evt-5:publish"
    )
    assert results[0].error is None


async def test_check_reports_a_working_connection(harness: CrmHarness):
    check = await harness.crm().check()
    assert (check.system, check.reachable, check.authenticated) == ("crm", True, True)
    assert check.latency_ms is not None and check.latency_ms >= 0


# --- duplicate accounts and CRM merges ---------------------------------------------------------


async def test_a_duplicate_account_is_flagged_for_sales_operations(harness: CrmHarness):
    from quote2cash.connectors.roles import DuplicateAccount

    survivor = harness.account("Kestrel Optics GmbH", "EUR")
    duplicate = harness.account("Kestrel Optics", "EUR")
    crm = harness.crm()
    flag = DuplicateAccount(duplicate, survivor, "CUS-" + "a" * 32)
    result = await crm.flag_duplicate_account(flag, idempotency_key="flag-1")
    assert result.error is None and result.crm_id == duplicate
    assert harness.duplicate_flag(duplicate) == (survivor, "pending_merge")
    assert harness.duplicate_flag(survivor) == (None, None)
    again = await crm.flag_duplicate_account(flag, idempotency_key="flag-2")
    assert again.error is None and harness.duplicate_flag(duplicate) == (survivor, "pending_merge")
    # the duplicate gets none of the customer's unique ids
    account = await crm.get_account(duplicate)
    assert account.global_id is None and "erp" not in account.external_ids

    gone = harness.missing_account_id()
    refused = await crm.flag_duplicate_account(
        DuplicateAccount(gone, survivor, flag.global_id), idempotency_key="flag-3"
    )
    assert refused.error and gone in refused.error + str(refused.external_id)


async def test_account_merges_name_the_loser_and_the_survivor(harness: CrmHarness):
    survivor = harness.account("Harrier Freight Ltd", "EUR")
    loser = harness.account("Harrier Freight", "EUR")
    seat = harness.product("SEAT-HF", "Seat", {"EUR": "10.00"})
    deal = harness.deal(loser, "EUR", [Line(seat, 1, "10.00")], contract_number="C-HF-1")
    crm = harness.crm()
    before = datetime.now(UTC) - timedelta(seconds=2)
    assert (await crm.account_merges(since=before)).items == []

    harness.merge_accounts(survivor, loser)
    page = await crm.account_merges(since=before)
    assert [(m.merged_account_id, m.survivor_account_id) for m in page.items] == [(loser, survivor)]
    assert page.items[0].merged_at >= before.replace(microsecond=0)
    assert (await crm.get_deal(deal)).customer.id_in("crm") == survivor  # re-parented
    with pytest.raises(DataError):
        await crm.get_account(loser)
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert (await crm.account_merges(since=later)).items == []
