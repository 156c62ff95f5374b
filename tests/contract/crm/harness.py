"""What the CRM contract needs of an implementation besides the role: a sales desk to seed it,
the write-back targets to read, faults, in neutral terms; and the implementations it runs against.

To add an implementation, write a class satisfying ``CrmHarness`` and a context manager that
stands the CRM up once and yields a factory of harnesses, then add one entry to
``IMPLEMENTATIONS``; every scenario in this folder then runs against it too. Scenarios seed and
break the CRM through the harness, act through the ``Crm`` role only, and read write-backs through
the harness -- never through the connector under test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Protocol

import pytest

from quote2cash.canonical import Address
from quote2cash.connectors.roles import Crm, InvoiceState

REQUIRE_SERVICES = os.environ.get("Q2C_REQUIRE_SERVICES") == "1"


@dataclass(frozen=True)
class Line:
    """One product line of a deal as a sales rep enters it."""

    product_id: str
    quantity: int
    unit_price: str
    service_date: date | None = None
    discount: str | None = None
    """The rep's discount in percent on the line (the CRM computes the line total from it)."""


@dataclass(frozen=True)
class PublishedInvoice:
    """An invoice status as the hub wrote it into the CRM, read behind the connector's back."""

    standing: str
    """Where the invoice stands, in the hub's words: ``open``, ``paid`` ..."""
    amount: Decimal


class CrmHarness(Protocol):
    """One CRM implementation as the contract drives it. Ids are the CRM's own record ids."""

    name: str
    page_size: int
    """The smallest page of deals the CRM honours."""
    bad_secret: str
    """The secret ``crm_with_bad_secret`` uses: never to appear in an error."""

    def crm(self) -> Crm:
        """A fresh connector under test."""

    def crm_with_bad_secret(self) -> Crm: ...

    async def close(self) -> None:
        """Close every connector this harness built."""

    # --- a sales rep's work -------------------------------------------------------------------

    def account(
        self,
        name: str,
        currency: str = "EUR",
        *,
        address: Address | None = None,
        erp_customer_number: str | None = None,
    ) -> str:
        """A customer account; ``erp_customer_number`` is the ERP's id the CRM keeps on it."""

    def onboarded_account(self, name: str, hub_id: str, *, tax_id: str | None = None) -> str:
        """An account the hub has onboarded: it shows the hub's global id ``hub_id``."""

    def many_onboarded_accounts(self, count: int) -> list[str]:
        """``count`` onboarded accounts, loaded in bulk."""

    def edit_account(self, account_id: str, *, name: str) -> None:
        """A person edits the account (here its name)."""

    def account_financials(self, account_id: str) -> tuple[str | None, str | None]:
        """The tax registration and legal entity the account shows (read-only to sales)."""

    def product(self, code: str, name: str, prices: dict[str, str]) -> str:
        """An active product with a list price per currency (sales may differ)."""

    def deal(
        self,
        account_id: str,
        currency: str,
        lines: list[Line],
        *,
        name: str = "Deal",
        close_date: date = date(2026, 11, 20),
        won: bool = True,
        contract_number: str | None = None,
    ) -> str:
        """A deal with product lines, won by default (else still open)."""

    def many_won_deals(self, account_id: str, product_id: str, count: int) -> list[str]:
        """``count`` won one-line USD deals of one unit at 10.01, loaded in bulk."""

    def delete_deal(self, deal_id: str) -> None: ...

    def missing_account_id(self) -> str:
        """The id of an account that existed and is gone."""

    def subscription(self, account_id: str, quantity: int, billing_id: str | None = None) -> str:
        """A running subscription contract in the CRM, linked to billing's id if given."""

    def request_seat_change(
        self,
        subscription_id: str,
        product_id: str,
        new_quantity: int,
        effective: date,
        *,
        approved: bool = True,
    ) -> str:
        """A sales rep's request to change the seats of a subscription (approved or draft)."""

    def approve(self, request_id: str) -> None: ...

    # --- duplicates ---------------------------------------------------------------------------

    def merge_accounts(self, master: str, loser: str) -> None:
        """Sales operations merge ``loser`` into ``master`` in the CRM (the loser goes)."""

    def duplicate_flag(self, account_id: str) -> tuple[str | None, str | None]:
        """The account's duplicate marks: (the survivor it duplicates, the merge status as
        ``pending_merge`` ...), (None, None) when unmarked."""

    # --- status write-back ----------------------------------------------------------------------

    def invoice_status(self, number: str, standing: str, amount: str) -> InvoiceState:
        """What the hub publishes for an invoice: where it stands (``open``, ``paid`` ...),
        its amount and open balance."""

    def invoice_status_the_crm_refuses(self, number: str) -> tuple[InvoiceState, str]:
        """A status for invoice ``number`` the CRM refuses, and what its error names."""

    def published_invoices(self, number: str) -> list[PublishedInvoice]:
        """The invoice records of this number in the CRM."""

    # --- faults ---------------------------------------------------------------------------------

    def exhaust_daily_limit(self) -> None:
        """Use up the CRM's daily API allowance."""

    def expire_sessions(self) -> None:
        """End every open session, as an administrator or a timeout would."""


HarnessFactory = Callable[[], CrmHarness]


@contextmanager
def salesforce_world() -> Iterator[HarnessFactory]:
    """Our Salesforce emulator, seeded through the third-party simple-salesforce client."""
    try:
        import simple_salesforce  # noqa: F401
    except ImportError:
        reason = "simple-salesforce (dev extra) not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"required service missing: {reason}")
        pytest.skip(reason)
    from .salesforce_harness import SalesforceHarness, http_session, running_emulator

    with (
        TemporaryDirectory(prefix="q2c-sf-schema-") as folder,
        running_emulator(Path(folder)) as emulator,
    ):
        http = http_session(emulator.ca_path)
        try:
            yield lambda: SalesforceHarness(emulator, http)
        finally:
            http.close()


IMPLEMENTATIONS: dict[str, Callable[[], AbstractContextManager[HarnessFactory]]] = {
    "salesforce": salesforce_world,
}
"""Every CRM implementation the contract runs against: name -> how to stand one up."""
