"""The ERP role on Tryton: customers, item master, bookings, invoices, payments and credit notes.

Guarantees (see ``connectors.roles.Erp``):
- effectively once: every create looks up the step's marker first (party identifiers
  ``q2c-gid:``/``q2c-key:``, the ``reference`` of sales and invoices, the description of payment
  moves), so calling again with the same key (or the same customer global id) never duplicates;
- to the cent: an invoice, credit note or sale is posted/confirmed only when Tryton's computed
  total equals the canonical total; otherwise the draft is deleted and a ``DataError`` gives both;
- taxes: billing's tax is posted as the document's tax lines (manual ``account.invoice.tax``),
  one per rate, on the ERP tax the legal entity maps the rate's code to (``taxes``; a rate-less
  tax goes to its ``sales_tax``), so the ERP's tax and total equal billing's to the cent whatever
  the ERP's own rounding; an untaxed invoice gets no tax lines;
- refunds: ``reverse_payment`` books a billing payment's cumulative refunded amount as reversal
  moves (cash out, receivable back on the invoice), marked ``q2c-refund:<billing payment id>``
  so redelivered or partial refunds converge; ``apply_payment`` refuses a refund (``DataError``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import weakref
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Final

import aiohttp

from quote2cash.canonical import (
    Address,
    CreditMemo,
    Customer,
    Invoice,
    InvoiceStatus,
    Money,
    Order,
    Payment,
    PaymentStatus,
    Product,
    Record,
    Ref,
)
from quote2cash.connectors.roles import (
    InvoiceStatusReport,
    LedgerEntry,
    LedgerKind,
    Page,
    PostedInvoice,
    SystemCheck,
)
from quote2cash.connectors.tryton import credits, mapping
from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
)
from quote2cash.connectors.tryton.config import TrytonConfig, TrytonLegalEntity
from quote2cash.engine.errors import (
    AuthError,
    ConflictError,
    DataError,
    MappingError,
    PermanentError,
    TransientError,
)

__all__ = ["POSTING_WARNINGS", "TrytonErp"]

SYSTEM: Final = "erp"
POSTING_WARNINGS: Final = (
    # the sandbox cannot reach the EU's VIES service to validate VAT numbers
    "account.invoice eu_vat valid",
    # lines posted without the product's default taxes (billing decided the tax)
    "invoice_taxes",
    # billing's due date already passed when the ERP gets the invoice (e.g. after a window)
    "invoice_payment_term",
)
_INVOICE_FIELDS: Final = (
    "state",
    "number",
    "reference",
    "party",
    "company",
    "currency.code",
    "untaxed_amount",
    "tax_amount",
    "total_amount",
    "amount_to_pay",
    "lines_to_pay",
)


_REFUND_FIELDS: Final = ("payment_lines", "account.party_required")


@dataclass(frozen=True)
class _Received:
    """A receivable credit line the invoice counts as paid: a payment, or a reversal's remainder."""

    id: int
    amount: Decimal


@dataclass(frozen=True)
class _Reversal:
    """One reversal move of a billing payment's refunds, as the ERP holds it now.

    Its work, in this order: post it; take the lines it names (``marker.picked``) off the
    invoice's payment lines; reconcile them with its receivable debit; put its receivable credit
    (the remainder, when it took more than it reverses) on the invoice's payment lines.
    """

    id: int
    state: str
    marker: mapping.RefundMarker
    debit_line: int
    debit_reconciled: bool
    remainder_line: int | None
    remainder_reconciled: bool
    cash_out: Decimal
    """What it reversed: its credit on the payment method's account."""

    def unfinished(self, payment_lines: Collection[int], taken: Collection[int]) -> bool:
        """Whether a crash stopped its work after it was posted (``taken``: lines that some
        reversal picked, so a remainder already picked again is not put back)."""
        if any(line in payment_lines for line in self.marker.picked) or not self.debit_reconciled:
            return True
        return self.remainder_due(payment_lines, taken) is not None

    def remainder_due(self, payment_lines: Collection[int], taken: Collection[int]) -> int | None:
        """Its remainder line when that still has to go on the invoice's payment lines."""
        remainder = self.remainder_line
        if (
            remainder is None
            or self.remainder_reconciled
            or remainder in payment_lines
            or remainder in taken
        ):
            return None
        return remainder


@dataclass(frozen=True)
class _Item:
    id: int
    code: str
    unit: int
    service: bool


