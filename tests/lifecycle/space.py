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
    bundles: bool = False
    """Off: new (lifecycle seed 6), a PLATFORM-PRO line of n > 1 units is booked in the ERP at
    the CRM's n x 248.00 while billing charges n seats + one support plan (catalog ``per: line``)
    a period: bookings and billing differ from the second unit on."""
    discounts: bool = True
    half_cent_discounts: bool = False
    """Off: new (found by the model), a 12.5 % Discount on 23 x 49.00 USD: the CRM's TotalPrice
    is 986.12 (half-even), the hub rounds 986.125 half-up to 986.13 and refuses the deal as
    "12.5004% off ... billing takes a percentage with at most two decimals". And with 12.5 %
    off, ERP bookings (rounded per amendment delta) drift from billing's per-period charge
    (seed 19: 1329.21 booked vs 1329.12 charged)."""
    both_entities: bool = True
    """Q2C Inc. (USD) and Q2C GmbH (EUR) accounts."""
    send_invoice: bool = True
    """Customers pay their open invoices themselves (card or bank transfer)."""
    declined_then_paid: bool = True
    """A card declined, the customer pays by card the next day."""
    retry_in_the_same_second: bool = False
    """Off: new (seed 9 of the first model run), a declined card and a good one in the same
    second: billing.payment.failed reaches the hub after payment.succeeded, and
    record_failed_payment writes Open over Paid in the CRM (it does not re-check the invoice as
    mark_overdue does)."""
    refunds: bool = True
    """Full and partial refunds of card payments."""
    amendments_after_payment: bool = True
    """Seat increases mid-term, once the invoice before them is paid."""
    downgrades: bool = False
    """Off: new (CI set with taxed, one_time_lines and all amendment flags on, 2026-12-06).
    Seed 13 (29 seats, paid, down to 24, up to 28): invoice -0003, settled from the downgrade's
    customer balance, is Paid in billing but stays Open in the CRM. Seed 5 (DE, 19 % VAT, 39
    down to 34 seats): billing's proration credit note is -160.42 (tax 25.62, rounded per
    line), the ERP computes tax 25.61 on the document and refuses it ([data] exception), so
    the next invoice never reaches the ERP or the CRM either."""
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
    file (the whole world: collection is one hub setting). Off: issue 10, payment.succeeded
    can arrive before invoice.finalized and the invoice never reaches the ERP or the CRM."""
    taxed: bool = True
    """The hub runs with config/tax.yaml: Q2C GmbH's German customers pay 19 % VAT."""
    one_time_lines: bool = True
    """A one-time onboarding fee (ONBOARD) on the first invoice, booked once in the ERP."""
    downgrade_before_payment: bool = False
    """Off: draws nothing unless ``downgrades`` is on (a downgrade before payment is one), so
    it waits on that flag's defects."""
    amendments_before_activation: bool = False
    """Off: with it and out_of_order_amendments on, the CI set fails only on seed 7 (DE, 19 %
    VAT, cancel now): billing's credit note is -140.02 (tax 22.35, rounded per line), the ERP
    computes 22.36 on the document and refuses it; a tax rounding defect, not an ordering one."""
    out_of_order_amendments: bool = False
    """Off: as above (seed 7's credit note VAT rounding); parked amendments otherwise reconcile."""

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


SPACE = _from_environment()
"""The space the CI set and the long run draw from (``Q2C_LIFECYCLE_SPACE=taxed,one_time_lines``
or ``=all`` to widen it for one run)."""
