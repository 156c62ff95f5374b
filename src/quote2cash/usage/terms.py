"""What usage validation checks records against: each subscription's meters, units, service
window and billing cycle, read from the hub's own state, once per batch.

Source of truth: billing owns the subscription (DESIGN §2), so the terms are the newest
``billing.subscription.*`` event the hub logged for each billing subscription (the object
snapshot billing sent), keyed by the hub's contract number and global id through the xref
store. A period is closed once billing has moved past it (it ends at or before the
subscription's current period start): billing has invoiced it.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, func, select

from quote2cash.store.schema import events, md_xrefs

DEFAULT_UNIT: Final = "unit"
"""The unit of a metered item whose price declares none (``metadata.unit``)."""

_LIVE: Final = frozenset({"active", "trialing", "past_due", "unpaid", "incomplete"})


@dataclass(frozen=True, slots=True)
class MeteredItem:
    """One metered item of a subscription: the names a record may use for it, and its unit."""

    meter: str
    unit: str
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    """A subscription as usage validation needs it; ``closed_before`` ends the closed periods."""

    subscription: str
    references: tuple[str, ...]
    customer: str | None
    subject: str
    items: tuple[MeteredItem, ...]
    service_start: datetime
    service_end: datetime | None
    cycle_anchor: datetime
    interval: str = "month"
    interval_count: int = 1
    closed_before: datetime | None = None
    on_test_clock: bool = False
    """Billing runs the subscription on a simulated clock (Stripe test clocks): its "now" is
    that clock's, so usage may be dated up to the end of its current period."""
    extra: dict[str, Any] = field(default_factory=dict)

    def period_of(self, at: datetime) -> tuple[datetime, datetime]:
        """The billing period holding ``at``: counted from the cycle anchor, as billing does.

        The one definition of a usage record's billing period (intake's checking query and
        its fast path are tested against it): the ``k``-th period runs from
        ``boundary(k)`` to ``boundary(k + 1)``, both counted from the anchor, so a period of
        an anchor on the 31st that starts clipped on Feb 28 ends on Mar 31, as Stripe's."""
        k = period_index(self.cycle_anchor, self.cycle_months, self.cycle_days, at)
        return self.boundary(k), self.boundary(k + 1)

    def boundary(self, k: int) -> datetime:
        """The start of the ``k``-th period from the anchor (negative: before it)."""
        return cycle_boundary(self.cycle_anchor, self.cycle_months, self.cycle_days, k)

    @property
    def cycle_months(self) -> int:
        """Months per period (0 for day/week cycles)."""
        return {"month": 1, "year": 12}.get(self.interval, 0) * self.interval_count

    @property
    def cycle_days(self) -> int:
        return {"day": 1, "week": 7}.get(self.interval, 0) * self.interval_count


def cycle_boundary(anchor: datetime, months: int, days: int, k: int) -> datetime:
    """``anchor`` plus ``k`` cycles of ``months`` months (the day clipped to the month's
    last, then back to the anchor's day: Jan 31, Feb 28, Mar 31) or else of ``days`` days
    (30 when neither is set); always counted from the anchor, never from the last boundary.
    Billing's own rule (Stripe; the emulator's ``billing_engine.add_interval``)."""
    if months:
        return _add_months(anchor, k * months)
    return anchor + timedelta(days=(days or 30) * k)


def period_index(anchor: datetime, months: int, days: int, at: datetime) -> int:
    """Which period from the anchor holds ``at``: the ``k`` with ``boundary(k) <= at <
    boundary(k + 1)`` (negative before the anchor), to the microsecond."""
    if months:
        elapsed = (at.year - anchor.year) * 12 + at.month - anchor.month
        k = elapsed // months
        if _add_months(anchor, k * months) > at:
            k -= 1
        return k
    return (at - anchor) // timedelta(days=days or 30)


