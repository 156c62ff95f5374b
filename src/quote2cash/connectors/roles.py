"""The business operations the process layer asks of each system, in canonical types only.

Flows depend on these protocols, never on a concrete connector. Every create-like operation
takes the step's ``idempotency_key`` and must be safe to call again with it: the same key gives
the same object, never a second one. Errors leave a connector only as the engine's
``TransientError`` / ``PermanentError`` (see ``quote2cash.engine.errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from quote2cash.canonical import (
    Amendment,
    CreditMemo,
    Customer,
    Invoice,
    InvoiceStatus,
    Money,
    Order,
    Payment,
    PricePlan,
    Product,
    Subscription,
    SubscriptionStatus,
    TaxIdValue,
    UsageRecord,
)
from quote2cash.engine.errors import IntegrationError

T = TypeVar("T")


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a listing that cannot be mapped: which one and why (naming the field and what
    was expected), with its raw form, so intake puts it before a person instead of failing the
    whole page."""

    system: str
    record: str
    reason: str
    category: str = "data"
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next (None: no more).
    ``rejected`` are the page's records that could not be mapped (the others still are)."""

    items: list[T]
    next_cursor: str | None = None
    rejected: list[RejectedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class SystemCheck:
    """What ``q2c systems check`` reports per system; ``detail`` never holds a secret."""

    system: str
    reachable: bool
    authenticated: bool
    detail: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True)
class PostedInvoice:
    """The ERP's receipt for a posted customer invoice."""

    erp_id: str
    number: str
    total: Money
    status: InvoiceStatus


@dataclass(frozen=True)
class InvoicePosting:
    """One invoice of a batch for ``Erp.post_invoices``: what ``post_invoice`` takes."""

    invoice: Invoice
    legal_entity: str
    idempotency_key: str


@dataclass(frozen=True)
class InvoicePostingResult:
    """One batch item's outcome: its receipt, or the error ``post_invoice`` would have raised."""

    posted: PostedInvoice | None = None
    error: IntegrationError | None = None


@dataclass(frozen=True)
class InvoiceStatusReport:
    status: InvoiceStatus
    total: Money
    amount_paid: Money
    amount_due: Money
    due_date: Any = None


@dataclass(frozen=True)
class BillingEvent:
    """A billing platform event, as the hub logs it (source ``billing``).

    ``data`` holds, in every billing connector's words: ``object_type`` (``invoice``,
    ``subscription``, ``payment`` ...), ``object_id`` (billing's id of it: what the flows read
    again through the role), ``customer`` (billing's customer id) and ``contract_number`` (the
    hub's contract the object belongs to, None if none). Anything else is the connector's own
    record of the event, for the hub's read model and people, never read by a flow."""

    id: str
    type: str
    created: datetime
    subject: str
    data: dict[str, Any] = field(default_factory=dict)


class InvoiceStanding(StrEnum):
    """Where an invoice stands for the sales team: billing's status with the hub's reading of
    overdue and refunded (billing's own word for both is still ``open`` / ``paid``)."""

    OPEN = "open"
    PAID = "paid"
    OVERDUE = "overdue"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


@dataclass(frozen=True)
class CustomerLinks:
    """A CRM account's ids in the hub, the ERP and billing, and the legal entity serving it."""

    account_id: str
    global_id: str
    erp_customer_id: str
    billing_customer_id: str
    legal_entity: str


@dataclass(frozen=True)
class AccountFinancials:
    """The ERP-owned values a CRM account shows read-only: its tax registrations, the legal
    entities serving it and its credit limit (``None``: leave as shown; ``()`` / ``""``: clear
    the CRM's main tax registration / legal entity)."""

    account_id: str
    tax_ids: tuple[TaxIdValue, ...] | None = None
    legal_entity: str | None = None
    credit_limit: Money | None = None


@dataclass(frozen=True)
class ChangedAccount:
    """A CRM account the hub onboarded that changed at ``changed_at`` (the CRM's stamp)."""

    account_id: str
    changed_at: datetime


