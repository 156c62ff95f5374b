"""A deal line as ERP lines: a CPQ bundle's amount is split across its ERP items by relative
standalone selling price (ASC 606), to the cent, so the parts add up exactly to the line.

The weight of a component is the unit amount of its paired billing price (components pair billing
<-> ERP by place, as in ``FlowDeps.erp_item_for_price``) times the component's quantity; the split
is largest-remainder (``Money.allocate``). A single-item line takes the whole amount, with no
price lookup. The pure functions take the unit amounts; ``erp_lines`` and ``seat_prices`` fetch
them from billing through ``FlowDeps`` (cached per process).

When billing's licensed prices for a line are known, the ERP books what billing charges a period
(``billed``: each billing line's gross less its percent discount rounded half up, as Stripe
rounds a coupon per line), so bookings and billing agree to the cent, amendments included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from quote2cash.canonical import Money, Order, OrderLine, Ref, UsageType
from quote2cash.canonical.money import exact_product
from quote2cash.engine.errors import DataError, MappingError
from quote2cash.flows.deps import FlowDeps
from quote2cash.masterdata import MappedOrderLine
from quote2cash.masterdata.catalog import Per


def billed(unit: Decimal, units: int, percent: Decimal | None, currency: str) -> Money:
    """What billing charges a period for ``units`` of a price at ``unit`` less ``percent``: the
    gross less the discount rounded half up, per line (a percent coupon as Stripe applies it)."""
    gross = Money.quantize(exact_product(unit, Decimal(units)), currency)
    if percent is None:
        return gross
    return gross - Money.quantize(gross.amount * percent / 100, currency)


@dataclass(frozen=True)
class SeatPrice:
    """An ERP item a seat change moves: ``per_seat`` units of it per seat at ``unit_price``; at
    billing's charge when its billing price (``billing_unit``, less ``percent``) is known."""

    item: str
    per_seat: int
    unit_price: Money
    billing_unit: Decimal | None = None
    percent: Decimal | None = None

    def moved(self, previous: int, new: int) -> Money:
        """What the change from ``previous`` to ``new`` seats adds to the booking (negative:
        seats removed): billing's charge for the new units less its charge for the old."""
        if self.billing_unit is None:
            return self.unit_price * ((new - previous) * self.per_seat)
        currency = self.unit_price.currency
        now = billed(self.billing_unit, new * self.per_seat, self.percent, currency)
        return now - billed(self.billing_unit, previous * self.per_seat, self.percent, currency)


def component_amounts(
    order: Order, mapped: MappedOrderLine, unit_amounts: Mapping[str, Decimal]
) -> list[Money]:
    """The line's amount split over its ERP components (in their order), adding up exactly.

    ``unit_amounts``: billing price (as ``mapped.billing`` names it) -> unit amount in the order
    currency. A MappingError names the order, line, product code and component when a bundle's
    components do not pair, a price is unknown or negative, or every weight is zero.
    """
    line = mapped.line
    if len(mapped.erp) == 1:
        return [line.amount]
    where = f"{order.label}: line {mapped.index} ({mapped.code})"
    if len(mapped.billing) != len(mapped.erp):
        raise MappingError(
            f"{where}: bundle has {len(mapped.billing)} billing components "
            f"({', '.join(p for p, _ in mapped.billing)}) but {len(mapped.erp)} ERP components "
            f"({', '.join(i for i, _ in mapped.erp)}); expected them to pair by place"
        )
    weights: list[Decimal] = []
    for index, ((price, _), (item, quantity)) in enumerate(
        zip(mapped.billing, mapped.erp, strict=True)
    ):
        unit = unit_amounts.get(price)
        if unit is None:
            raise MappingError(
                f"{where}: component {index} ({item}): billing price {price!r} is not in "
                f"billing's price list in {order.currency}; expected its standalone price"
            )
        if unit < 0:
            raise MappingError(
                f"{where}: component {index} ({item}): billing price {price!r} has unit amount "
                f"{unit}; expected a standalone price >= 0"
            )
        weights.append(exact_product(unit, Decimal(quantity)))
    if not any(weights):
        if line.amount.is_zero():
            return [Money.zero(order.currency) for _ in mapped.erp]
        raise MappingError(
            f"{where}: components {', '.join(i for i, _ in mapped.erp)} all weigh zero (billing "
            f"prices {', '.join(p for p, _ in mapped.billing)} x quantities); cannot split "
            f"{line.amount} by standalone price"
        )
    return line.amount.allocate(weights)


