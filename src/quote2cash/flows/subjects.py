"""Business keys: every event of one contract shares its subject, so it is handled in order."""

from __future__ import annotations

from typing import Any

CONTRACT_PREFIX = "contract:"


def contract_subject(contract_number: str) -> str:
    return f"{CONTRACT_PREFIX}{contract_number}"


def contract_number_of(obj: dict[str, Any]) -> str | None:
    """The hub's contract number that billing keeps on a subscription or its invoices."""
    meta = obj.get("metadata") or {}
    if obj.get("object") == "subscription" and meta.get("contract_number"):
        return str(meta["contract_number"])
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or obj.get("subscription_details") or {}
    number = (details.get("metadata") or {}).get("contract_number")
    return str(number) if number else None
