"""The legacy ERP's books: customer and item master, sales orders, receivables, in one SQLite file.

Every change runs in one transaction under one process-wide lock (SOAP threads and the batch
share it), and every document the hub asks for is keyed by the hub's reference: a reference seen
before answers with the same document, never a second one. Money is Decimal text, never float.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Final

from quote2cash.private_files import ensure_private

CENT: Final = Decimal("0.01")


@dataclass(frozen=True)
class Entity:
    """A legal entity of the group as the legacy ERP books it."""

    code: str
    name: str
    country: str
    currency: str
    tax_rate: Decimal
    credit_limit: Decimal
    """The credit limit a new customer of this entity gets until finance sets another."""


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    unit: str


ENTITIES: Final = {
    "US": Entity("US", "Q2C Inc.", "US", "USD", Decimal("0"), Decimal("100000.00")),
    "DE": Entity("DE", "Q2C GmbH", "DE", "EUR", Decimal("0.19"), Decimal("100000.00")),
}
ITEMS: Final = (
    Item("PLAT-SEAT", "Platform seat (monthly)", "seat"),
    Item("SUPPORT-PREM", "Premium support (monthly)", "month"),
    Item("API-CALLS", "API calls (per 1,000)", "1000 calls"),
    Item("ONBOARD", "Onboarding (one-time)", "each"),
)
_EU: Final = "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK"
EU_COUNTRIES: Final = frozenset(_EU.split(" "))
_OTHERS: Final = "US CA MX BR AR GB CH NO IS LI JP CN KR IN SG HK AU NZ ZA AE IL TR"
COUNTRIES: Final = EU_COUNTRIES | frozenset(_OTHERS.split(" "))
"""The ERP's country table: the countries the group trades with."""
_VAT_FORMAT: Final = {
    "DE": r"DE\d{9}",
    "AT": r"ATU\d{8}",
    "FR": r"FR[0-9A-Z]{2}\d{9}",
    "NL": r"NL\d{9}B\d{2}",
    "BE": r"BE[01]\d{9}",
    "IT": r"IT\d{11}",
    "ES": r"ES[0-9A-Z]\d{7}[0-9A-Z]",
}
_VAT_GENERIC: Final = r"[A-Z]{2}[0-9A-Z]{8,12}"
_TAX_ID_FORMAT: Final = {"us_ein": r"[0-9]{2}-?[0-9]{7}"}
"""Registrations other than VAT, by the hub's tax id type (the customer's ``vat_type``)."""
_TAX_ID_GENERIC: Final = r"[0-9A-Z][0-9A-Z./-]{2,30}"


class Refusal(Exception):
    """The ERP refuses a request: a fault code (``Client.Validation``) and a message naming the
    record and the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS customer (
    number TEXT PRIMARY KEY, entity TEXT NOT NULL, reference TEXT NOT NULL UNIQUE,
    global_id TEXT, name TEXT NOT NULL, email TEXT, phone TEXT, line1 TEXT, line2 TEXT,
    city TEXT, postal_code TEXT, state TEXT, country TEXT, vat TEXT, vat_type TEXT,
    credit_limit TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS item (code TEXT PRIMARY KEY, name TEXT NOT NULL, unit TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sales_order (
    number TEXT PRIMARY KEY, entity TEXT NOT NULL, reference TEXT NOT NULL,
    customer TEXT NOT NULL, currency TEXT NOT NULL, total TEXT NOT NULL, quantity INTEGER,
    start_date TEXT, end_date TEXT, created_at TEXT NOT NULL, UNIQUE (entity, reference));
CREATE TABLE IF NOT EXISTS order_line (
    order_number TEXT NOT NULL, line INTEGER NOT NULL, item TEXT NOT NULL,
    quantity TEXT NOT NULL, unit_price TEXT NOT NULL, amount TEXT NOT NULL,
    PRIMARY KEY (order_number, line));
CREATE TABLE IF NOT EXISTS document (
    number TEXT PRIMARY KEY, kind TEXT NOT NULL, entity TEXT NOT NULL, customer TEXT NOT NULL,
    currency TEXT NOT NULL, total TEXT NOT NULL, tax TEXT NOT NULL, invoice TEXT,
    payment_ref TEXT, reference TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS document_invoice ON document (invoice);
CREATE TABLE IF NOT EXISTS allocation (
    id INTEGER PRIMARY KEY, document TEXT NOT NULL, credit TEXT NOT NULL, invoice TEXT NOT NULL,
    amount TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hub_reference (
    kind TEXT NOT NULL, reference TEXT NOT NULL, number TEXT NOT NULL,
    PRIMARY KEY (kind, reference));
"""

