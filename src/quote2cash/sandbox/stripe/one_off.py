"""One-time charges on a new subscription (Stripe's ``add_invoice_items``): invoice items billed
once, on the subscription's first invoice, never on a renewal.

Shape as Stripe's: each entry takes a one-time ``price``, a ``quantity`` (default 1),
``metadata``, ``discounts`` (coupons taken off that item alone) and a ``period`` whose
``start[type]`` defaults to ``max_item_period_start`` (the subscription's start) and
``end[type]`` to ``min_item_period_end`` (its first period's end).
"""

from __future__ import annotations

from dataclasses import dataclass

from .billing_engine import add_line, item_discounts, new_invoiceitem, round_minor, unit_amount
from .coupons import resolve_discounts
from .errors import invalid_param
from .params import Params
from .store import JSON, Store

START_TYPES = ["max_item_period_start", "now", "timestamp"]
END_TYPES = ["min_item_period_end", "timestamp"]


@dataclass(frozen=True)
class OneOff:
    """A validated ``add_invoice_items`` entry (timestamps None: the subscription's own)."""

    price: JSON
    quantity: int
    metadata: dict[str, str]
    start: int | None
    end: int | None
    request: Params


def _bound(period: Params | None, key: str, choices: list[str]) -> int | None:
    side = period.sub(key) if period is not None else None
    if side is None:
        return None
    side.allow("type", "timestamp")
    kind = side.req_str("type", choices=choices)
    return side.req_int("timestamp") if kind == "timestamp" else None


def parse_one_offs(store: Store, p: Params, currency: str) -> list[OneOff]:
    """The request's ``add_invoice_items``: one-time, active prices in the subscription's
    currency only (Stripe refuses a recurring price there)."""
    out = []
    for entry in p.items("add_invoice_items"):
        entry.allow("price", "quantity", "metadata", "period", "discounts")
        price = store.get("price", entry.req_str("price"), f"{entry.prefix}[price]")
        if price["recurring"] is not None:
            raise invalid_param(
                f"{entry.prefix}[price]",
                "The price specified is set to `type=recurring` but this field only accepts "
                "prices with `type=one_time`.",
            )
        if not price["active"]:
            raise invalid_param(
                f"{entry.prefix}[price]",
                "The price specified is inactive. This field only accepts active prices.",
            )
        if price["currency"] != currency:
            raise invalid_param(
                f"{entry.prefix}[price]",
                "All prices on a subscription must have the same currency.",
            )
        period = entry.sub("period")
        if period is not None:
            period.allow("start", "end")
        quantity = entry.int_("quantity", minimum=0)
        out.append(
            OneOff(
                price=price,
                quantity=1 if quantity is None else quantity,
                metadata=entry.metadata(),
                start=_bound(period, "start", START_TYPES),
                end=_bound(period, "end", END_TYPES),
                request=entry,
            )
        )
    return out


def bill_one_offs(
    store: Store, sub: JSON, invoice: JSON, one_offs: list[OneOff], start: int, end: int
) -> None:
    """Each one-off as an invoice item of the subscription, put on its first ``invoice`` net of
    its own discounts."""
    customer = store.get("customer", sub["customer"])
    for one_off in one_offs:
        amount = round_minor(unit_amount(one_off.price) * one_off.quantity)
        period = (one_off.start or start, one_off.end or end)
        item = new_invoiceitem(
            store,
            customer=customer,
            amount=amount,
            currency=one_off.price["currency"],
            description=_description(store, one_off),
            period=period,
            quantity=one_off.quantity,
            price=one_off.price,
            subscription=sub["id"],
            metadata=one_off.metadata,
        )
        item["discounts"] = resolve_discounts(
            store, one_off.request, "discounts", sub=sub, item=None, current=[]
        )
        for discount_id in item["discounts"]:
            store.get("discount", discount_id)["invoice_item"] = item["id"]
        discounts, discount_amounts = item_discounts(store, invoice, item, amount, period[0])
        item["invoice"] = invoice["id"]
        add_line(
            store,
            invoice,
            amount=amount,
            description=item["description"],
            period=period,
            quantity=one_off.quantity,
            price=one_off.price,
            invoice_item=item["id"],
            subscription=sub["id"],
            metadata=one_off.metadata,
            discounts=discounts,
            discount_amounts=discount_amounts,
        )


def _description(store: Store, one_off: OneOff) -> str:
    product = store.lookup("product", one_off.price["product"])
    name = str(product["name"]) if product else str(one_off.price["product"])
    return f"{one_off.quantity} × {name}"  # noqa: RUF001