def _add_months(at: datetime, months: int) -> datetime:
    """``at`` plus whole months, the day clipped to the month's last (Jan 31 + 1 = Feb 28)."""
    index = at.year * 12 + at.month - 1 + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def _instant(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(int(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _items(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = obj.get("items") or {}
    data = items.get("data") if isinstance(items, Mapping) else items
    return [i for i in data or [] if isinstance(i, Mapping)]


def _metered_item(item: Mapping[str, Any]) -> MeteredItem | None:
    price: Mapping[str, Any] = item.get("price") or item.get("plan") or {}
    recurring: Mapping[str, Any] = price.get("recurring") or price
    if recurring.get("usage_type") != "metered":
        return None
    meta: Mapping[str, Any] = price.get("metadata") or {}
    product = price.get("product")
    names = [
        meta.get("meter"),
        recurring.get("meter"),
        price.get("lookup_key"),
        price.get("id"),
        product.get("id") if isinstance(product, Mapping) else product,
        item.get("id"),
    ]
    aliases = tuple(dict.fromkeys(str(n) for n in names if n))
    if not aliases:
        return None
    unit = meta.get("unit") or (product.get("unit_label") if isinstance(product, Mapping) else None)
    return MeteredItem(meter=aliases[0], unit=str(unit or DEFAULT_UNIT), aliases=aliases)


def terms_from_snapshot(
    obj: Mapping[str, Any], global_id: str | None, contract_number: str | None
) -> SubscriptionTerms | None:
    """Terms from one billing subscription snapshot; ``None`` when it has no usable start."""
    billing_id = str(obj.get("id") or "")
    items = _items(obj)
    start = _instant(obj.get("start_date")) or _instant(obj.get("created"))
    if not billing_id or start is None:
        return None
    metered = tuple(m for m in (_metered_item(i) for i in items) if m is not None)
    first: Mapping[str, Any] = items[0] if items else {}
    price: Mapping[str, Any] = first.get("price") or first.get("plan") or {}
    recurring: Mapping[str, Any] = price.get("recurring") or price
    starts = [_instant(i.get("current_period_start")) for i in items]
    current = max(
        (s for s in [*starts, _instant(obj.get("current_period_start"))] if s is not None),
        default=None,
    )
    ended = _instant(obj.get("ended_at"))
    if ended is None and obj.get("status") not in _LIVE and obj.get("status") is not None:
        ended = _instant(obj.get("canceled_at"))
    references = tuple(dict.fromkeys(r for r in (global_id, contract_number, billing_id) if r))
    return SubscriptionTerms(
        subscription=global_id or billing_id,
        references=references,
        subject=f"contract:{contract_number}" if contract_number else billing_id,
        customer=str(obj["customer"]) if obj.get("customer") else None,
        items=metered,
        service_start=start,
        service_end=ended or _instant(obj.get("cancel_at")),
        cycle_anchor=_instant(obj.get("billing_cycle_anchor")) or start,
        interval=str(recurring.get("interval") or "month"),
        interval_count=int(recurring.get("interval_count") or 1),
        closed_before=current,
        on_test_clock=bool(obj.get("test_clock")),
    )


def load_terms(conn: Connection) -> list[SubscriptionTerms]:
    """Every subscription billing told the hub about, as of its newest logged snapshot."""
    newest = (
        select(func.max(events.c.pos).label("pos"))
        .where(events.c.type.like("billing.subscription.%"))
        .group_by(events.c.subject)
        .subquery()
    )
    rows = conn.execute(select(events.c.data).where(events.c.pos.in_(select(newest.c.pos))))
    snapshots: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    for row in rows:
        data = json.loads(row.data)
        obj = data.get("object") or {}
        if obj.get("object") == "subscription" and obj.get("id"):
            snapshots[str(obj["id"])] = (obj, data.get("contract_number"))
    gids = _global_ids(conn, snapshots)
    out: list[SubscriptionTerms] = []
    for billing_id, (obj, number) in snapshots.items():
        terms = terms_from_snapshot(obj, gids.get(billing_id), number)
        if terms is not None:
            out.append(terms)
    return out


def _global_ids(conn: Connection, billing_ids: Iterable[str]) -> dict[str, str]:
    wanted = list(billing_ids)
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        query = select(md_xrefs.c.local_id, md_xrefs.c.global_id).where(
            md_xrefs.c.kind == "subscription",
            md_xrefs.c.system == "billing",
            md_xrefs.c.valid_to.is_(None),
            md_xrefs.c.local_id.in_(part),
        )
        found.update({str(r.local_id): str(r.global_id) for r in conn.execute(query)})
    return found