@contextmanager
def _about(label: str) -> Iterator[None]:
    """Name the record in Tryton's refusals, so a person knows which one to fix."""
    try:
        yield
    except TrytonStateConflict as exc:
        raise ConflictError(f"{label}: {exc.message}", system=SYSTEM) from None
    except TrytonUserError as exc:
        raise DataError(f"{label}: Tryton refused it: {exc.message}", system=SYSTEM) from None
    except TrytonWarning as exc:
        raise DataError(
            f"{label}: Tryton stopped on a warning ({exc.kind}): {exc.tryton_message}",
            system=SYSTEM,
        ) from None


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class TrytonErp:
    """``connectors.roles.Erp`` over Tryton's JSON-RPC; one logged-in session, opened lazily.

    Build it with a ``TrytonConfig`` (the sandbox: ``sandbox.systems.tryton_config``) and use it as
    ``async with``; calls are serialised to ``config.max_concurrency`` (1 on SQLite).
    """

    system = SYSTEM

    def __init__(self, config: TrytonConfig, *, http: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._client = TrytonClient(
            config.base_url,
            config.database,
            config.username,
            config.password.get_secret_value(),
            max_concurrency=config.max_concurrency,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            system=SYSTEM,
            http=http,
        )
        self._ready_lock = asyncio.Lock()
        self._logged_in = False
        self._countries: dict[str, int] = {}
        self._currencies: dict[str, int] = {}
        self._identifier_types: set[str] | None = None
        self._items: dict[str, _Item] = {}
        self._taxes: dict[int, dict[str, Any]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __repr__(self) -> str:
        return f"TrytonErp({self.config.base_url!r}, database={self.config.database!r})"

    async def __aenter__(self) -> TrytonErp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._logged_in = False
        await self._client.close()

    async def _erp(self) -> TrytonClient:
        if not self._logged_in:
            async with self._ready_lock:
                if not self._logged_in:
                    await self._client.login()
                    self._logged_in = True
        return self._client

    def _entity(self, code: str, label: str) -> TrytonLegalEntity:
        entity = self.config.entity(code)
        if entity is None:
            known = ", ".join(sorted(self.config.legal_entities))
            raise MappingError(
                f"{label}: legal entity {code!r} has no Tryton company (configured: {known})",
                system=SYSTEM,
            )
        return entity

    def _entity_of_company(self, company: int, label: str) -> TrytonLegalEntity:
        for entity in self.config.legal_entities.values():
            if entity.company == company:
                return entity
        raise MappingError(
            f"{label}: Tryton company {company} is not a configured legal entity", system=SYSTEM
        )

    async def _context(self, entity: TrytonLegalEntity) -> dict[str, Any]:
        erp = await self._erp()
        return erp.context_for(company=entity.company)

    # --- the role ------------------------------------------------------------------------

    async def upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        """The party id; found by ``external_ids['erp']``, the ``q2c-gid:`` marker, then the
        ``q2c-key:`` marker (in that order) and updated, else created with both markers."""
        identity = (
            mapping.global_id_marker(customer.global_id)
            if customer.global_id
            else mapping.idempotency_marker(idempotency_key)
        )
        async with self._exclusive(f"party:{identity}"):
            return await self._upsert_customer(
                customer, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        """The id of a confirmed ``sale.sale`` invoiced manually; its ``reference`` (the order
        number, else its billing/global id, else the key) is looked up before any create."""
        async with self._exclusive(f"sale:{legal_entity}:{_reference(order, idempotency_key)}"):
            return await self._book_order(
                order, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """A posted customer invoice whose ``reference`` is the billing number (else an id, else
        the key); an invoice already posted with it is returned as is, never posted twice."""
        reference = _reference(invoice, idempotency_key)
        async with self._exclusive(f"invoice:{legal_entity}:{reference}"):
            return await self._post_invoice(
                invoice, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def apply_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        """The id of the payment move (pay wizard, the entity's payment method), whose
        description carries the key; partial payments are fine, overpayments are refused."""
        async with self._exclusive(f"collect:{erp_invoice_id}"):
            return await self._apply_payment(
                payment, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
            )

    async def reverse_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        """The id of the newest reversal move of the billing payment's refunds; one more move (the
        payment method's journal, description ``q2c-refund:<billing payment id> to <cumulative>``)
        only when ``payment.amount_refunded`` exceeds what its moves already reversed."""
        async with self._exclusive(f"collect:{erp_invoice_id}"):
            return await self._reverse_payment(
                payment, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
            )

    async def issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        """The id of a posted credit note (an ``out`` invoice of negative lines, ``reference``
        the memo number) whose receivable line then pays the credited invoice when still open."""
        async with self._exclusive(f"collect:{erp_invoice_id}"):
            return await self._issue_credit_note(
                memo, erp_invoice_id=erp_invoice_id, idempotency_key=idempotency_key
            )

    async def post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        """A posted credit note of ``memo.customer`` that pays no invoice: open credit, used by
        ``apply_customer_credit``; ``reference`` the memo number, never posted twice."""
        reference = _reference(memo, idempotency_key)
        async with self._exclusive(f"invoice:{legal_entity}:{reference}"):
            return await self._post_customer_credit(
                memo, legal_entity=legal_entity, idempotency_key=idempotency_key
            )

    async def apply_customer_credit(
        self, erp_invoice_id: str, amount: Money, *, idempotency_key: str
    ) -> str:
        """The id of the transfer move paying ``amount`` of the invoice from the customer's open
        credit notes, oldest first (see ``credits``); the same key books it once."""
        row = await self._read_invoice(erp_invoice_id)
        label = f"credit applied to ERP invoice {row.get('number') or erp_invoice_id}"
        entity = self._entity_of_company(int(row["company"]), label)
        async with (
            self._exclusive(f"collect:{erp_invoice_id}"),
            self._exclusive(f"credit:{row['party']}"),
        ):
            row = await self._read_invoice(erp_invoice_id)
            ctx = await self._context(entity)
            with _about(label):
                move = await credits.apply_credit(
                    await self._erp(),
                    row,
                    entity,
                    amount,
                    key=idempotency_key,
                    label=label,
                    ctx=ctx,
                    reconcile=lambda ids: self._reconcile(ids, label, ctx),
                    today=_today(),
                )
        return str(move)

    @asynccontextmanager
    async def _exclusive(self, name: str) -> AsyncIterator[None]:
        """One look-up-then-create at a time per business identity in this process."""
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        async with lock:
            yield

    # --- lookups ---------------------------------------------------------------------------

    async def _country(self, code: str, label: str, field: str) -> int:
        if code not in self._countries:
            erp = await self._erp()
            rows = await erp.model("country.country").search_read(
                [("code", "=", code)], ["code"], limit=1
            )
            if not rows:
                raise DataError(
                    f"{label}: {field} {code!r} is not a country known to the ERP "
                    "(expected an ISO 3166-1 alpha-2 code set up in Tryton)",
                    system=SYSTEM,
                )
            self._countries[code] = int(rows[0]["id"])
        return self._countries[code]

    async def _currency(self, code: str, label: str) -> int:
        if code not in self._currencies:
            erp = await self._erp()
            rows = await erp.model("currency.currency").search_read(
                [("code", "=", code)], ["code"], limit=1
            )
            if not rows:
                raise MappingError(
                    f"{label}: currency {code} is not set up in the ERP", system=SYSTEM
                )
            self._currencies[code] = int(rows[0]["id"])
        return self._currencies[code]

    async def _tax_identifier_type(self, kind: str, label: str, index: int) -> str:
        if self._identifier_types is None:
            erp = await self._erp()
            types = await erp.call("model.party.identifier.get_types")
            self._identifier_types = {str(t[0]) for t in types if t and t[0]}
        if kind not in self._identifier_types:
            raise MappingError(
                f"{label}: tax_ids[{index}].type {kind!r} is not a Tryton identifier type "
                "(e.g. 'eu_vat', 'us_ein', 'gb_vat')",
                system=SYSTEM,
            )
        return kind

    async def _resolve_items(self, refs: Sequence[tuple[str, Ref]], label: str) -> list[_Item]:
        """Items for line product refs (by code, else by Tryton id); unknown -> MappingError."""
        wanted = {code for _, ref in refs for code in mapping.item_codes(ref)}
        missing = [c for c in wanted if c not in self._items]
        if missing:
            erp = await self._erp()
            ids = [i for c in missing if (i := mapping.record_id(c)) is not None]
            domain: list[Any] = [("code", "in", missing)]
            if ids:
                domain = ["OR", ("code", "in", missing), ("id", "in", ids)]
            rows = await erp.model("product.product").search_read(
                domain, ["code", "default_uom", "template.type"]
            )
            by_id = {str(r["id"]): r for r in rows}
            by_code = {str(r["code"]): r for r in rows if r.get("code")}
            for code in missing:
                row = by_code.get(code) or by_id.get(code)
                if row is not None:
                    self._items[code] = _Item(
                        id=int(row["id"]),
                        code=str(row.get("code") or code),
                        unit=int(row["default_uom"]),
                        service=(row.get("template.") or {}).get("type") == "service",
                    )
        items: list[_Item] = []
        for where, ref in refs:
            codes = mapping.item_codes(ref)
            found = next((self._items[c] for c in codes if c in self._items), None)
            if found is None:
                raise MappingError(
                    f"{label}: {where} product {' / '.join(codes)!r} is not in the ERP item "
                    "master (no Tryton product with that code)",
                    system=SYSTEM,
                )
            items.append(found)
        return items

    def _party_of(self, customer: Ref, label: str) -> int:
        erp_id = customer.id_in(SYSTEM)
        party = mapping.record_id(erp_id) if erp_id else None
        if party is None:
            raise MappingError(
                f"{label}: customer {customer} has no ERP id (external_ids['erp']); "
                "upsert the customer in the ERP first",
                system=SYSTEM,
            )
        return party

    async def _invoice_address(self, party: int, label: str, ctx: Mapping[str, Any]) -> int:
        erp = await self._erp()
        ids = await erp.model("party.address").search(
            [("party", "=", party)],
            limit=1,
            order=[("sequence", "ASC"), ("id", "ASC")],
            context=ctx,
        )
        if not ids:
            exists = await erp.model("party.party").search([("id", "=", party)], context=ctx)
            if not exists:
                raise DataError(
                    f"{label}: the ERP has no party {party} (customer external_ids['erp'])",
                    system=SYSTEM,
                )
            raise DataError(f"{label}: ERP party {party} has no address to invoice", system=SYSTEM)
        return ids[0]

    # --- customers -------------------------------------------------------------------------

    async def _upsert_customer(
        self, customer: Customer, *, legal_entity: str, idempotency_key: str
    ) -> str:
        named = customer.global_id or customer.external_ids
        label = customer.label if named else f"Customer {customer.name!r}"
        entity = self._entity(legal_entity, label)
        erp = await self._erp()
        ctx = await self._context(entity)
        addresses = await self._address_values(customer, label)
        tax_ids = [
            (await self._tax_identifier_type(t.type, label, i), t.value)
            for i, t in enumerate(customer.tax_ids)
        ]
        party = await self._find_party(customer, idempotency_key, label, ctx)
        with _about(label):
            if party is None:
                markers = [mapping.idempotency_marker(idempotency_key)]
                if customer.global_id:
                    markers.insert(0, mapping.global_id_marker(customer.global_id))
                values: dict[str, Any] = {
                    "name": customer.name,
                    "addresses": [("create", addresses)] if addresses else [],
                    "identifiers": [
                        (
                            "create",
                            [{"type": kind, "code": code} for kind, code in tax_ids]
                            + [{"type": None, "code": m} for m in markers],
                        )
                    ],
                    "contact_mechanisms": [("create", _contacts(customer))],
                }
                party = await erp.model("party.party").create_one(values, context=ctx)
            else:
                await self._update_party(party, customer, addresses, tax_ids, ctx)
        return str(party)

    async def _address_values(self, customer: Customer, label: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        seen: list[Address] = []
        for field, address in (
            ("billing_address", customer.billing_address),
            ("address", customer.address),
        ):
            if address is None or address in seen:
                continue
            seen.append(address)
            country = await self._country(address.country, label, f"{field}.country")
            result.append(mapping.address_values(address, country))
        return result

    async def _find_party(
        self, customer: Customer, key: str, label: str, ctx: Mapping[str, Any]
    ) -> int | None:
        erp = await self._erp()
        known = customer.id_in(SYSTEM)
        if known is not None:
            party = mapping.record_id(known)
            if party is None or not await erp.model("party.party").search(
                [("id", "=", party)], context=ctx
            ):
                raise DataError(
                    f"{label}: external_ids['erp'] {known!r} is not a party in the ERP",
                    system=SYSTEM,
                )
            return party
        markers = [mapping.idempotency_marker(key)]
        if customer.global_id:
            markers.insert(0, mapping.global_id_marker(customer.global_id))
        rows = await erp.model("party.identifier").search_read(
            [("type", "=", None), ("code", "in", markers)], ["code", "party"], context=ctx
        )
        for marker in markers:
            parties = {int(r["party"]) for r in rows if r["code"] == marker}
            if len(parties) > 1:
                raise ConflictError(
                    f"{label}: several ERP parties carry {marker!r}: {sorted(parties)}",
                    system=SYSTEM,
                )
            if parties:
                return parties.pop()
        return None

    async def _update_party(
        self,
        party: int,
        customer: Customer,
        addresses: list[dict[str, Any]],
        tax_ids: list[tuple[str, str]],
        ctx: Mapping[str, Any],
    ) -> None:
        erp = await self._erp()
        values: dict[str, Any] = {"name": customer.name}
        existing_addresses = await erp.model("party.address").search_read(
            [("party", "=", party)],
            ["street_unstructured", "city", "postal_code", "country"],
            order=[("sequence", "ASC"), ("id", "ASC")],
            context=ctx,
        )
        to_create: list[dict[str, Any]] = []
        writes: list[Any] = []
        for index, wanted in enumerate(addresses):
            if index < len(existing_addresses):
                row = existing_addresses[index]
                if any(row.get(k) != v for k, v in wanted.items()):
                    writes += [[row["id"]], wanted]
            else:
                to_create.append(wanted)
        if writes:
            values["addresses"] = [("write", *writes)]
        if to_create:
            values.setdefault("addresses", []).append(("create", to_create))
        identifiers = await erp.model("party.identifier").search_read(
            [("party", "=", party)], ["type", "code", "code_compact"], context=ctx
        )
        have = {(r["type"], r["code"]) for r in identifiers} | {
            (r["type"], r["code_compact"]) for r in identifiers
        }
        new_ids: list[dict[str, str | None]] = [
            {"type": k, "code": c} for k, c in tax_ids if (k, c) not in have
        ]
        if customer.global_id:
            marker = mapping.global_id_marker(customer.global_id)
            if (None, marker) not in have:
                new_ids.append({"type": None, "code": marker})
        if new_ids:
            values["identifiers"] = [("create", new_ids)]
        mechanisms = await erp.model("party.contact_mechanism").search_read(
            [("party", "=", party), ("type", "in", ["email", "phone"])],
            ["type", "value"],
            context=ctx,
        )
        contact_writes: list[Any] = []
        contact_creates: list[dict[str, Any]] = []
        for wanted in _contacts(customer):
            same_type = [m for m in mechanisms if m["type"] == wanted["type"]]
            if not same_type:
                contact_creates.append(wanted)
            elif all(m["value"] != wanted["value"] for m in same_type):
                contact_writes += [[same_type[0]["id"]], {"value": wanted["value"]}]
        contact_ops: list[Any] = []
        if contact_writes:
            contact_ops.append(("write", *contact_writes))
        if contact_creates:
            contact_ops.append(("create", contact_creates))
        if contact_ops:
            values["contact_mechanisms"] = contact_ops
        await erp.model("party.party").write([party], values, context=ctx)

    async def get_customer(self, erp_customer_id: str) -> Customer:
        """The party as a Customer (``erp_number`` = party code); a missing id is a DataError."""
        party = self._known_id(erp_customer_id, "customer")
        erp = await self._erp()
        rows = await erp.model("party.party").search_read(
            [("id", "=", party)],
            ["name", "code"],
            limit=1,
            context=erp.context_for(active_test=False),
        )
        if not rows:
            raise DataError(
                f"the ERP has no customer (party) with id {erp_customer_id!r}", system=SYSTEM
            )
        address_rows = await erp.model("party.address").search_read(
            [("party", "=", party)],
            ["street_unstructured", "city", "postal_code", "country.code"],
            order=[("sequence", "ASC"), ("id", "ASC")],
        )
        addresses = [
            a
            for row in address_rows
            if (a := mapping.address_from_tryton(row, (row.get("country.") or {}).get("code")))
            is not None
        ]
        identifiers = await erp.model("party.identifier").search_read(
            [("party", "=", party)], ["type", "code"], order=[("id", "ASC")]
        )
        emails = await erp.model("party.contact_mechanism").search_read(
            [("party", "=", party), ("type", "=", "email")], ["value"], limit=1
        )
        return mapping.customer_from_party(
            rows[0],
            addresses=addresses,
            identifiers=[(r["type"] or None, str(r["code"])) for r in identifiers],
            email=str(emails[0]["value"]) if emails else None,
        )

    @staticmethod
    def _known_id(value: str, what: str) -> int:
        record = mapping.record_id(value)
        if record is None:
            raise DataError(
                f"{value!r} is not an ERP {what} id (expected a positive integer)", system=SYSTEM
            )
        return record

    # --- items -----------------------------------------------------------------------------

    async def list_items(self) -> list[Product]:
        """Every product of the item master (active ones), fetched page by page."""
        erp = await self._erp()
        products: list[Product] = []
        offset = 0
        while True:
            rows = await erp.model("product.product").search_read(
                [],
                ["code", "template.name", "description", "active", "default_uom.name"],
                offset=offset,
                limit=self.config.page_size,
                order=[("id", "ASC")],
            )
            products.extend(mapping.product_from_tryton(r) for r in rows)
            if len(rows) < self.config.page_size:
                return products
            offset += len(rows)

    # --- bookings --------------------------------------------------------------------------

    async def _book_order(self, order: Order, *, legal_entity: str, idempotency_key: str) -> str:
        label = order.label or "Order"
        entity = self._entity(legal_entity, label)
        erp = await self._erp()
        ctx = await self._context(entity)
        sales = erp.model("sale.sale")
        party = self._party_of(order.customer, label)
        reference = _reference(order, idempotency_key)
        existing = await sales.search_read(
            [("company", "=", entity.company), ("reference", "=", reference)],
            ["state", "party"],
            limit=2,
            context=ctx,
        )
        if len(existing) > 1:
            raise ConflictError(
                f"{label}: several ERP sales have reference {reference!r}", system=SYSTEM
            )
        if existing:
            sale = existing[0]
            if int(sale["party"]) != party:
                raise ConflictError(
                    f"{label}: ERP sale {sale['id']} with reference {reference!r} belongs to "
                    f"party {sale['party']}, not {party}",
                    system=SYSTEM,
                )
            await self._confirm_sale(int(sale["id"]), str(sale["state"]), label, ctx)
            return str(sale["id"])
        items = await self._resolve_items(
            [(f"lines[{i}]", line.product) for i, line in enumerate(order.lines)], label
        )
        address = await self._invoice_address(party, label, ctx)
        lines = []
        for line, item in zip(order.lines, items, strict=True):
            amount = mapping.order_line_amount(line)
            lines.append(
                {
                    "type": "line",
                    "product": item.id,
                    "unit": item.unit,
                    "quantity": amount.quantity,
                    "unit_price": amount.unit_price,
                    "description": line.description or item.code,
                }
            )
        sale_date = order.booked_at.date() if order.booked_at else order.start_date
        with _about(label):
            sale_id = await sales.create_one(
                {
                    "company": entity.company,
                    "party": party,
                    "currency": await self._currency(order.currency, label),
                    "invoice_address": address,
                    "shipment_address": address,
                    "sale_date": sale_date,
                    "invoice_method": "manual",
                    "reference": reference,
                    "description": f"{label} ({mapping.idempotency_marker(idempotency_key)})",
                    "lines": [("create", lines)],
                },
                context=ctx,
            )
            [row] = await sales.read([sale_id], ["total_amount", "state"], context=ctx)
            if Decimal(row["total_amount"]) != order.total.amount:
                await sales.delete([sale_id], context=ctx)
                raise DataError(
                    f"{label}: the ERP computes a total of {row['total_amount']} {order.currency} "
                    f"but the order totals {order.total}; nothing was booked",
                    system=SYSTEM,
                )
        await self._confirm_sale(sale_id, str(row["state"]), label, ctx)
        return str(sale_id)

    async def _confirm_sale(
        self, sale: int, state: str, label: str, ctx: Mapping[str, Any]
    ) -> None:
        erp = await self._erp()
        sales = erp.model("sale.sale")
        with _about(label):
            if state == "draft":
                await sales.execute_button("quote", [sale], context=ctx)
                state = "quotation"
            if state == "quotation":
                await sales.execute_button("confirm", [sale], context=ctx)
            elif state == "cancelled":
                raise ConflictError(f"{label}: ERP sale {sale} is cancelled", system=SYSTEM)

    # --- invoices --------------------------------------------------------------------------

    async def _left_by_earlier_attempt(
        self, entity: TrytonLegalEntity, reference: str, party: int, label: str
    ) -> dict[str, Any] | None:
        """The document an earlier attempt of this step left under ``reference``, to resume; one
        of another party, or cancelled by a person, is a conflict rather than a second copy."""
        existing = await self._find_invoice(entity, reference, label)
        if existing is None:
            return None
        if int(existing["party"]) != party:
            raise ConflictError(
                f"{label}: ERP document {existing['id']} with reference {reference!r} belongs "
                f"to party {existing['party']}, not {party}",
                system=SYSTEM,
            )
        if existing["state"] == "cancelled":
            raise ConflictError(
                f"{label}: ERP document {existing['id']} with reference {reference!r} is cancelled",
                system=SYSTEM,
            )
        return existing

    async def _post_invoice(
        self, invoice: Invoice, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = invoice.label or "Invoice"
        entity = self._entity(legal_entity, label)
        party = self._party_of(invoice.customer, label)
        reference = _reference(invoice, idempotency_key)
        existing = await self._left_by_earlier_attempt(entity, reference, party, label)
        if existing is not None:
            if existing["state"] in ("posted", "paid"):
                return _receipt(existing)
            invoice_id = int(existing["id"])
        else:
            if not invoice.lines:
                raise DataError(
                    f"{label}: an invoice without lines cannot be posted", system=SYSTEM
                )
            invoice_id = await self._create_invoice(
                invoice, entity, party, reference, idempotency_key, label
            )
        return await self._post_checked(
            invoice_id, entity, label, expected_total=invoice.total, expected_tax=invoice.tax
        )

    async def _find_invoice(
        self, entity: TrytonLegalEntity, reference: str, label: str
    ) -> dict[str, Any] | None:
        erp = await self._erp()
        rows = await erp.model("account.invoice").search_read(
            [
                ("company", "=", entity.company),
                ("type", "=", "out"),
                ("reference", "=", reference),
            ],
            list(_INVOICE_FIELDS),
            limit=2,
            context=await self._context(entity),
        )
        if len(rows) > 1:
            raise ConflictError(
                f"{label}: several ERP invoices have reference {reference!r}", system=SYSTEM
            )
        return rows[0] if rows else None

    async def _create_invoice(
        self,
        invoice: Invoice,
        entity: TrytonLegalEntity,
        party: int,
        reference: str,
        key: str,
        label: str,
    ) -> int:
        erp = await self._erp()
        ctx = await self._context(entity)
        postings = mapping.tax_postings(
            [(line.amount, line.tax, line.tax_rate) for line in invoice.lines], invoice.tax
        )
        taxes = await self._tax_lines(
            entity, postings, label, credit=False, total=invoice.total, tax=invoice.tax
        )
        refs = [
            (f"lines[{i}]", line.product)
            for i, line in enumerate(invoice.lines)
            if line.product is not None
        ]
        items = iter(await self._resolve_items(refs, label))
        lines: list[dict[str, Any]] = []
        for line in invoice.lines:
            amount = mapping.invoice_line_amount(line)
            values: dict[str, Any] = {
                "type": "line",
                "quantity": amount.quantity,
                "unit_price": amount.unit_price,
                "account": entity.revenue_account,
                "description": line.description or f"Service {line.service_start}",
            }
            if line.product is not None:
                item = next(items)
                values["product"] = item.id
                values["unit"] = item.unit
                if item.service and line.service_last_day > line.service_start:
                    values["defer_from"] = line.service_start
                    values["defer_to"] = line.service_last_day
            lines.append(values)
        issued = invoice.issued_at.date() if invoice.issued_at else _today()
        with _about(label):
            return await erp.model("account.invoice").create_one(
                {
                    "type": "out",
                    "company": entity.company,
                    "currency": await self._currency(invoice.currency, label),
                    "party": party,
                    "invoice_address": await self._invoice_address(party, label, ctx),
                    "account": entity.receivable_account,
                    "journal": entity.revenue_journal,
                    "invoice_date": min(issued, _today()),
                    "payment_term_date": invoice.due_date,
                    "reference": reference,
                    "description": f"{label} ({mapping.idempotency_marker(key)})"[:250],
                    "lines": [("create", lines)],
                    "taxes": [("create", taxes)] if taxes else [],
                },
                context=ctx,
            )

    async def _tax_lines(
        self,
        entity: TrytonLegalEntity,
        postings: Sequence[mapping.TaxPosting],
        label: str,
        *,
        credit: bool,
        total: Money,
        tax: Money,
    ) -> list[dict[str, Any]]:
        """Manual invoice tax lines carrying billing's amounts (negated on a credit note).

        Billing's tax of each rate must be the ERP tax's rate of its base, to half a cent per line
        (billing's own rounding); anything further off is refused before any draft exists.
        """
        sign = Decimal(-1) if credit else Decimal(1)
        out: list[dict[str, Any]] = []
        records = []
        for posting in postings:
            tax_id = entity.taxes.get(posting.code) if posting.code else entity.sales_tax
            if tax_id is None:
                what = f"tax rate {posting.code!r}" if posting.code else "tax without a rate"
                raise MappingError(
                    f"{label}: {what} ({posting.amount} on {posting.base}) has no ERP tax in "
                    f"company {entity.company}; map the code under the legal entity's taxes",
                    system=SYSTEM,
                )
            records.append((posting, tax_id, await self._tax_record(tax_id, entity, label)))
        if not all(p.plausible(Decimal(r["rate"] or 0)) for p, _, r in records):
            computed = sum(
                (p.per_line(Decimal(r["rate"] or 0), total.currency) for p, _, r in records),
                Decimal(0),
            )
            subtotal = total.amount - tax.amount
            raise DataError(
                f"{label}: the ERP computes total {subtotal + computed} (tax {computed}) "
                f"{total.currency} but billing's total is {total} (tax {tax}); not posted",
                system=SYSTEM,
            )
        for posting, tax_id, record in records:
            out.append(
                {
                    "manual": True,
                    "tax": tax_id,
                    "description": record["description"] or record["name"],
                    "legal_notice": record["legal_notice"],
                    "account": int(record["credit_note_account" if credit else "invoice_account"]),
                    "base": sign * posting.base,
                    "amount": sign * posting.amount,
                }
            )
        return out

    async def _tax_record(
        self, tax_id: int, entity: TrytonLegalEntity, label: str
    ) -> dict[str, Any]:
        if tax_id not in self._taxes:
            erp = await self._erp()
            rows = await erp.model("account.tax").read(
                [tax_id],
                [
                    "name",
                    "description",
                    "legal_notice",
                    "rate",
                    "invoice_account",
                    "credit_note_account",
                ],
                context=await self._context(entity),
            )
            if not rows or not rows[0]["invoice_account"] or not rows[0]["credit_note_account"]:
                raise MappingError(
                    f"{label}: ERP tax {tax_id} does not exist or has no invoice and credit "
                    "note accounts",
                    system=SYSTEM,
                )
            self._taxes[tax_id] = rows[0]
        return self._taxes[tax_id]

    async def _post_checked(
        self,
        invoice_id: int,
        entity: TrytonLegalEntity,
        label: str,
        *,
        expected_total: Money,
        expected_tax: Money,
    ) -> PostedInvoice:
        """Post only if Tryton's total and tax equal the canonical ones; else delete the draft."""
        erp = await self._erp()
        ctx = await self._context(entity)
        invoices = erp.model("account.invoice")
        [row] = await invoices.read([invoice_id], list(_INVOICE_FIELDS), context=ctx)
        total = Decimal(row["total_amount"])
        tax = Decimal(row["tax_amount"])
        if total != expected_total.amount or tax != expected_tax.amount:
            with _about(label):
                await invoices.delete([invoice_id], context=ctx)
            raise DataError(
                f"{label}: the ERP computes total {total} (tax {tax}) "
                f"{expected_total.currency} but billing's total is {expected_total} (tax "
                f"{expected_tax}); not posted, the draft was deleted",
                system=SYSTEM,
            )
        # Tryton deletes a warning's acknowledgement when it is used, so two postings that
        # acknowledge the same warning at once would race: post one at a time per connector.
        async with self._exclusive("post"):
            try:
                with _about(label):
                    await invoices.execute_button(
                        "post", [invoice_id], context=ctx, allow_warnings=POSTING_WARNINGS
                    )
            except ConflictError:
                # An earlier attempt's post, sent before its process was killed, may finish in
                # Tryton while this one runs: the document is then posted, which is the goal.
                [now] = await invoices.read([invoice_id], list(_INVOICE_FIELDS), context=ctx)
                if now["state"] not in ("posted", "paid"):
                    raise
                return _receipt(now)
        [posted] = await invoices.read([invoice_id], list(_INVOICE_FIELDS), context=ctx)
        return _receipt(posted)

    async def invoice_status(self, erp_invoice_id: str) -> InvoiceStatusReport:
        """``amount_paid`` is the total minus what is still owed (payments and applied credits)."""
        row = await self._read_invoice(erp_invoice_id)
        currency = str(row["currency."]["code"])
        total = Money(Decimal(row["total_amount"]), currency)
        status = mapping.invoice_status(str(row["state"]))
        if status is InvoiceStatus.DRAFT:
            due = total
        elif status is InvoiceStatus.VOID:
            due = Money.zero(currency)
        else:
            due = Money(Decimal(row["amount_to_pay"]), currency)
        paid = Money.zero(currency) if status is InvoiceStatus.VOID else total - due
        return InvoiceStatusReport(
            status=status,
            total=total,
            amount_paid=paid,
            amount_due=due,
            due_date=await self._due_date(row) if status is InvoiceStatus.OPEN else None,
        )

    async def _due_date(self, row: Mapping[str, Any]) -> dt.date | None:
        """The earliest maturity among the receivable lines still open."""
        if not row.get("lines_to_pay"):
            return None
        erp = await self._erp()
        lines = await erp.model("account.move.line").read(
            list(row["lines_to_pay"]), ["maturity_date", "reconciliation"]
        )
        dates = [
            line["maturity_date"]
            for line in lines
            if line.get("maturity_date") and not line.get("reconciliation")
        ]
        return min(dates) if dates else None

    async def _read_invoice(self, erp_invoice_id: str, extra: Sequence[str] = ()) -> dict[str, Any]:
        invoice_id = self._known_id(erp_invoice_id, "invoice")
        erp = await self._erp()
        rows = await erp.model("account.invoice").search_read(
            [("id", "=", invoice_id), ("type", "=", "out")],
            [*_INVOICE_FIELDS, "invoice_address", "account", "journal", *extra],
            limit=1,
        )
        if not rows:
            raise DataError(
                f"the ERP has no customer invoice with id {erp_invoice_id!r}", system=SYSTEM
            )
        return rows[0]

    # --- payments --------------------------------------------------------------------------

    async def _apply_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = payment.label or "Payment"
        if payment.status is PaymentStatus.FAILED:
            raise DataError(
                f"{label}: failed ({payment.failure_reason}); nothing to apply in the ERP",
                system=SYSTEM,
            )
        if payment.status is PaymentStatus.REFUNDED:
            raise DataError(
                f"{label}: a refund is not applied as a payment; book it with reverse_payment "
                "(the billing payment's cumulative amount_refunded)",
                system=SYSTEM,
            )
        row = await self._read_invoice(erp_invoice_id)
        entity = self._entity_of_company(int(row["company"]), label)
        erp = await self._erp()
        ctx = await self._context(entity)
        marker = mapping.payment_marker(idempotency_key)
        moves = erp.model("account.move")
        done = await moves.search([("description", "=", marker)], context=ctx)
        if done:
            return str(done[0])
        currency = str(row["currency."]["code"])
        to_pay = Money(Decimal(row["amount_to_pay"]), currency)
        invoice_label = f"ERP invoice {row.get('number') or row['id']}"
        if row["state"] == "paid" or (row["state"] == "posted" and to_pay.is_zero()):
            raise ConflictError(
                f"{label}: {invoice_label} is already paid; a second payment (key "
                f"{idempotency_key!r}) is not applied",
                system=SYSTEM,
            )
        if row["state"] != "posted":
            raise ConflictError(
                f"{label}: {invoice_label} is {row['state']}, only posted invoices can be paid",
                system=SYSTEM,
            )
        if payment.amount.currency != currency:
            raise DataError(
                f"{label}: amount is in {payment.amount.currency} but {invoice_label} is in "
                f"{currency}",
                system=SYSTEM,
            )
        if payment.amount > to_pay and await self._release_credit(
            row, (payment.amount - to_pay).amount, label, ctx
        ):
            row = await self._read_invoice(erp_invoice_id)
            to_pay = Money(Decimal(row["amount_to_pay"]), currency)
        if payment.amount > to_pay:
            raise DataError(
                f"{label}: amount {payment.amount} exceeds what {invoice_label} still owes "
                f"({to_pay}); overpayments are not applied",
                system=SYSTEM,
            )
        when = min(payment.created_at.date(), _today())
        with _about(label):
            async with erp.wizard(
                "account.invoice.pay",
                active_model="account.invoice",
                active_ids=[int(row["id"])],
                context=ctx,
            ) as wizard:
                await wizard.start()
                form = await wizard.press(
                    "choice",
                    {
                        "amount": payment.amount.amount,
                        "payment_method": entity.payment_method,
                        "date": when,
                        "description": marker,
                    },
                )
                if form is not None and form.state == "ask":
                    await wizard.press("pay", {"type": "partial"})
        done = await moves.search([("description", "=", marker)], context=ctx)
        if not done:
            raise TransientError(
                f"{label}: the ERP accepted the payment but its move is not visible yet",
                system=SYSTEM,
            )
        return str(done[0])

    async def _release_credit(
        self, row: Mapping[str, Any], excess: Decimal, label: str, ctx: Mapping[str, Any]
    ) -> bool:
        """Billing collected cash the ERP invoice has no room for because the ERP applied the
        customer's credit to it: that credit goes back to the customer (see ``credits``)."""
        current = await self._read_invoice(str(row["id"]), ("payment_lines",))
        with _about(label):
            return await credits.release_credit(
                await self._erp(),
                current,
                excess,
                ctx,
                lambda ids: self._reconcile(ids, label, ctx),
            )

    # --- refunds ---------------------------------------------------------------------------

    async def _reverse_payment(
        self, payment: Payment, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = payment.label or "Payment"
        refunded = payment.amount_refunded
        billing_id = payment.id_in("billing")
        if payment.status is PaymentStatus.FAILED:
            raise DataError(
                f"{label}: failed ({payment.failure_reason}); nothing was paid, so nothing is "
                "reversed in the ERP",
                system=SYSTEM,
            )
        if refunded is None:
            raise DataError(
                f"{label}: amount_refunded is missing; expected the cumulative amount billing "
                "refunded of this payment",
                system=SYSTEM,
            )
        if not billing_id:
            raise DataError(
                f"{label}: external_ids['billing'] is missing; the ERP counts reversals per "
                "billing payment id",
                system=SYSTEM,
            )
        row = await self._read_invoice(erp_invoice_id, _REFUND_FIELDS)
        entity = self._entity_of_company(int(row["company"]), label)
        currency = str(row["currency."]["code"])
        invoice_label = f"ERP invoice {row.get('number') or row['id']}"
        if refunded.currency != currency:
            raise DataError(
                f"{label}: amount_refunded is in {refunded.currency} but {invoice_label} is in "
                f"{currency}",
                system=SYSTEM,
            )
        if currency != entity.currency:
            raise DataError(
                f"{label}: {invoice_label} is in {currency}, not in its company's currency "
                f"{entity.currency}; only refunds in the company currency are reversed",
                system=SYSTEM,
            )
        ctx = await self._context(entity)
        reversals = await self._reversals(billing_id, row, label, ctx)
        drafts = [r for r in reversals if r.state != "posted"]
        booked = [r for r in reversals if r.state == "posted"]
        done = Money.sum((Money(r.cash_out, currency) for r in booked), currency)
        delta = refunded - done
        taken = {line for r in booked for line in r.marker.picked}
        payment_lines = {int(i) for i in row["payment_lines"]}
        unfinished = [r for r in booked if r.unfinished(payment_lines, taken)]
        if booked and not drafts and not unfinished and not delta.is_positive():
            return str(booked[-1].id)
        if row["state"] not in ("posted", "paid"):
            raise ConflictError(
                f"{label}: {invoice_label} is {row['state']}; only a posted or paid invoice has "
                "payments to reverse",
                system=SYSTEM,
            )
        party = int(row["party"]) if (row.get("account.") or {}).get("party_required") else None

        async def received_enough(invoice: Mapping[str, Any]) -> list[_Received]:
            receipts = await self._receipts(invoice, party, taken, ctx)
            received = Money.sum((Money(r.amount, currency) for r in receipts), currency)
            if received < delta:
                raise TransientError(
                    f"{label}: {invoice_label} has received {received} that can be reversed, "
                    f"but billing payment {billing_id!r} has {refunded} refunded, {done} of it "
                    f"reversed already, so {delta} would be reversed; the payment may not be "
                    "applied to the invoice yet",
                    system=SYSTEM,
                )
            return receipts

        if delta.is_positive():
            await received_enough(row)  # before anything changes in the ERP
        if drafts:
            # a draft is all a crash before its posting left behind: book afresh instead
            with _about(label):
                await (
                    (await self._erp())
                    .model("account.move")
                    .delete([r.id for r in drafts], context=ctx)
                )
        if not unfinished and not delta.is_positive():
            return str(booked[-1].id)
        row = await self._reopen(row, label, invoice_label, ctx)
        for reversal in unfinished:
            await self._finish_reversal(reversal, row, taken, label, ctx)
            row = await self._read_invoice(erp_invoice_id, _REFUND_FIELDS)
        if not delta.is_positive():
            return str(booked[-1].id)
        before = Money(Decimal(row["amount_to_pay"]), currency)
        picked = _pick(
            await received_enough(row),
            delta.amount,
            preferred={r.remainder_line for r in booked if r.remainder_line is not None},
        )
        marker = mapping.refund_marker(billing_id, refunded, [p.id for p in picked])
        move_id = await self._book_reversal(
            row, entity, marker, picked, delta, party, label, idempotency_key, ctx
        )
        [reversal] = [
            r for r in await self._reversals(billing_id, row, label, ctx) if r.id == move_id
        ]
        await self._finish_reversal(reversal, row, taken, label, ctx)
        after_row = await self._read_invoice(erp_invoice_id)
        after = Money(Decimal(after_row["amount_to_pay"]), currency)
        if after_row["state"] != "posted" or after != before + delta:
            raise DataError(
                f"{label}: after ERP move {move_id} reversed {delta}, {invoice_label} is "
                f"{after_row['state']} and owes {after}, but it owed {before} before; expected "
                f"it to owe {before + delta}",
                system=SYSTEM,
            )
        return str(move_id)

    async def _reversals(
        self, billing_id: str, row: Mapping[str, Any], label: str, ctx: Mapping[str, Any]
    ) -> list[_Reversal]:
        """The reversal moves of ``billing_id`` (drafts too), oldest first."""
        erp = await self._erp()
        origin = f"account.invoice,{row['id']}"
        moves = await erp.model("account.move").search_read(
            [
                ("company", "=", int(row["company"])),
                ("description", "like", f"{mapping.refund_marker_prefix(billing_id)}%"),
            ],
            ["state", "description", "origin"],
            order=[("id", "ASC")],
            context=ctx,
        )
        markers: dict[int, tuple[str, mapping.RefundMarker]] = {}
        for move in moves:
            marker = mapping.refund_marker_read(str(move.get("description") or ""), billing_id)
            if marker is None:
                continue
            if move.get("origin") != origin:
                raise ConflictError(
                    f"{label}: ERP move {move['id']} already reverses billing payment "
                    f"{billing_id!r} on {move.get('origin') or 'no document'}, not on invoice "
                    f"{row['id']}; a billing payment pays one invoice",
                    system=SYSTEM,
                )
            markers[int(move["id"])] = (str(move["state"]), marker)
        if not markers:
            return []
        lines = await erp.model("account.move.line").search_read(
            [("move", "in", list(markers))],
            ["move", "account", "debit", "credit", "reconciliation"],
            context=ctx,
        )
        receivable = int(row["account"])
        reversals: list[_Reversal] = []
        for move_id, (state, marker) in markers.items():
            own = [line for line in lines if int(line["move"]) == move_id]
            ours = [line for line in own if int(line["account"]) == receivable]
            debits = [line for line in ours if Decimal(line["debit"]) > 0]
            credits = [line for line in ours if Decimal(line["credit"]) > 0]
            cash_out = sum(
                (
                    Decimal(line["credit"]) - Decimal(line["debit"])
                    for line in own
                    if int(line["account"]) != receivable
                ),
                Decimal(0),
            )
            if len(debits) != 1 or len(credits) > 1 or cash_out <= 0:
                raise ConflictError(
                    f"{label}: ERP move {move_id} is marked as a reversal of billing payment "
                    f"{billing_id!r} but lacks its lines (one receivable debit, at most one "
                    "receivable credit, cash credited); correct or delete it in Tryton",
                    system=SYSTEM,
                )
            remainder = credits[0] if credits else None
            reversals.append(
                _Reversal(
                    id=move_id,
                    state=state,
                    marker=marker,
                    debit_line=int(debits[0]["id"]),
                    debit_reconciled=bool(debits[0].get("reconciliation")),
                    remainder_line=int(remainder["id"]) if remainder else None,
                    remainder_reconciled=bool(remainder and remainder.get("reconciliation")),
                    cash_out=cash_out,
                )
            )
        return reversals

    async def _receipts(
        self,
        row: Mapping[str, Any],
        party: int | None,
        taken: Collection[int],
        ctx: Mapping[str, Any],
    ) -> list[_Received]:
        """The invoice's payment lines a reversal may take back: receivable credits of ``party``
        that are open, or settled only with the invoice (reopening it frees them); never a
        credit note's line, nor one a reversal already took."""
        ids = [int(i) for i in row["payment_lines"] if int(i) not in taken]
        if not ids:
            return []
        erp = await self._erp()
        move_lines = erp.model("account.move.line")
        settled = await move_lines.read(list(row["lines_to_pay"]), ["reconciliation"], context=ctx)
        freed = {line["reconciliation"] for line in settled if line.get("reconciliation")}
        lines = await move_lines.read(
            ids, ["move", "debit", "credit", "party", "reconciliation"], context=ctx
        )
        invoice_moves = {
            int(r["move"])
            for r in await erp.model("account.invoice").search_read(
                [("move", "in", sorted({int(line["move"]) for line in lines}))],
                ["move"],
                context=ctx,
            )
        }
        return [
            _Received(int(line["id"]), Decimal(line["credit"]))
            for line in lines
            if Decimal(line["debit"]) == 0
            and Decimal(line["credit"]) > 0
            and (line.get("party") or None) == party
            and (not line.get("reconciliation") or line["reconciliation"] in freed)
            and int(line["move"]) not in invoice_moves
        ]

    async def _reopen(
        self, row: Mapping[str, Any], label: str, invoice_label: str, ctx: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Undo the reconciliations that settle the invoice so it is posted (open) again."""
        erp = await self._erp()
        settled = await erp.model("account.move.line").read(
            list(row["lines_to_pay"]), ["reconciliation"], context=ctx
        )
        reconciled = [int(line["id"]) for line in settled if line.get("reconciliation")]
        if reconciled:
            with _about(label):
                async with erp.wizard(
                    "account.move.unreconcile_lines",
                    active_model="account.move.line",
                    active_ids=reconciled,
                    context=ctx,
                ) as wizard:
                    await wizard.start()
        current = await self._read_invoice(str(row["id"]), _REFUND_FIELDS)
        if current["state"] == "paid":
            # Tryton re-processes the invoice when its reconciliation goes, in its queue; a
            # queue worker may not have run yet: process it now
            with _about(label):
                await erp.model("account.invoice").execute_button(
                    "process", [int(row["id"])], context=ctx
                )
            current = await self._read_invoice(str(row["id"]), _REFUND_FIELDS)
        if current["state"] != "posted":
            raise TransientError(
                f"{label}: {invoice_label} is still {current['state']} after its payments were "
                "unreconciled; expected it to be posted again",
                system=SYSTEM,
            )
        return current

    async def _book_reversal(
        self,
        row: Mapping[str, Any],
        entity: TrytonLegalEntity,
        marker: str,
        picked: Sequence[_Received],
        delta: Money,
        party: int | None,
        label: str,
        key: str,
        ctx: Mapping[str, Any],
    ) -> int:
        """Create and post the move: receivable debit of what it takes back, receivable credit
        of the rest, the payment method's account credited with ``delta``."""
        erp = await self._erp()
        methods = await erp.model("account.invoice.payment.method").read(
            [entity.payment_method],
            ["journal", "debit_account", "debit_account.party_required"],
            context=ctx,
        )
        if not methods:
            raise MappingError(
                f"{label}: payment method {entity.payment_method} of Tryton company "
                f"{entity.company} does not exist",
                system=SYSTEM,
            )
        [method] = methods
        today = _today()
        period = await credits.open_period(erp, entity, today, label, ctx)
        taken = sum((p.amount for p in picked), Decimal(0))
        remainder = taken - delta.amount
        receivable = int(row["account"])
        what = f"Refund: {marker} ({mapping.idempotency_marker(key)})"
        lines: list[dict[str, Any]] = [
            {
                "account": receivable,
                "party": party,
                "debit": taken,
                "credit": Decimal(0),
                "description": what[:250],
            },
            {
                "account": int(method["debit_account"]),
                "debit": Decimal(0),
                "credit": delta.amount,
                "description": what[:250],
            },
        ]
        if (method.get("debit_account.") or {}).get("party_required"):
            lines[1]["party"] = int(row["party"])
        if remainder:
            lines.append(
                {
                    "account": receivable,
                    "party": party,
                    "debit": Decimal(0),
                    "credit": remainder,
                    "description": "Remainder of the payment lines taken back",
                }
            )
        moves = erp.model("account.move")
        with _about(label):
            move_id = await moves.create_one(
                {
                    "company": entity.company,
                    "journal": int(method["journal"]),
                    "period": period,
                    "date": today,
                    "origin": f"account.invoice,{row['id']}",
                    "description": marker,
                    "lines": [("create", lines)],
                },
                context=ctx,
            )
            await moves.execute_button("post", [move_id], context=ctx)
        return move_id

    async def _finish_reversal(
        self,
        reversal: _Reversal,
        row: Mapping[str, Any],
        taken: Collection[int],
        label: str,
        ctx: Mapping[str, Any],
    ) -> None:
        """Do what is left of a posted reversal's work (all of it for a new one)."""
        erp = await self._erp()
        invoices = erp.model("account.invoice")
        invoice_id = int(row["id"])
        payment_lines = {int(i) for i in row["payment_lines"]}
        picked = list(reversal.marker.picked)
        still_paying = [line for line in picked if line in payment_lines]
        if still_paying:
            with _about(label):
                await invoices.write(
                    [invoice_id], {"payment_lines": [("remove", still_paying)]}, context=ctx
                )
        if not reversal.debit_reconciled:
            lines = await erp.model("account.move.line").read(
                picked, ["reconciliation"], context=ctx
            )
            if len(lines) != len(picked) or any(line.get("reconciliation") for line in lines):
                raise ConflictError(
                    f"{label}: ERP move {reversal.id} takes back lines {picked}, which are "
                    f"missing or reconciled elsewhere; reconcile its line {reversal.debit_line} "
                    "by hand in Tryton",
                    system=SYSTEM,
                )
            await self._reconcile([*picked, reversal.debit_line], label, ctx)
        remainder = reversal.remainder_due(payment_lines, taken)
        if remainder is not None:
            with _about(label):
                await invoices.write(
                    [invoice_id], {"payment_lines": [("add", [remainder])]}, context=ctx
                )

    async def _reconcile(self, line_ids: Sequence[int], label: str, ctx: Mapping[str, Any]) -> None:
        """Reconcile balanced lines (the wizard stops on a write-off form when they do not)."""
        erp = await self._erp()
        with _about(label):
            async with erp.wizard(
                "account.move.reconcile_lines",
                active_model="account.move.line",
                active_ids=list(line_ids),
                context=ctx,
            ) as wizard:
                form = await wizard.start()
        if form is not None:
            raise DataError(
                f"{label}: ERP move lines {list(line_ids)} do not balance (Tryton asks for a "
                "write-off); not reconciled",
                system=SYSTEM,
            )

    # --- credit notes ----------------------------------------------------------------------

    async def _issue_credit_note(
        self, memo: CreditMemo, *, erp_invoice_id: str, idempotency_key: str
    ) -> str:
        label = memo.label or "CreditMemo"
        original = await self._read_invoice(erp_invoice_id)
        entity = self._entity_of_company(int(original["company"]), label)
        currency = str(original["currency."]["code"])
        if memo.currency != currency:
            raise DataError(
                f"{label}: currency {memo.currency} differs from ERP invoice "
                f"{original.get('number') or original['id']} in {currency}",
                system=SYSTEM,
            )
        if original["state"] not in ("posted", "paid"):
            raise ConflictError(
                f"{label}: ERP invoice {original['id']} is {original['state']}; only posted "
                "invoices can be credited",
                system=SYSTEM,
            )
        reference = _reference(memo, idempotency_key)
        existing = await self._left_by_earlier_attempt(
            entity, reference, int(original["party"]), label
        )
        if existing is not None and existing["state"] in ("posted", "paid"):
            return str(existing["id"])
        ctx = await self._context(entity)
        if existing is not None:
            credit_id = int(existing["id"])
        else:
            credit_id = await self._draft_credit_note(
                memo,
                entity,
                {
                    "party": int(original["party"]),
                    "invoice_address": int(original["invoice_address"]),
                    "account": int(original["account"]),
                    "journal": original["journal"] or entity.revenue_journal,
                    "reference": reference,
                    "description": (
                        f"{label} on {original.get('number')} "
                        f"({mapping.idempotency_marker(idempotency_key)})"
                    )[:250],
                },
                f"Credit on {original.get('number')}",
                label,
            )
        await self._post_checked(
            credit_id, entity, label, expected_total=-memo.total, expected_tax=-memo.tax
        )
        await self._apply_credit(credit_id, original, memo.total, label, ctx)
        return str(credit_id)

    async def _draft_credit_note(
        self,
        memo: CreditMemo,
        entity: TrytonLegalEntity,
        header: Mapping[str, Any],
        default_description: str,
        label: str,
    ) -> int:
        """A draft ``out`` invoice of the memo's lines negated (``header``: party, address,
        account, journal, reference, description)."""
        erp = await self._erp()
        ctx = await self._context(entity)
        postings = mapping.tax_postings(
            [(line.amount, line.tax, line.tax_rate) for line in memo.lines],
            memo.tax,
            pieces=[line.billed_lines for line in memo.lines],
        )
        taxes = await self._tax_lines(
            entity, postings, label, credit=True, total=memo.total, tax=memo.tax
        )
        lines = [
            {
                "type": "line",
                "quantity": -1.0,
                "unit_price": line.amount.amount,
                "account": entity.revenue_account,
                "description": line.description or default_description,
            }
            for line in memo.lines
        ]
        with _about(label):
            return await erp.model("account.invoice").create_one(
                {
                    "type": "out",
                    "company": entity.company,
                    "currency": await self._currency(memo.currency, label),
                    "invoice_date": min(memo.issued_at.date(), _today()),
                    **header,
                    "lines": [("create", lines)],
                    "taxes": [("create", taxes)] if taxes else [],
                },
                context=ctx,
            )

    async def _post_customer_credit(
        self, memo: CreditMemo, *, legal_entity: str, idempotency_key: str
    ) -> PostedInvoice:
        label = memo.label or "CreditMemo"
        entity = self._entity(legal_entity, label)
        party = self._party_of(memo.customer, label)
        reference = _reference(memo, idempotency_key)
        existing = await self._left_by_earlier_attempt(entity, reference, party, label)
        if existing is not None:
            if existing["state"] in ("posted", "paid"):
                return _receipt(existing)
            credit_id = int(existing["id"])
        else:
            ctx = await self._context(entity)
            credit_id = await self._draft_credit_note(
                memo,
                entity,
                {
                    "party": party,
                    "invoice_address": await self._invoice_address(party, label, ctx),
                    "account": entity.receivable_account,
                    "journal": entity.revenue_journal,
                    "reference": reference,
                    "description": (
                        f"{label}: customer credit ({mapping.idempotency_marker(idempotency_key)})"
                    )[:250],
                },
                f"Credit {memo.number or reference}",
                label,
            )
        return await self._post_checked(
            credit_id, entity, label, expected_total=-memo.total, expected_tax=-memo.tax
        )

    async def _apply_credit(
        self,
        credit_id: int,
        original: Mapping[str, Any],
        total: Money,
        label: str,
        ctx: Mapping[str, Any],
    ) -> None:
        """Lower what the original invoice still owes: the credit's receivable line pays it."""
        erp = await self._erp()
        invoices = erp.model("account.invoice")
        [current] = await invoices.read(
            [int(original["id"])], ["state", "amount_to_pay"], context=ctx
        )
        if current["state"] != "posted" or Decimal(current["amount_to_pay"]) < total.amount:
            return
        [credit] = await invoices.read([credit_id], ["lines_to_pay"], context=ctx)
        if not credit["lines_to_pay"]:
            return
        with _about(label):
            await invoices.write(
                [int(original["id"])],
                {"payment_lines": [("add", list(credit["lines_to_pay"]))]},
                context=ctx,
            )

    # --- reconciliation ------------------------------------------------------------------

    async def ledger(
        self,
        kind: LedgerKind,
        *,
        since: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[LedgerEntry]:
        """Hub-onboarded parties, booked sales or posted customer invoices, ``limit`` at a time
        (``cursor``: the offset); ``since`` keeps those created at or after it."""
        if kind is LedgerKind.PAYMENT:
            return Page([])  # applied to their invoices: read there, as what is still owed
        erp = await self._erp()
        offset = int(cursor) if cursor and cursor.isdigit() else 0
        created = [("create_date", ">=", since)] if since else []
        order = [("id", "ASC")]
        if kind is LedgerKind.CUSTOMER:
            rows = await erp.model("party.identifier").search_read(
                [("code", "like", f"{mapping.GLOBAL_ID_MARK}%"), *created],
                ["party", "code"],
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_party(r) for r in rows]
        elif kind is LedgerKind.CONTRACT:
            rows = await erp.model("sale.sale").search_read(
                [("state", "in", ["confirmed", "processing", "done"]), *created],
                list(mapping.LEDGER_SALE_FIELDS),
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_sale(r, self._entity_code(r["company"])) for r in rows]
        else:
            rows = await erp.model("account.invoice").search_read(
                [("type", "=", "out"), ("state", "in", ["posted", "paid"]), *created],
                list(mapping.LEDGER_INVOICE_FIELDS),
                offset=offset,
                limit=limit,
                order=order,
            )
            entries = [mapping.ledger_invoice(r, self._entity_code(r["company"])) for r in rows]
        return Page(entries, str(offset + len(rows)) if len(rows) == limit else None)

    def _entity_code(self, company: Any) -> str | None:
        found = (
            code
            for code, entity in self.config.legal_entities.items()
            if entity.company == int(company)
        )
        return next(found, None)

    # --- health ----------------------------------------------------------------------------

    async def check(self) -> SystemCheck:
        """Log in and count companies; reports failures instead of raising them."""
        started = time.monotonic()
        try:
            erp = await self._erp()
            await erp.model("company.company").search_count([])
        except AuthError as exc:
            return SystemCheck(SYSTEM, reachable=True, authenticated=False, detail=exc.message)
        except TransientError as exc:
            return SystemCheck(SYSTEM, reachable=False, authenticated=False, detail=exc.message)
        except PermanentError as exc:
            # The server answered but refused the work (e.g. no such database): not usable.
            return SystemCheck(SYSTEM, reachable=True, authenticated=False, detail=exc.message)
        latency = (time.monotonic() - started) * 1000
        return SystemCheck(
            SYSTEM,
            reachable=True,
            authenticated=True,
            detail=f"Tryton database {self.config.database!r} as {self.config.username!r}",
            latency_ms=round(latency, 1),
        )


def _pick(
    receipts: Sequence[_Received], amount: Decimal, preferred: Collection[int]
) -> list[_Received]:
    """Lines adding up to at least ``amount``: one of exactly that amount if any, else the
    billing payment's own remainders first, then the largest."""
    ranked = sorted(receipts, key=lambda r: (r.id not in preferred, -r.amount, -r.id))
    exact = next((r for r in ranked if r.amount == amount), None)
    if exact is not None:
        return [exact]
    picked: list[_Received] = []
    total = Decimal(0)
    for receipt in ranked:
        picked.append(receipt)
        total += receipt.amount
        if total >= amount:
            break
    return picked


def _reference(record: Record, key: str) -> str:
    """What the ERP record's ``reference`` holds: the business number, else an id, else the key."""
    number = getattr(record, "number", None)
    return str(number or record.id_in("billing") or record.global_id or key)


def _contacts(customer: Customer) -> list[dict[str, Any]]:
    contacts = []
    if customer.email:
        contacts.append({"type": "email", "value": customer.email})
    if customer.phone:
        contacts.append({"type": "phone", "value": customer.phone})
    return contacts


def _receipt(row: Mapping[str, Any]) -> PostedInvoice:
    currency = str(row["currency."]["code"])
    return PostedInvoice(
        erp_id=str(row["id"]),
        number=str(row.get("number") or ""),
        total=Money(Decimal(row["total_amount"]), currency),
        status=mapping.invoice_status(str(row["state"])),
    )
