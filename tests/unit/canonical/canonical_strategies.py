"""Hypothesis strategies producing valid canonical records (for round-trip and property tests)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import strategies as st

from quote2cash.canonical import (
    MINOR_UNITS,
    Address,
    Amendment,
    CreditMemo,
    CreditMemoLine,
    CreditMemoStatus,
    CreditReason,
    Customer,
    Interval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LegalEntity,
    Money,
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentStatus,
    PricePlan,
    Product,
    ProrationBehavior,
    Ref,
    Subscription,
    SubscriptionItem,
    SubscriptionStatus,
    TaxExemption,
    TaxIdValue,
    UsageRecord,
    UsageType,
)

CURRENCIES = sorted(MINOR_UNITS)
currencies = st.sampled_from(CURRENCIES)
MAX_UNITS = 10**15

ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
systems = st.sampled_from(["crm", "billing", "erp", "stripe_2"])
external_ids = st.dictionaries(systems, ids, max_size=3)
words = st.text("abcdefghijklmnopqrstuvwxyz ÄÖÜß-'", min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s != ""
)


def money(currency: str, *, min_units: int = -MAX_UNITS, max_units: int = MAX_UNITS):
    return st.integers(min_units, max_units).map(lambda u: Money.from_minor(u, currency))


any_money = currencies.flatmap(money)

refs = st.one_of(
    ids.map(Ref.to),
    st.builds(Ref, global_id=st.none() | ids, external_ids=external_ids.filter(bool)),
)

aware_datetimes = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)
dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 1, 1))
decimals = st.decimals(
    min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False
)


@st.composite
def periods(draw: st.DrawFn) -> tuple[date, date]:
    start = draw(dates)
    return start, start + timedelta(days=draw(st.integers(1, 800)))


addresses = st.builds(
    Address,
    line1=words,
    line2=st.none() | words,
    city=words,
    postal_code=st.none() | st.from_regex(r"\A[0-9A-Z]{3,8}\Z"),
    state=st.none() | words,
    country=st.from_regex(r"\A[A-Z]{2}\Z"),
)
tax_ids = st.builds(
    TaxIdValue,
    type=st.sampled_from(["eu_vat", "us_ein", "gb_vat", "ca_gst_hst", "au_abn"]),
    value=st.from_regex(r"\A[A-Z0-9]{5,14}\Z"),
)

customers = st.builds(
    Customer,
    global_id=st.none() | ids,
    external_ids=external_ids,
    name=words,
    email=st.none() | st.just("ap@example.com"),
    address=st.none() | addresses,
    billing_address=st.none() | addresses,
    tax_ids=st.lists(tax_ids, max_size=2).map(tuple),
    tax_exemption=st.sampled_from(TaxExemption),
    currency=st.none() | currencies,
    legal_entity=st.none() | refs,
)
legal_entities = st.builds(
    LegalEntity,
    global_id=st.none() | ids,
    external_ids=external_ids,
    name=words,
    country=st.from_regex(r"\A[A-Z]{2}\Z"),
    base_currency=currencies,
    tax_ids=st.lists(tax_ids, max_size=2).map(tuple),
    address=st.none() | addresses,
)
products = st.builds(
    Product,
    global_id=st.none() | ids,
    external_ids=external_ids,
    name=words,
    sku=st.none() | ids,
    active=st.booleans(),
)


@st.composite
def price_plans(draw: st.DrawFn) -> PricePlan:
    usage_type = draw(st.sampled_from(UsageType))
    return PricePlan(
        global_id=draw(st.none() | ids),
        external_ids=draw(external_ids),
        product=draw(refs),
        currency=draw(currencies),
        unit_amount=draw(st.decimals(min_value=0, max_value=10**6, places=12)),
        interval=draw(st.sampled_from(Interval)),
        interval_count=draw(st.integers(1, 36)),
        usage_type=usage_type,
        per_seat=usage_type is UsageType.LICENSED and draw(st.booleans()),
    )


@st.composite
def order_lines(draw: st.DrawFn, currency: str) -> OrderLine:
    unit_price = draw(money(currency, min_units=0, max_units=10**9))
    quantity = draw(st.integers(0, 10_000))
    gross = unit_price * quantity
    discount = draw(st.none() | money(currency, min_units=0, max_units=max(gross.minor_units, 0)))
    amount = gross if discount is None else gross - discount
    return OrderLine(
        product=draw(refs),
        price_plan=draw(st.none() | refs),
        quantity=quantity,
        unit_price=unit_price,
        discount=discount,
        amount=amount,
    )


@st.composite
def orders(draw: st.DrawFn) -> Order:
    currency = draw(currencies)
    start = draw(dates)
    return Order(
        global_id=draw(st.none() | ids),
        external_ids=draw(external_ids),
        number=draw(st.none() | ids),
        customer=draw(refs),
        currency=currency,
        status=draw(st.sampled_from(OrderStatus)),
        booked_at=draw(st.none() | aware_datetimes),
        start_date=start,
        end_date=draw(st.none() | st.integers(1, 1000).map(lambda d: start + timedelta(days=d))),
        lines=tuple(draw(st.lists(order_lines(currency), min_size=1, max_size=4))),
    )


@st.composite
def subscriptions(draw: st.DrawFn) -> Subscription:
    start = draw(aware_datetimes)
    items = st.builds(
        SubscriptionItem,
        global_id=st.none() | ids,
        price_plan=refs,
        quantity=st.none() | st.integers(0, 10**6),
    )
    return Subscription(
        global_id=draw(st.none() | ids),
        external_ids=draw(external_ids),
        contract_number=draw(st.none() | ids),
        customer=draw(refs),
        currency=draw(currencies),
        status=draw(st.sampled_from(SubscriptionStatus)),
        items=tuple(draw(st.lists(items, min_size=1, max_size=3))),
        current_period_start=start,
        current_period_end=start + timedelta(seconds=draw(st.integers(1, 10**8))),
        started_at=draw(st.none() | aware_datetimes),
    )


@st.composite
def amendments(draw: st.DrawFn) -> Amendment:
    new = draw(st.integers(0, 10**6))
    previous = draw(st.none() | st.integers(0, 10**6).filter(lambda q: q != new))
    return Amendment(
        global_id=draw(st.none() | ids),
        subscription=draw(refs),
        subscription_item=draw(refs),
        amendment_number=draw(st.integers(1, 10**6)),
        effective_at=draw(aware_datetimes),
        previous_quantity=previous,
        new_quantity=new,
        proration_behavior=draw(st.sampled_from(ProrationBehavior)),
    )


@st.composite
def invoice_lines(draw: st.DrawFn, currency: str, with_tax: bool) -> InvoiceLine:
    start, end = draw(periods())
    return InvoiceLine(
        global_id=draw(st.none() | ids),
        description=draw(st.none() | words),
        subscription_item=draw(st.none() | refs),
        quantity=draw(st.none() | decimals),
        amount=draw(money(currency, min_units=-(10**9), max_units=10**9)),
        tax=draw(money(currency, min_units=0, max_units=10**8)) if with_tax else None,
        service_start=start,
        service_end=end,
        proration=draw(st.booleans()),
    )


@st.composite
def invoices(draw: st.DrawFn) -> Invoice:
    currency = draw(currencies)
    with_tax = draw(st.booleans())
    lines = tuple(draw(st.lists(invoice_lines(currency, with_tax), max_size=4)))
    if with_tax and lines:
        tax = Money.sum((line.tax for line in lines if line.tax is not None), currency)
    else:
        tax = draw(money(currency, min_units=0, max_units=10**8))
    total = Money.sum((line.amount for line in lines), currency) + tax
    return Invoice(
        global_id=draw(st.none() | ids),
        external_ids=draw(external_ids),
        number=draw(st.none() | ids),
        customer=draw(refs),
        subscription=draw(st.none() | refs),
        currency=currency,
        status=draw(st.sampled_from(InvoiceStatus)),
        issued_at=draw(st.none() | aware_datetimes),
        due_date=draw(st.none() | dates),
        lines=lines,
        tax=tax,
        total=total,
        amount_paid=draw(st.none() | money(currency, min_units=0, max_units=10**9)),
    )


@st.composite
def credit_memos(draw: st.DrawFn) -> CreditMemo:
    currency = draw(currencies)
    line = st.builds(
        CreditMemoLine,
        amount=money(currency, min_units=0, max_units=10**9),
        quantity=st.none() | decimals,
    )
    lines = tuple(draw(st.lists(line, min_size=1, max_size=3)))
    tax = draw(money(currency, min_units=0, max_units=10**8))
    return CreditMemo(
        global_id=draw(st.none() | ids),
        customer=draw(refs),
        invoice=draw(refs),
        currency=currency,
        status=draw(st.sampled_from(CreditMemoStatus)),
        reason=draw(st.none() | st.sampled_from(CreditReason)),
        issued_at=draw(aware_datetimes),
        lines=lines,
        tax=tax,
        total=Money.sum((x.amount for x in lines), currency) + tax,
    )


@st.composite
def payments(draw: st.DrawFn) -> Payment:
    currency = draw(currencies)
    amount = draw(money(currency, min_units=1, max_units=10**10))
    status = draw(st.sampled_from(PaymentStatus))
    refunded = None
    if status is PaymentStatus.REFUNDED or (
        status is PaymentStatus.SUCCEEDED and draw(st.booleans())
    ):
        refunded = draw(money(currency, min_units=1, max_units=amount.minor_units))
    failed = status is PaymentStatus.FAILED
    return Payment(
        global_id=draw(st.none() | ids),
        external_ids=draw(external_ids),
        customer=draw(st.none() | refs),
        invoice=draw(st.none() | refs),
        amount=amount,
        status=status,
        created_at=draw(aware_datetimes),
        failure_code="card_declined" if failed else None,
        failure_reason=draw(words) if failed else None,
        amount_refunded=refunded,
    )


@st.composite
def usage_records(draw: st.DrawFn) -> UsageRecord:
    on_meter = draw(st.booleans())
    return UsageRecord(
        subscription_item=None if on_meter else draw(refs),
        meter=draw(words) if on_meter else None,
        customer=draw(refs) if on_meter else draw(st.none() | refs),
        quantity=draw(st.decimals(min_value=0, max_value=10**12, places=12)),
        timestamp=draw(aware_datetimes),
        idempotency_key=draw(ids),
    )


EVERY_MODEL = {
    "Customer": customers,
    "LegalEntity": legal_entities,
    "Address": addresses,
    "Product": products,
    "PricePlan": price_plans(),
    "Order": orders(),
    "Subscription": subscriptions(),
    "Amendment": amendments(),
    "Invoice": invoices(),
    "CreditMemo": credit_memos(),
    "Payment": payments(),
    "UsageRecord": usage_records(),
    "Ref": refs,
}