def allocate_line(
    order: Order,
    mapped: MappedOrderLine,
    unit_amounts: Mapping[str, Decimal],
    parts: Sequence[Money] | None = None,
) -> list[OrderLine]:
    """The ERP lines of one deal line, each a validated canonical line: quantity the component's,
    unit price its amount / quantity rounded up to the cent, the rest a discount. ``parts``: the
    components' amounts as billing charges them (default: the line's amount split)."""
    if parts is None:
        parts = component_amounts(order, mapped, unit_amounts)
    single = len(mapped.erp) == 1
    line = mapped.line
    out: list[OrderLine] = []
    for (item, quantity), amount in zip(mapped.erp, parts, strict=True):
        unit = (
            Money.from_minor(-(-amount.minor_units // quantity), order.currency)
            if quantity
            else Money.zero(order.currency)
        )
        discount = unit * quantity - amount
        base = line.description or mapped.code
        out.append(
            OrderLine.model_validate(
                {
                    "global_id": line.global_id,
                    "external_ids": line.external_ids,
                    "product": Ref(external_ids={"item_code": item}),
                    "price_plan": line.price_plan if single else None,
                    "description": line.description if single else f"{base} - {item}"[:1000],
                    "quantity": quantity,
                    "unit_price": unit,
                    "discount": None if discount.is_zero() else discount,
                    "amount": amount,
                }
            )
        )
    return out


def seat_prices_of(
    order: Order,
    mapped: MappedOrderLine,
    unit_amounts: Mapping[str, Decimal],
    percent: Decimal | None = None,
) -> list[SeatPrice]:
    """The ERP items a seat change of the line moves, at their allocated price per ERP unit, and
    at billing's charge where ``unit_amounts`` has the paired billing price.

    A single-item line moves its item (``quantity / seats`` units per seat, at least one); a
    bundle moves its per-unit components only (a per-line support plan stays as booked).
    """
    line = mapped.line
    if not line.quantity:
        raise DataError(
            f"{order.label}: line {mapped.index} ({mapped.code}) has quantity 0; expected seats "
            "to price a seat change from"
        )
    if len(mapped.erp) == 1:
        item, quantity = mapped.erp[0]
        per_seat = max(quantity // line.quantity, 1)
        unit = unit_amounts.get(mapped.billing[0][0]) if len(mapped.billing) == 1 else None
        return [SeatPrice(item, per_seat, _per_unit(line.amount, quantity), unit, percent)]
    parts = component_amounts(order, mapped, unit_amounts)
    return [
        SeatPrice(
            item,
            component.quantity,
            _per_unit(amount, quantity),
            unit_amounts.get(price),
            percent,
        )
        for (item, quantity), (price, _), amount, component in zip(
            mapped.erp, mapped.billing, parts, mapped.mapping.version.erp, strict=True
        )
        if component.per is Per.UNIT
    ]


def _per_unit(amount: Money, quantity: int) -> Money:
    """The price of one unit, to the nearest cent (half up), as amendments price seats."""
    return Money.quantize(amount.amount / quantity, amount.currency)


def seat_billing_prices(mapped: MappedOrderLine) -> list[tuple[str, int]]:
    """The billing prices a seat change of the line sets, with billing units per seat: a single
    price (per-unit multiplier, else 1), or a bundle's per-unit prices."""
    components = mapped.mapping.version.billing
    if len(mapped.billing) == 1:
        [component] = components
        return [(mapped.billing[0][0], component.quantity if component.per is Per.UNIT else 1)]
    return [
        (price, component.quantity)
        for (price, _), component in zip(mapped.billing, components, strict=True)
        if component.per is Per.UNIT
    ]


async def unit_amounts(
    deps: FlowDeps, order: Order, mapped: Iterable[MappedOrderLine]
) -> dict[str, Decimal]:
    """Billing's unit amount, in the order currency, of every price a bundle line splits by."""
    out: dict[str, Decimal] = {}
    for m in mapped:
        if len(m.erp) < 2:
            continue
        for price, _ in m.billing:
            plan = await deps.price_plan(price)
            if plan is not None and plan.currency == order.currency:
                out[price] = plan.unit_amount
    return out


async def licensed_units(
    deps: FlowDeps, order: Order, mapped: MappedOrderLine
) -> dict[str, Decimal]:
    """Billing's unit amount of each licensed price of the line in the order currency (a
    metered price, or one billing does not have, is left out)."""
    out: dict[str, Decimal] = {}
    for price, _ in mapped.billing:
        plan = await deps.price_plan(price)
        if (
            plan is not None
            and plan.currency == order.currency
            and plan.usage_type is UsageType.LICENSED
        ):
            out[price] = plan.unit_amount
    return out


def billed_parts(
    order: Order, mapped: MappedOrderLine, units: Mapping[str, Decimal], percent: Decimal | None
) -> list[Money] | None:
    """What billing charges a period for each ERP component of the line (paired by place), or
    None when a price is not a known licensed one or the components do not pair."""
    if len(mapped.billing) != len(mapped.erp) or any(p not in units for p, _ in mapped.billing):
        return None
    return [billed(units[p], quantity, percent, order.currency) for p, quantity in mapped.billing]


async def erp_lines(
    deps: FlowDeps,
    order: Order,
    mapped: Sequence[MappedOrderLine],
    percents: Sequence[Decimal | None] | None = None,
) -> list[OrderLine]:
    """The deal's lines as ERP lines (a bundle fans out): what billing charges a period for each
    (its line's discount ``percents`` applied), else the deal line's amount split."""
    amounts = await unit_amounts(deps, order, mapped)
    out: list[OrderLine] = []
    for index, m in enumerate(mapped):
        percent = percents[index] if percents is not None else None
        parts = billed_parts(order, m, await licensed_units(deps, order, m), percent)
        out.extend(allocate_line(order, m, amounts, parts))
    return out


async def seat_prices(
    deps: FlowDeps, order: Order, mapped: MappedOrderLine, percent: Decimal | None = None
) -> list[SeatPrice]:
    """``seat_prices_of`` with billing's prices fetched (a seat change booked as billing
    charges it, ``percent`` off)."""
    units = {
        **await unit_amounts(deps, order, [mapped]),
        **await licensed_units(deps, order, mapped),
    }
    return seat_prices_of(order, mapped, units, percent)