@dataclass(frozen=True)
class DuplicateAccount:
    """A CRM account that is a duplicate of ``survivor_account_id`` (the account holding the
    customer's ids): marked for sales operations to merge; it gets none of the unique ids."""

    account_id: str
    survivor_account_id: str
    global_id: str


@dataclass(frozen=True)
class AccountMerge:
    """The CRM merged ``merged_account_id`` into ``survivor_account_id`` (the loser is deleted)."""

    merged_account_id: str
    survivor_account_id: str
    merged_at: datetime


@dataclass(frozen=True)
class DealSubscribed:
    """A won deal has its billing subscription; ``correlation_id`` traces the deal in the hub."""

    opportunity_id: str
    subscription_id: str
    status: SubscriptionStatus
    correlation_id: str


@dataclass(frozen=True)
class DealActivated:
    """A won deal's subscription is active, billing from ``billing_start`` (None: not known)."""

    opportunity_id: str
    subscription_id: str
    billing_start: date | None


@dataclass(frozen=True)
class DealCanceled:
    """A won deal's subscription has ended."""

    opportunity_id: str


@dataclass(frozen=True)
class DealInvoiceStanding:
    """Where the latest invoice of a won deal's contract stands."""

    opportunity_id: str
    standing: InvoiceStanding


@dataclass(frozen=True)
class InvoiceState:
    """An invoice as the sales team sees it, keyed by billing's invoice ``number`` (written once
    per number however often it is published)."""

    number: str
    account_id: str
    total: Money
    balance: Money
    standing: InvoiceStanding
    due_date: date | None


@dataclass(frozen=True)
class ContractState:
    """A subscription contract as billing has it now, keyed by billing's ``subscription_id``
    (one CRM record per subscription however often it is published)."""

    subscription_id: str
    account_id: str
    opportunity_id: str
    status: SubscriptionStatus
    seats: int
    starts: date
    ends: date


@dataclass(frozen=True)
class AmendmentOutcome:
    """What became of a CRM amendment request: applied (from ``previous_seats`` when a quantity
    changed) or failed (the reason is in the hub's exception queue)."""

    request_id: str
    applied: bool
    previous_seats: int | None = None


CrmStatus = (
    CustomerLinks
    | AccountFinancials
    | DealSubscribed
    | DealActivated
    | DealCanceled
    | DealInvoiceStanding
    | InvoiceState
    | ContractState
    | AmendmentOutcome
)
"""What the hub tells the CRM, in business terms; each CRM connector maps it to its records."""


@dataclass(frozen=True)
class StatusResult:
    """The CRM's answer to one published status: the record's key (``external_id``: an invoice
    number, a subscription id, an opportunity id), the CRM's id of the record it wrote, whether
    it created it, or why it refused it."""

    external_id: str
    crm_id: str | None
    created: bool
    error: str | None = None


@dataclass(frozen=True)
class UsagePosting:
    """Usage to add to billing's count of one subscription's meter: ``quantity`` more (a delta),
    counted at ``at`` (inside the billing period it belongs to). ``identifier`` is billing's
    key for it: the same identifier is counted once however often it is posted."""

    subscription: str
    """Billing's subscription id."""
    meter: str
    """The meter as the catalog names it (billing's meter event name, or its id)."""
    quantity: Decimal
    at: datetime
    identifier: str


@dataclass(frozen=True)
class PostedUsage:
    """Billing's receipt for one posting; ``duplicate``: billing already had the identifier and
    counted it once (success, nothing added)."""

    identifier: str
    subscription: str
    meter: str
    meter_id: str
    customer: str
    quantity: Decimal
    at: datetime
    duplicate: bool = False


@dataclass(frozen=True)
class UsageLine:
    """A metered invoice line: a subscription meter's usage billed for ``[period_start,
    period_end)``; ``position`` is its 1-based place among the invoice's lines."""

    invoice_id: str
    invoice_number: str | None
    invoice_status: str
    line_id: str
    position: int
    subscription: str
    meter: str
    meter_id: str
    period_start: datetime
    period_end: datetime
    quantity: Decimal
    unit_amount: Decimal
    """Price per unit in currency units (may have more decimals than the currency)."""
    amount: Money