INVOICE, CREDIT_NOTE, CUSTOMER_CREDIT = "invoice", "credit_note", "customer_credit"
PAYMENT, REVERSAL, APPLICATION = "payment", "reversal", "credit_application"
CREDITS: Final = (CREDIT_NOTE, CUSTOMER_CREDIT)
RECORD_KINDS: Final = (INVOICE, PAYMENT, REVERSAL, CREDIT_NOTE, CUSTOMER_CREDIT, APPLICATION)
"""The documents the hub creates through the file interface, each keyed by its reference."""
_PREFIX: Final = {
    "customer": "C",
    "order": "SO",
    INVOICE: "INV",
    CREDIT_NOTE: "CN",
    CUSTOMER_CREDIT: "CR",
    PAYMENT: "PAY",
    REVERSAL: "REV",
    APPLICATION: "APL",
}


@dataclass(frozen=True)
class CustomerData:
    reference: str
    entity: str
    name: str
    global_id: str | None = None
    email: str | None = None
    phone: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None
    vat_type: str | None = None
    vat: str | None = None


@dataclass(frozen=True)
class Line:
    item: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    tax: Decimal | None = None
    description: str = ""


@dataclass(frozen=True)
class Balance:
    """What a receivable document stands at now."""

    number: str
    kind: str
    entity: str
    customer: str
    currency: str
    total: Decimal
    tax: Decimal
    paid: Decimal
    due: Decimal
    reference: str
    created_at: str
    refunded: Decimal = Decimal(0)
    invoice: str | None = None
    payment_ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "paid" if self.due == 0 and self.total != 0 else "open"


