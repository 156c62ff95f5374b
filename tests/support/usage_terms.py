"""A metered subscription as billing reports it to the hub: logged snapshot + xref link."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.xref import Kind, XrefStore

START = datetime(2026, 1, 15, tzinfo=UTC)
"""Service start and cycle anchor of the test subscriptions (monthly, on the 15th)."""


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def log_subscription(
    runtime: Runtime,
    billing_id: str = "sub_1",
    *,
    contract: str = "C-1",
    customer: str = "cus_1",
    current_period_start: datetime | None = None,
    ended_at: datetime | None = None,
    unit: str | None = "call",
    meters: tuple[str, ...] = ("api_calls",),
    test_clock: str | None = None,
) -> str:
    """Log billing's snapshot of a metered subscription; returns its hub global id."""
    gid = XrefStore(runtime.engine).ensure_global_id(Kind.SUBSCRIPTION, "billing", billing_id)
    items: list[dict[str, Any]] = [
        {
            "id": f"si_{billing_id}_seat",
            "price": {
                "id": "price_seat",
                "recurring": {"interval": "month", "usage_type": "licensed"},
            },
            "quantity": 3,
        }
    ]
    for n, meter in enumerate(meters):
        items.append(
            {
                "id": f"si_{billing_id}_{n}",
                "current_period_start": _epoch(current_period_start or START),
                "price": {
                    "id": f"price_{meter}",
                    "lookup_key": f"{meter}_usd",
                    "metadata": {"meter": meter, **({"unit": unit} if unit else {})},
                    "recurring": {
                        "interval": "month",
                        "interval_count": 1,
                        "usage_type": "metered",
                        "meter": f"mtr_{meter}",
                    },
                },
            }
        )
    obj = {
        "object": "subscription",
        "id": billing_id,
        "customer": customer,
        "status": "canceled" if ended_at else "active",
        "start_date": _epoch(START),
        "billing_cycle_anchor": _epoch(START),
        "ended_at": _epoch(ended_at) if ended_at else None,
        "metadata": {"contract_number": contract},
        "items": {"object": "list", "data": items},
        "test_clock": test_clock,
    }
    runtime.log.append(
        new_event(
            "billing.subscription.activated",
            f"contract:{contract}",
            {"object": obj, "contract_number": contract, "object_type": "subscription"},
            source="stripe",
        )
    )
    return gid