@runtime_checkable
class Crm(Protocol):
    """The CRM owns opportunities, pipeline and quotes; the hub writes back status fields only."""

    system: str

    async def closed_won_deals(
        self, since: datetime | None = None, cursor: str | None = None, limit: int = 200
    ) -> Page[Order]: ...

    async def get_deal(self, deal_id: str) -> Order: ...

    async def get_account(self, account_id: str) -> Customer: ...

    async def changed_accounts(
        self, since: datetime | None = None, cursor: str | None = None, limit: int = 200
    ) -> Page[ChangedAccount]:
        """Accounts the hub onboarded (they carry its global id) changed at or after ``since``,
        oldest change first; a change in the ``since`` instant may come again, never be lost."""
        ...

    async def amendment_requests(
        self, since: datetime | None = None, cursor: str | None = None
    ) -> Page[Amendment]: ...

    async def list_products(self) -> list[Product]: ...

    async def flag_duplicate_account(
        self, flag: DuplicateAccount, *, idempotency_key: str
    ) -> StatusResult:
        """Mark ``flag.account_id`` as a duplicate of its survivor for sales operations to merge;
        flagging again converges on the same record. A refusal is ``error``, not raised."""
        ...

    async def account_merges(
        self, since: datetime | None = None, cursor: str | None = None
    ) -> Page[AccountMerge]:
        """Accounts the CRM merged into another at or after ``since``, oldest first."""
        ...

    async def publish_status(
        self, updates: Sequence[CrmStatus], *, idempotency_key: str
    ) -> list[StatusResult]:
        """Write each status to the CRM, results in input order; publishing again converges on
        the same records (upsert by their business key). A record the CRM refuses gets
        ``error``; auth and transient failures are raised."""
        ...

    async def check(self) -> SystemCheck: ...


@runtime_checkable
class Erp(Protocol):
    """The ERP owns the customer financial master, items, ledger and receivables."""

    system: str

    async def upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str: ...

    async def get_customer(self, erp_customer_id: str) -> Customer: ...

    async def list_items(self) -> list[Product]: ...

    async def book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str: ...

    async def post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice: ...

    async def post_invoices(self, postings: Sequence[InvoicePosting]) -> list[InvoicePostingResult]:
        """Post several invoices in as few ERP calls as the ERP allows; results in input order.

        Each item behaves as ``post_invoice`` would alone: its reference is looked up before
        anything is created (never posted twice), and one item's failure is that item's
        ``error``, never the others'. Only a failure of the whole connection is raised."""
        ...

    async def apply_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str: ...

    async def reverse_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        """Reverse what billing refunded of a payment applied to ``erp_invoice_id``.

        ``payment.external_ids['billing']`` names the billing payment and
        ``payment.amount_refunded`` is its cumulative refunded amount: the ERP's total reversed
        for that payment is brought up to it (cash out, receivable back), so the invoice owes
        that much again. A call with the same or a smaller cumulative amount changes nothing,
        whatever its key. Reversing more than the ERP has received on the invoice is a
        ``TransientError`` (the payment sync may not have applied the payment yet). Returns the
        id of the ERP document that holds the newest reversal."""
        ...

    async def issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str: ...

    async def post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """Post ``memo`` (its ``invoice`` None) as a credit note of ``memo.customer`` that pays
        no invoice: the customer's open credit, as billing holds a negative invoice in the
        customer balance. Its total is ``-memo.total``; the same number or key posts it once."""
        ...

    async def apply_customer_credit(
        self, erp_invoice_id: str, amount: Money, *, idempotency_key: str
    ) -> str:
        """Pay ``amount`` of an open invoice from the customer's open credit, oldest first, as
        billing applied the balance when it finalized the invoice; no cash moves and the
        customer's receivable is unchanged. The same key applies it once. Less open credit than
        ``amount`` is a ``TransientError`` (the credit may not be posted yet); more than the
        invoice owes is a ``ConflictError``. Returns the id of the ERP document that holds it."""
        ...

    async def invoice_status(self, erp_invoice_id: str) -> InvoiceStatusReport: ...

    async def check(self) -> SystemCheck: ...