class Books:
    """The ERP's state; thread-safe, durable across restarts (``books.sqlite``, 0600)."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "books.sqlite"
        ensure_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            for item in ITEMS:
                db.execute(
                    "INSERT OR IGNORE INTO item VALUES (?, ?, ?)", (item.code, item.name, item.unit)
                )
        for suffix in ("-wal", "-shm"):
            extra = Path(f"{self.path}{suffix}")
            if extra.exists():
                os.chmod(extra, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _next(self, db: sqlite3.Connection, kind: str, entity: str) -> str:
        name = f"{kind}:{entity}"
        db.execute("INSERT OR IGNORE INTO counter VALUES (?, 0)", (name,))
        db.execute("UPDATE counter SET value = value + 1 WHERE name = ?", (name,))
        (value,) = db.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()
        return f"{_PREFIX[kind]}-{entity}-{value:06d}"

    @staticmethod
    def _entity(code: str, what: str) -> Entity:
        entity = ENTITIES.get(code)
        if entity is None:
            raise Refusal(
                "Client.UnknownEntity",
                f"{what}: entity {code!r} is not a legal entity of this ERP "
                f"(known: {', '.join(sorted(ENTITIES))})",
            )
        return entity

    @staticmethod
    def _seen(db: sqlite3.Connection, kind: str, reference: str) -> str | None:
        row = db.execute(
            "SELECT number FROM hub_reference WHERE kind = ? AND reference = ?", (kind, reference)
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _remember(db: sqlite3.Connection, kind: str, reference: str, number: str) -> None:
        db.execute("INSERT INTO hub_reference VALUES (?, ?, ?)", (kind, reference, number))

    def find(self, kind: str, reference: str) -> str | None:
        """The document the hub's ``reference`` created (``kind`` as in the file interface)."""
        with self._lock:
            return self._seen(self._db, kind, reference)

    # --- customer and item master ---------------------------------------------------------

    def upsert_customer(self, data: CustomerData) -> str:
        """The customer of ``data.reference``: created with the ERP's number, else updated."""
        what = f"customer {data.reference}"
        entity = self._entity(data.entity, what)
        _check_customer(data, entity, what)
        with self.transaction() as db:
            row = db.execute(
                "SELECT number FROM customer WHERE reference = ?", (data.reference,)
            ).fetchone()
            values = (
                data.global_id, data.name, data.email, data.phone, data.line1, data.line2,
                data.city, data.postal_code, data.state, data.country, data.vat, data.vat_type,
            )  # fmt: skip
            if row is not None:
                db.execute(
                    "UPDATE customer SET global_id=?, name=?, email=?, phone=?, line1=?, line2=?,"
                    " city=?, postal_code=?, state=?, country=?, vat=?, vat_type=?, updated_at=?"
                    " WHERE number = ?",
                    (*values, _now(), row[0]),
                )
                return str(row[0])
            number = self._next(db, "customer", entity.code)
            db.execute(
                "INSERT INTO customer (number, entity, reference, global_id, name, email, phone,"
                " line1, line2, city, postal_code, state, country, vat, vat_type, credit_limit,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    number,
                    entity.code,
                    data.reference,
                    *values,
                    str(entity.credit_limit),
                    _now(),
                    _now(),
                ),
            )
            return number

    def customer(self, number: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT * FROM customer WHERE number = ?", (number,)).fetchone()
        if row is None:
            raise Refusal("Client.UnknownCustomer", f"customer {number!r} does not exist")
        return dict(row)

    def set_credit_limit(self, number: str, limit: Decimal) -> None:
        """Finance's decision (the ERP owns credit): the most this customer may owe."""
        if limit < 0:
            raise Refusal("Client.Validation", f"customer {number}: credit_limit must be >= 0")
        self.customer(number)
        with self.transaction() as db:
            db.execute(
                "UPDATE customer SET credit_limit = ? WHERE number = ?", (str(cents(limit)), number)
            )

    def items(self, offset: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM item ORDER BY code LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [dict(r) for r in rows]

    # --- sales orders ---------------------------------------------------------------------

    def create_order(
        self,
        reference: str,
        entity_code: str,
        customer: str,
        currency: str,
        lines: Sequence[Line],
        start_date: str | None = None,
        end_date: str | None = None,
    ) -> str:
        """A sales order; refused over the customer's credit limit (open receivables + order)."""
        what = f"sales order {reference}"
        entity = self._entity(entity_code, what)
        with self.transaction() as db:
            seen = db.execute(
                "SELECT number FROM sales_order WHERE entity = ? AND reference = ?",
                (entity.code, reference),
            ).fetchone()
            if seen is not None:
                return str(seen[0])
            party = self._customer_of(db, customer, entity, what)
            _same_currency(currency, entity.currency, what)
            if not lines:
                raise Refusal("Client.Validation", f"{what}: lines: at least one line is needed")
            for index, line in enumerate(lines, 1):
                self._item(db, line.item, f"{what} line {index}")
                if line.quantity <= 0:
                    raise Refusal(
                        "Client.Validation", f"{what} line {index}: quantity must be positive"
                    )
                if line.amount != cents(line.amount):
                    raise Refusal(
                        "Client.Validation",
                        f"{what} line {index}: amount {line.amount} has more than 2 decimals",
                    )
            total = cents(sum((line.amount for line in lines), Decimal(0)))
            exposure = self._exposure(db, customer) + total
            limit = Decimal(party["credit_limit"])
            if exposure > limit:
                raise Refusal(
                    "Client.CreditLimitExceeded",
                    f"{what}: customer {customer} would owe {exposure} {currency}, over its "
                    f"credit limit {limit} {currency}",
                )
            number = self._next(db, "order", entity.code)
            quantity = int(sum((line.quantity for line in lines), Decimal(0)))
            db.execute(
                "INSERT INTO sales_order VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    number,
                    entity.code,
                    reference,
                    customer,
                    currency,
                    str(total),
                    quantity,
                    start_date,
                    end_date,
                    _now(),
                ),
            )
            for index, line in enumerate(lines, 1):
                db.execute(
                    "INSERT INTO order_line VALUES (?,?,?,?,?,?)",
                    (
                        number,
                        index,
                        line.item,
                        str(line.quantity),
                        str(line.unit_price),
                        str(line.amount),
                    ),
                )
            return number

    def order_lines(self, number: str) -> list[dict[str, Any]]:
        """The lines of sales order ``number`` in order: item, quantity, unit price, amount."""
        with self._lock:
            rows = self._db.execute(
                "SELECT item, quantity, unit_price, amount FROM order_line"
                " WHERE order_number = ? ORDER BY line",
                (number,),
            ).fetchall()
        return [
            {
                "item": r["item"],
                "quantity": Decimal(r["quantity"]),
                "unit_price": Decimal(r["unit_price"]),
                "amount": Decimal(r["amount"]),
            }
            for r in rows
        ]

    def _customer_of(
        self, db: sqlite3.Connection, number: str, entity: Entity, what: str
    ) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM customer WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            raise Refusal("Client.UnknownCustomer", f"{what}: customer {number!r} does not exist")
        if row["entity"] != entity.code:
            raise Refusal(
                "Client.Validation",
                f"{what}: customer {number} belongs to entity {row['entity']}, not {entity.code}",
            )
        return row

    @staticmethod
    def _item(db: sqlite3.Connection, code: str, what: str) -> None:
        if db.execute("SELECT 1 FROM item WHERE code = ?", (code,)).fetchone() is None:
            raise Refusal(
                "Client.UnknownItem", f"{what}: item {code!r} is not in the ERP's item master"
            )

    def _exposure(self, db: sqlite3.Connection, customer: str) -> Decimal:
        rows = db.execute(
            "SELECT number FROM document WHERE customer = ? AND kind = ?", (customer, INVOICE)
        ).fetchall()
        return sum((max(self._balance(db, r[0]).due, Decimal(0)) for r in rows), Decimal(0))

    # --- receivables (the batch file interface posts these) -------------------------------

    def post_invoice(
        self,
        reference: str,
        entity_code: str,
        customer: str,
        currency: str,
        lines: Sequence[Line],
        *,
        taxed: bool,
        total: Decimal,
    ) -> str:
        """A customer invoice; its total must be the ERP's computation to the cent: line taxes
        at the entity's rate (half up per line), billing's line tax accepted within a cent."""
        what = f"invoice {reference}"
        entity = self._entity(entity_code, what)
        with self.transaction() as db:
            seen = self._seen(db, INVOICE, reference)
            if seen is not None:
                return seen
            self._customer_of(db, customer, entity, what)
            _same_currency(currency, entity.currency, what)
            if not lines:
                raise Refusal("Client.Validation", f"{what}: lines: at least one line is needed")
            tax = Decimal(0)
            for index, line in enumerate(lines, 1):
                label = f"{what} line {index}"
                if line.item:
                    self._item(db, line.item, label)
                expected = cents(line.amount * entity.tax_rate) if taxed else Decimal(0)
                if line.tax is not None and abs(line.tax - expected) > CENT:
                    raise Refusal(
                        "Client.TaxMismatch",
                        f"{label}: tax {line.tax} {currency} is not {entity.tax_rate:%} of "
                        f"{line.amount} (the ERP computes {expected})",
                    )
                tax += expected if line.tax is None else line.tax
            computed = cents(sum((line.amount for line in lines), Decimal(0)) + tax)
            if computed != total:
                raise Refusal(
                    "Client.TotalMismatch",
                    f"{what}: total {total} {currency} does not match the ERP's computation "
                    f"{computed} {currency} (tax {tax}); not posted",
                )
            number = self._next(db, INVOICE, entity.code)
            self._document(db, number, INVOICE, entity.code, customer, currency, total, tax)
            db.execute("UPDATE document SET reference = ? WHERE number = ?", (reference, number))
            self._remember(db, INVOICE, reference, number)
            return number

    def apply_payment(
        self, reference: str, invoice: str, currency: str, amount: Decimal, payment_ref: str
    ) -> str:
        """Cash received on an invoice; cash beyond what is due takes back credit applied to it
        (billing collected it in full), never more than the invoice's total."""
        what = f"payment {reference}"
        with self.transaction() as db:
            seen = self._seen(db, PAYMENT, reference)
            if seen is not None:
                return seen
            balance = self._receivable(db, invoice, currency, what)
            _positive(amount, what)
            if balance.due <= 0 and balance.total > 0:
                raise Refusal("Client.AlreadyPaid", f"{what}: invoice {invoice} is already paid")
            cash = balance.extra["cash"]
            if amount > balance.total - cash:
                raise Refusal(
                    "Client.Overpayment",
                    f"{what}: {amount} {currency} is more than invoice {invoice} can take "
                    f"({balance.total - cash} {currency} not yet received in cash)",
                )
            if amount > balance.due:
                self._release(db, invoice, amount - balance.due)
            number = self._next(db, PAYMENT, balance.entity)
            self._document(
                db, number, PAYMENT, balance.entity, balance.customer, currency, amount,
                invoice=invoice, payment_ref=payment_ref, reference=reference,
            )  # fmt: skip
            self._remember(db, PAYMENT, reference, number)
            return number

    def reverse_payment(
        self, reference: str, invoice: str, currency: str, amount: Decimal, payment_ref: str
    ) -> str:
        """Cash paid back (a refund): the invoice owes it again; never more than was received."""
        what = f"payment reversal {reference}"
        with self.transaction() as db:
            seen = self._seen(db, REVERSAL, reference)
            if seen is not None:
                return seen
            balance = self._receivable(db, invoice, currency, what)
            _positive(amount, what)
            cash = balance.extra["cash"]
            if amount > cash:
                raise Refusal(
                    "Client.ReversalExceedsReceived",
                    f"{what}: invoice {invoice} has received {cash} {currency} in cash, less "
                    f"than the {amount} {currency} to reverse",
                )
            number = self._next(db, REVERSAL, balance.entity)
            self._document(
                db, number, REVERSAL, balance.entity, balance.customer, currency, amount,
                invoice=invoice, payment_ref=payment_ref, reference=reference,
            )  # fmt: skip
            self._remember(db, REVERSAL, reference, number)
            return number

    def issue_credit_note(
        self,
        reference: str,
        invoice: str,
        currency: str,
        amount: Decimal,
        tax: Decimal = Decimal(0),
    ) -> str:
        """A credit note against an invoice, applied to it at once; ``tax`` is the part of
        ``amount`` that reverses tax."""
        what = f"credit note {reference}"
        with self.transaction() as db:
            seen = self._seen(db, CREDIT_NOTE, reference)
            if seen is not None:
                return seen
            balance = self._receivable(db, invoice, currency, what)
            _positive(amount, what)
            _tax_within(tax, amount, what)
            if amount > balance.due:
                raise Refusal(
                    "Client.Overcredit",
                    f"{what}: invoice {invoice} owes {balance.due} {currency}; cannot credit "
                    f"{amount} {currency}",
                )
            number = self._next(db, CREDIT_NOTE, balance.entity)
            self._document(
                db, number, CREDIT_NOTE, balance.entity, balance.customer, currency, -amount,
                -tax, invoice=invoice, reference=reference,
            )  # fmt: skip
            db.execute(
                "INSERT INTO allocation (document, credit, invoice, amount) VALUES (?,?,?,?)",
                (number, number, invoice, str(amount)),
            )
            self._remember(db, CREDIT_NOTE, reference, number)
            return number

    def post_customer_credit(
        self,
        reference: str,
        entity_code: str,
        customer: str,
        currency: str,
        amount: Decimal,
        tax: Decimal = Decimal(0),
    ) -> str:
        """The customer's open credit (a credit note paying no invoice); ``tax`` is the part
        of ``amount`` that reverses tax."""
        what = f"customer credit {reference}"
        entity = self._entity(entity_code, what)
        with self.transaction() as db:
            seen = self._seen(db, CUSTOMER_CREDIT, reference)
            if seen is not None:
                return seen
            self._customer_of(db, customer, entity, what)
            _same_currency(currency, entity.currency, what)
            _positive(amount, what)
            _tax_within(tax, amount, what)
            number = self._next(db, CUSTOMER_CREDIT, entity.code)
            self._document(
                db, number, CUSTOMER_CREDIT, entity.code, customer, currency, -amount, -tax,
                reference=reference,
            )  # fmt: skip
            self._remember(db, CUSTOMER_CREDIT, reference, number)
            return number

    def apply_credit(self, reference: str, invoice: str, currency: str, amount: Decimal) -> str:
        """Pay part of an invoice from the customer's open credit, oldest credit first."""
        what = f"credit application {reference}"
        with self.transaction() as db:
            seen = self._seen(db, APPLICATION, reference)
            if seen is not None:
                return seen
            balance = self._receivable(db, invoice, currency, what)
            _positive(amount, what)
            if amount > balance.due:
                raise Refusal(
                    "Client.Overapplication",
                    f"{what}: invoice {invoice} owes {balance.due} {currency}; cannot apply "
                    f"{amount} {currency} of credit",
                )
            credits = [
                self._balance(db, r[0])
                for r in db.execute(
                    "SELECT number FROM document WHERE customer = ? AND currency = ? AND kind IN"
                    " (?, ?) ORDER BY created_at, number",
                    (balance.customer, currency, *CREDITS),
                )
            ]
            open_credit = -sum((c.due for c in credits if c.due < 0), Decimal(0))
            if open_credit < amount:
                raise Refusal(
                    "Client.InsufficientCredit",
                    f"{what}: customer {balance.customer} has open credit {open_credit} "
                    f"{currency}, less than {amount} {currency}",
                )
            number = self._next(db, APPLICATION, balance.entity)
            self._document(
                db, number, APPLICATION, balance.entity, balance.customer, currency, amount,
                invoice=invoice, reference=reference,
            )  # fmt: skip
            left = amount
            for credit in credits:
                take = min(-credit.due, left) if credit.due < 0 else Decimal(0)
                if take > 0:
                    db.execute(
                        "INSERT INTO allocation (document, credit, invoice, amount)"
                        " VALUES (?,?,?,?)",
                        (number, credit.number, invoice, str(take)),
                    )
                    left -= take
            self._remember(db, APPLICATION, reference, number)
            return number

    def _release(self, db: sqlite3.Connection, invoice: str, amount: Decimal) -> None:
        """Give ``amount`` of the credit applied to ``invoice`` back to its credits, newest
        first."""
        rows = db.execute(
            "SELECT id, amount FROM allocation WHERE invoice = ? ORDER BY id DESC", (invoice,)
        ).fetchall()
        left = amount
        for row in rows:
            if left <= 0:
                break
            take = min(Decimal(row["amount"]), left)
            db.execute(
                "UPDATE allocation SET amount = ? WHERE id = ?",
                (str(Decimal(row["amount"]) - take), row["id"]),
            )
            left -= take

    def _document(
        self,
        db: sqlite3.Connection,
        number: str,
        kind: str,
        entity: str,
        customer: str,
        currency: str,
        total: Decimal,
        tax: Decimal = Decimal(0),
        *,
        invoice: str | None = None,
        payment_ref: str | None = None,
        reference: str = "",
    ) -> None:
        db.execute(
            "INSERT INTO document VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                number,
                kind,
                entity,
                customer,
                currency,
                str(total),
                str(tax),
                invoice,
                payment_ref,
                reference,
                _now(),
            ),
        )

    def _receivable(
        self, db: sqlite3.Connection, invoice: str, currency: str, what: str
    ) -> Balance:
        balance = self._balance(db, invoice)
        if balance.kind != INVOICE:
            raise Refusal("Client.UnknownDocument", f"{what}: {invoice!r} is not an invoice")
        if currency != balance.currency:
            raise Refusal(
                "Client.CurrencyMismatch",
                f"{what}: currency {currency} differs from invoice {invoice}'s {balance.currency}",
            )
        return balance

    # --- reads ----------------------------------------------------------------------------

    def balance(self, number: str) -> Balance:
        with self._lock:
            return self._balance(self._db, number)

    def _balance(self, db: sqlite3.Connection, number: str) -> Balance:
        row = db.execute("SELECT * FROM document WHERE number = ?", (number,)).fetchone()
        if row is None or row["kind"] not in (INVOICE, *CREDITS):
            raise Refusal("Client.UnknownDocument", f"invoice {number!r} does not exist")
        total = Decimal(row["total"])

        def summed(sql: str, *args: str) -> Decimal:
            return sum((Decimal(r[0]) for r in db.execute(sql, args)), Decimal(0))

        extra: dict[str, Any] = {}
        refunded = Decimal(0)
        if row["kind"] == INVOICE:
            received = summed(
                "SELECT total FROM document WHERE invoice = ? AND kind = ?", number, PAYMENT
            )
            refunded = summed(
                "SELECT total FROM document WHERE invoice = ? AND kind = ?", number, REVERSAL
            )
            credit = summed("SELECT amount FROM allocation WHERE invoice = ?", number)
            extra["cash"] = received - refunded
            paid = received - refunded + credit
        else:
            paid = -summed("SELECT amount FROM allocation WHERE credit = ?", number)
        return Balance(
            number=number,
            kind=row["kind"],
            entity=row["entity"],
            customer=row["customer"],
            currency=row["currency"],
            total=total,
            tax=Decimal(row["tax"]),
            paid=paid,
            due=total - paid,
            reference=row["reference"],
            created_at=row["created_at"],
            refunded=refunded,
            invoice=row["invoice"],
            extra=extra,
        )

    def reversals(self, invoice: str) -> list[dict[str, Any]]:
        """The invoice's payment reversals, oldest first (for converging on billing's refunds)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT number, payment_ref, total, reference FROM document"
                " WHERE invoice = ? AND kind = ? ORDER BY created_at, number",
                (invoice, REVERSAL),
            ).fetchall()
        return [dict(r) for r in rows]

    def listing(
        self, table: str, offset: int, limit: int, since: str | None
    ) -> list[dict[str, Any]]:
        """One page of customers, orders, invoices (with credits) or payments, oldest first."""
        where = {
            "customer": ("customer", "1=1"),
            "order": ("sales_order", "1=1"),
            "invoice": ("document", f"kind IN ('{INVOICE}', '{CREDIT_NOTE}', '{CUSTOMER_CREDIT}')"),
            "payment": ("document", f"kind = '{PAYMENT}'"),
        }[table]
        sql = f"SELECT * FROM {where[0]} WHERE {where[1]}"
        args: list[Any] = []
        if since:
            sql += " AND created_at >= ?"
            args.append(since)
        sql += " ORDER BY created_at, number LIMIT ? OFFSET ?"
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, (*args, limit, offset))]


def _tax_within(tax: Decimal, amount: Decimal, what: str) -> None:
    if tax < 0 or tax > amount or tax != cents(tax):
        raise Refusal(
            "Client.Validation",
            f"{what}: tax {tax} must be between 0 and the amount {amount}, in cents",
        )


def _check_customer(data: CustomerData, entity: Entity, what: str) -> None:
    if not data.name.strip():
        raise Refusal("Client.Validation", f"{what}: name must not be empty")
    if data.country is not None and data.country not in COUNTRIES:
        raise Refusal(
            "Client.Validation",
            f"{what}: address.country {data.country!r} is not in the ERP's country table",
        )
    if data.vat:
        vat = data.vat.replace(" ", "").upper()
        kind = data.vat_type or "eu_vat"
        if kind.endswith("_vat"):
            pattern, name = _VAT_FORMAT.get(vat[:2], _VAT_GENERIC), "VAT registration number"
        else:
            pattern, name = _TAX_ID_FORMAT.get(kind, _TAX_ID_GENERIC), f"{kind} tax id"
        if not re.fullmatch(pattern, vat):
            raise Refusal("Client.Validation", f"{what}: tax_id {data.vat!r} is not a valid {name}")
    elif entity.code == "DE" and data.country in EU_COUNTRIES and data.country != entity.country:
        raise Refusal(
            "Client.TaxRegistrationRequired",
            f"{what}: tax_id: a customer in {data.country} of entity {entity.code} must have "
            "a VAT registration number (reverse charge)",
        )


def _same_currency(currency: str, expected: str, what: str) -> None:
    if currency != expected:
        raise Refusal(
            "Client.CurrencyMismatch",
            f"{what}: currency {currency} is not the entity's currency {expected}",
        )


def _positive(amount: Decimal, what: str) -> None:
    if amount <= 0:
        raise Refusal("Client.Validation", f"{what}: amount must be positive, got {amount}")
