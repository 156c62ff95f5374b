"""A legacy on-premises ERP for the sandbox: SOAP for masters and orders, batch files for cash.

It proves the ``Erp`` role is a real abstraction: its own numbering (``C-US-000001``,
``SO-DE-000002``, ``INV-US-000003``), two legal entities (US in USD, DE in EUR at 19 % VAT), a
credit limit per customer and VAT registration for the DE entity's EU customers abroad.
"""

from quote2cash.sandbox.legacy_erp.books import ENTITIES, ITEMS, Books, Refusal
from quote2cash.sandbox.legacy_erp.launcher import (
    LegacyErpEndpoint,
    LegacyErpSandbox,
    LegacyErpStartError,
    load_endpoint,
)

__all__ = [
    "ENTITIES",
    "ITEMS",
    "Books",
    "LegacyErpEndpoint",
    "LegacyErpSandbox",
    "LegacyErpStartError",
    "Refusal",
    "load_endpoint",
]
