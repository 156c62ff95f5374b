"""Tax on invoice and credit note lines from attached tax rate snapshots, as Stripe computes it.

Per line, on the line's amount after discounts, rounded half away from zero per line:
exclusive ``round(net * p / 100)``, inclusive ``net - round(net / (1 + p / 100))``. A customer
whose ``tax_exempt`` is ``exempt`` or ``reverse`` pays 0 on every rate, with the taxability
reason ``customer_exempt`` or ``reverse_charge``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .store import JSON

_EXEMPT_REASONS = {"exempt": "customer_exempt", "reverse": "reverse_charge"}


def _round(value: Fraction) -> int:
    magnitude = abs(value)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return whole if value >= 0 else -whole


def line_taxes(rates: list[JSON], net: int, tax_exempt: str) -> list[JSON]:
    """The ``taxes`` entries of a line whose amount after discounts is ``net``."""
    out: list[JSON] = []
    for rate in rates:
        percent = Fraction(str(rate.get("_percentage", rate["percentage"])))
        reason = _EXEMPT_REASONS.get(tax_exempt)
        if reason is not None:
            amount, taxable = 0, net
        elif rate["inclusive"]:
            taxable = _round(Fraction(net) / (1 + percent / 100))
            amount = net - taxable
        else:
            amount, taxable = _round(Fraction(net) * percent / 100), net
        out.append(
            {
                "amount": amount,
                "tax_behavior": "inclusive" if rate["inclusive"] else "exclusive",
                "tax_rate_details": {"tax_rate": rate["id"]},
                "taxability_reason": reason or "standard_rated",
                "taxable_amount": taxable,
                "type": "tax_rate_details",
            }
        )
    return out


def total_taxes(entries: list[JSON]) -> list[JSON]:
    """Every line's ``taxes`` summed per (rate, behaviour, reason), in first-seen order."""
    totals: dict[tuple[Any, ...], JSON] = {}
    for entry in entries:
        key = (
            entry["tax_rate_details"]["tax_rate"],
            entry["tax_behavior"],
            entry["taxability_reason"],
        )
        if key not in totals:
            totals[key] = {**entry, "tax_rate_details": dict(entry["tax_rate_details"])}
            totals[key]["amount"] = totals[key]["taxable_amount"] = 0
        totals[key]["amount"] += entry["amount"]
        totals[key]["taxable_amount"] += entry["taxable_amount"]
    return list(totals.values())


def split_tax(entries: list[JSON]) -> tuple[int, int]:
    """(exclusive tax, inclusive tax) of ``taxes`` entries."""
    exclusive = sum(int(e["amount"]) for e in entries if e["tax_behavior"] == "exclusive")
    inclusive = sum(int(e["amount"]) for e in entries if e["tax_behavior"] == "inclusive")
    return exclusive, inclusive
