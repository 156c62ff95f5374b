"""Random contract lifecycles, reproducible from a seed: an account, a deal and dated actions.

Each action is what a person or a customer does in a system (a rep in the CRM, a customer or
the billing team in Stripe); ``day`` is when, counted from the deal's close on the customer's
own Stripe test clock. What may be drawn is bounded by ``Space``.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum

from lifecycle.space import Space

LIST_PRICES: dict[str, dict[str, Decimal]] = {
    "PLAT-SEAT": {"USD": Decimal("49.00"), "EUR": Decimal("45.00")},
    "SUPPORT-PREM": {"USD": Decimal("199.00"), "EUR": Decimal("179.00")},
    "PLATFORM-PRO": {"USD": Decimal("248.00"), "EUR": Decimal("224.00")},
    "API-CALLS": {"USD": Decimal("0.00"), "EUR": Decimal("0.00")},
    "ONBOARD": {"USD": Decimal("1500.00"), "EUR": Decimal("1400.00")},
    "LEGACY-ANALYTICS": {"USD": Decimal("99.00"), "EUR": Decimal("89.00")},
}
UNMAPPED = "LEGACY-ANALYTICS"
DISCOUNTS = (Decimal("10"), Decimal("15"), Decimal("20"))
HALF_CENT_DISCOUNTS = (Decimal("12.5"),)
"""Off whole-cent prices, these give half cents the CRM and the hub may round differently."""
PERIOD_DAYS = 31


class Do(StrEnum):
    PAY = "pay"
    """The customer pays every open invoice: card, bank transfer, a declining card (and then
    a good one in the same second), or only a declining card."""
    AMEND = "amend"
    """A rep requests a seat change on the running subscription."""
    REFUND = "refund"
    """Billing refunds (part of) the newest card payment."""
    USAGE = "usage"
    """The customer's API calls, reported to billing's meter."""
    RENEW = "renew"
    """The billing team's test clock passes the period end: billing renews."""
    CANCEL_NOW = "cancel_now"
    CANCEL_AT_TERM_END = "cancel_at_term_end"


@dataclass(frozen=True)
class Action:
    do: Do
    day: int
    quantity: int | None = None
    """AMEND: the new seat count (0 cancels); USAGE: the calls reported."""
    method: str | None = None
    """PAY: card, bank_transfer, declined_then_card or declined."""
    share: Decimal | None = None
    """REFUND: the part of the payment given back (1 = all)."""
    then: int | None = None
    """AMEND: a second seat count, whose request the rep files before the first's."""

    def shown(self) -> str:
        extra = {
            "quantity": self.quantity,
            "then": self.then,
            "method": self.method,
            "share": self.share,
        }
        said = ", ".join(f"{k}={v}" for k, v in extra.items() if v is not None)
        return f"day {self.day}: {self.do.value}" + (f" ({said})" if said else "")


@dataclass(frozen=True)
class DealLine:
    code: str
    quantity: int
    discount: Decimal | None = None

    def unit_price(self, currency: str) -> Decimal:
        return LIST_PRICES[self.code][currency]


@dataclass(frozen=True)
class Lifecycle:
    seed: int
    stem: str
    entity: str
    """US (Q2C Inc., USD) or DE (Q2C GmbH, EUR)."""
    lines: tuple[DealLine, ...]
    actions: tuple[Action, ...] = field(default=())
    tag: str = ""
    """Tells a re-run (shrinking) apart from the first run in the same world."""

    @property
    def name(self) -> str:
        return f"{self.stem} {self.seed}{self.tag} {'GmbH' if self.entity == 'DE' else 'Inc.'}"

    @property
    def place_number(self) -> int:
        """0-999, different for every seed of a run of up to 1,000 consecutive seeds (and for a
        re-run's tag): the company's own street and postal code, so the golden record's matcher
        sees distinct companies, not one company's accounts (DESIGN §2 "Duplicates")."""
        return (self.seed * 37 + zlib.crc32(self.tag.encode())) % 1000

    @property
    def currency(self) -> str:
        return "EUR" if self.entity == "DE" else "USD"

    @property
    def contract_number(self) -> str:
        return f"C-LC-{self.seed}{self.tag}"

    @property
    def unmapped(self) -> bool:
        return any(line.code == UNMAPPED for line in self.lines)

    @property
    def seats(self) -> int | None:
        return next((line.quantity for line in self.lines if line.code == "PLAT-SEAT"), None)

    def without(self, index: int, tag: str) -> Lifecycle:
        """The same lifecycle with one action dropped, under a new tag (for shrinking)."""
        return replace(self, actions=self.actions[:index] + self.actions[index + 1 :], tag=tag)

    def retagged(self, tag: str) -> Lifecycle:
        return replace(self, tag=tag)

    def shown(self) -> str:
        lines = ", ".join(
            f"{ln.quantity} x {ln.code}" + (f" -{ln.discount}%" if ln.discount else "")
            for ln in self.lines
        )
        steps = "; ".join(a.shown() for a in self.actions) or "no actions"
        return f"seed {self.seed}: {self.name} ({self.entity}) buys {lines}; {steps}"


_STEMS = (
    "Northwind", "Bluewater", "Ironbridge", "Summit", "Cedar Ridge", "Harborview", "Redwood",
    "Granite Peak", "Silverline", "Lakeshore", "Brightpath", "Evergreen", "Keystone", "Falcon",
)  # fmt: skip


