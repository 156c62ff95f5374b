"""The lifecycle model's switchboard: one flag per dimension of the contract space.

A dimension that breaks on main is off, with the defect named; turn it on when the fix merges.
``Q2C_LIFECYCLE_SPACE=all`` turns every dimension on (to see what still breaks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Space:
    seats: bool = True
    support_plan: bool = True
    bundles: bool = True
    """PLATFORM-PRO bundles of several units (a support plan billed with every unit)."""
    discounts: bool = True
    half_cent_discounts: bool = True
    """Discounts whose amount ends in half a cent (12.5 % off an odd-cent total), which the CRM
    rounds half-even."""
    both_entities: bool = True
    """Q2C Inc. (USD) and Q2C GmbH (EUR) accounts."""
    send_invoice: bool = True
    """Customers pay their open invoices themselves (card or bank transfer)."""
    declined_then_paid: bool = True
    """A card declined, the customer pays by card the next day."""
    retry_in_the_same_second: bool = True
    """A declined card and a good one in the same second: the failure may be heard last."""
    refunds: bool = True
    """Full and partial refunds of card payments."""
    amendments_after_payment: bool = True
    """Seat increases mid-term, once the invoice before them is paid."""
    downgrades: bool = True
    """Seat reductions mid-term: billing's proration credit goes to the customer's balance and
    settles later invoices, wholly or in part."""
    several_amendments_per_period: bool = True
    renewals: bool = True
    """Test clocks advanced past the term end: billing renews on its own."""
    cancel_at_term_end: bool = True
    cancel_immediately: bool = True
    """Cancellation now, with a proration credit note."""
    unmapped_product: bool = True
    """A deal selling a product the catalog never mapped: one expected mapping exception."""
    metered: bool = True
    """Metered API calls reported by the customer (billing meter events)."""
    charge_automatically: bool = False
    """The hub's billing collects automatically and every customer signs up with a card on
    file: collection is one hub setting, so this replaces the send-invoice world. Off in the
    CI set so that it keeps the send-invoice paths; the whole space with it on
    (``Q2C_LIFECYCLE_SPACE=all``) reconciled seeds 1-30 on 2026-12-06."""
    taxed: bool = True
    """The hub runs with config/tax.yaml: Q2C GmbH's German customers pay 19 % VAT."""
    one_time_lines: bool = True
    """A one-time onboarding fee (ONBOARD) on the first invoice, booked once in the ERP."""
    downgrade_before_payment: bool = True
    """A downgrade before the first invoice is paid (draws nothing unless ``downgrades`` is on)."""
    amendments_before_activation: bool = True
    """Amendments requested before the contract is activated or its first invoice paid (they
    park until the activation)."""
    out_of_order_amendments: bool = True
    """Amendment n+1 filed before n (it parks until n is applied)."""

    periods: int = 2
    """At most this many billing periods per lifecycle (the long run takes 3)."""
    amendments_per_period: int = 2

    def enabled(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is True]


def _from_environment() -> Space:
    wanted = os.environ.get("Q2C_LIFECYCLE_SPACE", "")
    base = (
        Space(periods=3, amendments_per_period=3) if os.environ.get("Q2C_LONG") == "1" else Space()
    )
    if wanted == "all":
        return replace(base, **{f.name: True for f in fields(Space) if f.type == "bool"})
    overrides: dict[str, bool] = {}
    for item in filter(None, (w.strip() for w in wanted.split(","))):
        name, _, value = item.partition("=")
        if name not in {f.name for f in fields(Space) if f.type == "bool"}:
            raise ValueError(f"Q2C_LIFECYCLE_SPACE: unknown dimension {name!r}")
        overrides[name] = value.lower() not in ("0", "off", "false", "no")
    return replace(base, **overrides)


def _erps() -> tuple[str, ...]:
    chosen = os.environ.get("Q2C_LIFECYCLE_ERP")
    if not chosen:
        return ("tryton", "legacy")
    if chosen not in ("tryton", "legacy"):
        raise ValueError(f"Q2C_LIFECYCLE_ERP: {chosen!r} is not tryton or legacy")
    return (chosen,)


ERPS = _erps()
"""The ERPs a world is built on, one world each: both by default, or the one
``Q2C_LIFECYCLE_ERP`` names (``legacy``: the legacy ERP, SOAP + batch files; its CI set is seeds
1-10, see ``test_lifecycles.CI_SEEDS``; its full set of 30: ``Q2C_LIFECYCLE_ERP=legacy
Q2C_LIFECYCLE_SEEDS=1-30``; ``Q2C_LONG=1`` works on it too)."""

SPACE = _from_environment()
"""The space the CI set and the long run draw from (``Q2C_LIFECYCLE_SPACE=taxed,one_time_lines``
or ``=all`` to widen it for one run)."""
