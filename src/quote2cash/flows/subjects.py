"""Business keys: every event of one contract shares its subject, so it is handled in order."""

from __future__ import annotations

CONTRACT_PREFIX = "contract:"


def contract_subject(contract_number: str) -> str:
    return f"{CONTRACT_PREFIX}{contract_number}"
