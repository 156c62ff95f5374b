"""Where a canonical product reference names an ERP item code: one convention for every ERP."""

from __future__ import annotations

from typing import Final

from quote2cash.canonical import Ref

__all__ = ["ITEM_CODE_KEYS", "item_codes"]

ITEM_CODE_KEYS: Final = ("erp", "item_code", "sku", "product_code")
"""``external_ids`` keys a line's product reference may carry an ERP item code (or id) under."""


def item_codes(ref: Ref) -> list[str]:
    """The codes a line's product reference may name, most specific first (``ITEM_CODE_KEYS``,
    then the global id)."""
    codes: list[str] = []
    for candidate in (*(ref.id_in(key) for key in ITEM_CODE_KEYS), ref.global_id):
        if candidate and candidate not in codes:
            codes.append(candidate)
    return codes