def generate(seed: int, space: Space) -> Lifecycle:
    """The lifecycle of ``seed``: the same seed and space always give the same lifecycle."""
    rng = random.Random(seed)
    entity = rng.choice(("US", "DE")) if space.both_entities else "US"
    stem = rng.choice(_STEMS)
    lines = _lines(rng, space)
    draft = Lifecycle(seed, stem, entity, lines)
    if draft.unmapped:
        return draft
    return replace(draft, actions=tuple(_actions(rng, space, draft)))


def _lines(rng: random.Random, space: Space) -> tuple[DealLine, ...]:
    if space.unmapped_product and rng.random() < 0.05:
        return (DealLine("PLAT-SEAT", rng.randint(1, 20)), DealLine(UNMAPPED, 1))
    lines: list[DealLine] = []
    if space.bundles and rng.random() < 0.2:
        lines.append(DealLine("PLATFORM-PRO", rng.randint(1, 5)))
    elif space.seats:
        offered = DISCOUNTS + (HALF_CENT_DISCOUNTS if space.half_cent_discounts else ())
        discount = rng.choice(offered) if space.discounts and rng.random() < 0.3 else None
        lines.append(DealLine("PLAT-SEAT", rng.randint(2, 30), discount))
        if space.support_plan and rng.random() < 0.3:
            lines.append(DealLine("SUPPORT-PREM", 1))
    if space.metered and rng.random() < 0.25:
        lines.append(DealLine("API-CALLS", 1))
    if space.one_time_lines and rng.random() < 0.3:
        lines.append(DealLine("ONBOARD", 1))
    if not lines:
        lines.append(DealLine("SUPPORT-PREM", 1))
    return tuple(lines)


def _pay(rng: random.Random, space: Space, day: int) -> list[Action]:
    """One payment round: card or bank transfer, or a declined card and then (in the same
    second, or the next day) a good one."""
    choices = ["card", "bank_transfer"]
    if space.declined_then_paid:
        choices.append("declined_then_card")
    method = rng.choice(choices)
    if method != "declined_then_card" or space.retry_in_the_same_second:
        return [Action(Do.PAY, day, method=method)]
    return [Action(Do.PAY, day, method="declined"), Action(Do.PAY, day, method="card")]


def _actions(rng: random.Random, space: Space, deal: Lifecycle) -> list[Action]:
    """Periods of the term, one after the other: amendments, usage, payments, a refund, the
    renewal; at the end perhaps a cancellation."""
    actions: list[Action] = []
    seats = deal.seats
    metered = any(line.code == "API-CALLS" for line in deal.lines)
    periods = rng.randint(1, space.periods) if space.renewals else 1
    for period in range(periods):
        base = period * PERIOD_DAYS
        paid = False
        if seats is not None and space.amendments_before_activation and rng.random() < 0.2:
            allow_down = space.downgrades and space.downgrade_before_payment
            seats = _amend(rng, actions, base, seats, allow_down=allow_down)
        if space.send_invoice and rng.random() < 0.85:
            actions += _pay(rng, space, base + 1)
            paid = True
            if space.refunds and rng.random() < 0.15:
                share = rng.choice((Decimal(1), Decimal("0.5"), Decimal("0.25")))
                actions.append(Action(Do.REFUND, base + 2, share=share))
        if metered and rng.random() < 0.7:
            actions.append(Action(Do.USAGE, base + 3, quantity=rng.randint(1, 40) * 500))
        can_amend = seats is not None and space.amendments_after_payment
        if can_amend and rng.random() < 0.5:
            most = space.amendments_per_period if space.several_amendments_per_period else 1
            count = rng.randint(1, most)
            for n in range(count):
                allow_down = space.downgrades and (paid or space.downgrade_before_payment)
                assert seats is not None
                seats = _amend(rng, actions, base + 5 + 6 * n, seats, allow_down=allow_down)
                if space.out_of_order_amendments and rng.random() < 0.3:
                    first = actions.pop()
                    then = _amend(rng, actions, first.day, seats, allow_down=allow_down)
                    actions[-1] = replace(first, then=then)
                    seats = then
                if space.send_invoice and rng.random() < 0.6:
                    actions += _pay(rng, space, base + 6 + 6 * n)
                else:
                    paid = False
        if period < periods - 1:
            actions.append(Action(Do.RENEW, base + PERIOD_DAYS))
    last = periods * PERIOD_DAYS
    ending = rng.random() if seats is not None else 1.0
    if space.cancel_immediately and ending < 0.15:
        actions.append(Action(Do.CANCEL_NOW, last - 10))
    elif space.cancel_at_term_end and ending < 0.3:
        actions.append(Action(Do.CANCEL_AT_TERM_END, last - 10))
        actions.append(Action(Do.RENEW, last))
    return actions


def _amend(
    rng: random.Random, actions: list[Action], day: int, seats: int, *, allow_down: bool
) -> int:
    low = max(1, seats - 5) if allow_down else seats + 1
    new = rng.randint(low, seats + 8)
    if new == seats:
        new = seats + 1
    actions.append(Action(Do.AMEND, day, quantity=new))
    return new