@runtime_checkable
class Billing(Protocol):
    """The billing platform owns the subscription lifecycle; its events are the truth."""

    system: str

    async def upsert_customer(self, customer: Customer, *, idempotency_key: str) -> str: ...

    async def create_subscription(
        self, subscription: Subscription, *, idempotency_key: str
    ) -> Subscription: ...

    async def get_subscription(self, subscription_id: str) -> Subscription: ...

    async def change_quantity(
        self, amendment: Amendment, *, idempotency_key: str
    ) -> Subscription: ...

    async def renew(self, subscription_id: str, *, idempotency_key: str) -> Subscription: ...

    async def cancel(
        self, subscription_id: str, *, at_period_end: bool, idempotency_key: str
    ) -> Subscription: ...

    async def list_prices(self) -> list[PricePlan]: ...

    async def report_usage(self, record: UsageRecord) -> None: ...

    async def post_usage(
        self, postings: Sequence[UsagePosting], *, idempotency_key: str
    ) -> list[PostedUsage]:
        """Add each posting to its subscription meter's count, receipts in input order.

        Idempotent by ``UsagePosting.identifier`` (billing deduplicates it, on Stripe within
        24 hours; the hub's postings record covers all history). A meter not on the
        subscription's items is a ``DataError`` naming both."""
        ...

    async def usage_counted(
        self, subscription: str, meter: str, start: datetime, end: datetime
    ) -> Decimal:
        """What billing counted on the subscription's meter for ``[start, end)``."""
        ...

    async def usage_lines(
        self, *, subscription: str | None = None, invoice: str | None = None
    ) -> list[UsageLine]:
        """The metered lines of a subscription's invoices (or of one invoice), oldest first."""
        ...

    async def get_invoice(self, invoice_id: str) -> Invoice: ...

    async def get_payment(self, payment_id: str) -> Payment:
        """A payment as billing holds it now: the invoice it paid, its amount and, once money
        went back, status ``refunded`` with the cumulative ``amount_refunded``."""
        ...

    async def list_events(
        self, cursor: str | None = None, limit: int = 100
    ) -> Page[BillingEvent]: ...

    async def check(self) -> SystemCheck: ...


class LedgerKind(StrEnum):
    """What three-way reconciliation reads from each system."""

    CUSTOMER = "customer"
    CONTRACT = "contract"
    INVOICE = "invoice"
    PAYMENT = "payment"


@dataclass(frozen=True)
class LedgerEntry:
    """One object as a system shows it now, read for reconciliation (never from the hub's store).

    ``number`` is the business key the systems share (invoice number, contract number, e-mail);
    ``links`` the ids of the same object in other systems as this system holds them.
    ``status`` is normalised: invoices ``open``/``paid``, contracts ``active``/``canceled``/
    ``pending``/``past_due``. ``balance`` is what the customer still owes on it (an invoice:
    total - paid, refunds are read as payments; a customer: its credit balance, negative).
    A payment's ``total`` is what was collected, ``refunded`` what went back, and
    ``links['invoice']`` the invoice it paid (known at least for payments with a refund).
    """

    kind: LedgerKind
    system: str
    id: str
    number: str | None = None
    customer: str | None = None
    contract: str | None = None
    currency: str | None = None
    total: Money | None = None
    tax: Money | None = None
    balance: Money | None = None
    status: str = ""
    entity: str | None = None
    quantity: int | None = None
    links: dict[str, str] = field(default_factory=dict)
    refunded: Money | None = None
    state: str = ""
    """The system's own status word (Stripe's ``paid``, Tryton's ``posted``), for people."""


@runtime_checkable
class Ledger(Protocol):
    """Paged reads of what a system holds, for reconciliation; ``since`` filters by creation."""

    system: str

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[LedgerEntry]: ...
