"""The matching and comparison core, without I/O: what each system holds (a ``Snapshot``) and
the cross-references in, drifts out. Each check is a small function so new fields (tax per line,
credit balances) are one more check, not a rewrite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from quote2cash.canonical import Money
from quote2cash.connectors.roles import LedgerEntry, LedgerKind
from quote2cash.reconcile.model import Drift, DriftKind, Repair

BILLING, ERP, CRM = "billing", "erp", "crm"
FINALIZED = "billing.invoice.finalized"
PAID = "billing.payment.succeeded"
ACTIVATED = "billing.subscription.activated"
CLOSED_WON = "crm.opportunity.closed_won"
_CONTRACT_EVENTS = {
    "active": ACTIVATED,
    "canceled": "billing.subscription.canceled",
    "past_due": "billing.subscription.past_due",
}


class CrossRefs(Protocol):
    """The hub's cross-references: the id in ``other`` of what ``system`` knows as ``local_id``."""

    def counterpart(self, kind: str, system: str, local_id: str, other: str) -> str | None: ...


@dataclass
class Snapshot:
    """What each system holds now: system -> kind -> entries; ``complete`` is False for a run
    with a cut-off, where objects older than it are not read (so absence proves nothing)."""

    entries: dict[str, dict[LedgerKind, list[LedgerEntry]]] = field(default_factory=dict)
    complete: bool = True

    def of(self, system: str, kind: LedgerKind) -> list[LedgerEntry]:
        return self.entries.get(system, {}).get(kind, [])

    def add(self, system: str, kind: LedgerKind, items: Iterable[LedgerEntry]) -> None:
        self.entries.setdefault(system, {}).setdefault(kind, []).extend(items)

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {k.value: len(v) for k, v in kinds.items()} for s, kinds in self.entries.items()}


def compare(snapshot: Snapshot, xref: CrossRefs) -> list[Drift]:
    """Every drift between the three systems, customers then contracts then invoices."""
    snapshot = with_refunds(snapshot)
    invoices = _invoices(snapshot, xref)
    drifts = [
        *_customers(snapshot, xref),
        *_contracts(snapshot, xref),
        *invoices,
        *_balances(snapshot, xref, invoices),
    ]
    return sorted(drifts, key=lambda d: (d.object, d.key, d.kind.value, d.id))


def with_refunds(snapshot: Snapshot) -> Snapshot:
    """Billing's invoices owing again what was refunded of the payments that paid them."""
    refunded: dict[str, Money] = {}
    for payment in snapshot.of(BILLING, LedgerKind.PAYMENT):
        paid = payment.links.get("invoice")
        if paid and payment.refunded is not None and not payment.refunded.is_zero():
            before = refunded.get(paid)
            refunded[paid] = payment.refunded if before is None else before + payment.refunded
    if not refunded:
        return snapshot
    adjusted = Snapshot(
        {s: {k: list(v) for k, v in kinds.items()} for s, kinds in snapshot.entries.items()},
        snapshot.complete,
    )
    invoices = adjusted.entries.get(BILLING, {}).get(LedgerKind.INVOICE, [])
    for index, invoice in enumerate(invoices):
        back = refunded.get(invoice.id)
        if back is None or invoice.balance is None:
            continue
        owed = invoice.balance + back
        status = "paid" if owed.is_zero() else "open"
        invoices[index] = replace(invoice, balance=owed, status=status)
    return adjusted


def _by_number(entries: Iterable[LedgerEntry]) -> dict[str, list[LedgerEntry]]:
    out: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        if entry.number:
            out[entry.number].append(entry)
    return out


def _ids(**systems: Sequence[LedgerEntry] | LedgerEntry | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for system, found in systems.items():
        if found is None:
            continue
        entries = [found] if isinstance(found, LedgerEntry) else list(found)
        if entries:
            out[system] = tuple(e.id for e in entries)
    return out


# --- customers -------------------------------------------------------------------------------


def _customers(snapshot: Snapshot, xref: CrossRefs) -> list[Drift]:
    drifts: list[Drift] = []
    billing = snapshot.of(BILLING, LedgerKind.CUSTOMER)
    for key, group in [
        *((f"e-mail {k}", g) for k, g in _by_number(billing).items() if not _per_currency(g)),
        *((f"global id {k}", g) for k, g in _group(billing, lambda e: e.links.get("hub")).items()),
    ]:
        if len(group) > 1:
            linked = [e.id for e in group if _linked(xref, "customer", e, CRM)]
            keep = linked[0] if linked else group[0].id
            drifts.append(
                Drift(
                    DriftKind.DUPLICATE,
                    "customer",
                    key,
                    _ids(billing=group),
                    f"{len(group)} billing customers share {key}",
                    Repair(
                        f"merge the billing customers into {keep} (the one the hub links) and "
                        "delete the others"
                    ),
                )
            )
    if not snapshot.complete:
        return drifts
    present = {s: {e.id for e in snapshot.of(s, LedgerKind.CUSTOMER)} for s in (BILLING, ERP)}
    deals = _group(snapshot.of(CRM, LedgerKind.CONTRACT), lambda e: e.customer)
    for account in snapshot.of(CRM, LedgerKind.CUSTOMER):
        for system in (BILLING, ERP):
            found = xref.counterpart("customer", CRM, account.id, system)
            found = found or account.links.get(system)
            if found is not None and found in present[system]:
                continue
            deal = next(iter(deals.get(account.id, [])), None)
            drifts.append(
                Drift(
                    DriftKind.MISSING,
                    "customer",
                    account.number or account.id,
                    _ids(crm=account),
                    f"CRM account {account.id} has no {system} customer"
                    + (f" (the hub links {found})" if found else ""),
                    Repair(
                        f"re-run onboarding for account {account.id}",
                        CLOSED_WON if deal else None,
                        about=deal.id if deal else None,
                    ),
                )
            )
    return drifts


def _per_currency(group: Sequence[LedgerEntry]) -> bool:
    """Billing customers of one e-mail, one per currency: a customer served by several legal
    entities (billing holds one currency per customer), not a duplicate."""
    currencies = [e.currency for e in group]
    return None not in currencies and len(set(currencies)) == len(currencies)


def _group(
    entries: Iterable[LedgerEntry], key: Callable[[LedgerEntry], str | None]
) -> dict[str, list[LedgerEntry]]:
    out: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        value = key(entry)
        if value:
            out[value].append(entry)
    return out


def _linked(xref: CrossRefs, kind: str, entry: LedgerEntry, other: str) -> bool:
    return xref.counterpart(kind, entry.system, entry.id, other) is not None


# --- contracts -------------------------------------------------------------------------------


def _contracts(snapshot: Snapshot, xref: CrossRefs) -> list[Drift]:
    drifts: list[Drift] = []
    billing = snapshot.of(BILLING, LedgerKind.CONTRACT)
    live = _by_number(e for e in billing if e.status != "canceled")
    for number, group in live.items():
        if len(group) > 1:
            drifts.append(
                Drift(
                    DriftKind.DUPLICATE,
                    "contract",
                    number,
                    _ids(billing=group),
                    f"{len(group)} live billing subscriptions carry contract {number}",
                    Repair(f"cancel all but one billing subscription of contract {number}"),
                )
            )
    crm = {e.id: e for e in snapshot.of(CRM, LedgerKind.CONTRACT)}
    crm_by_number = _by_number(crm.values())
    erp_by_number = _by_number(snapshot.of(ERP, LedgerKind.CONTRACT))
    for sub in billing:
        if not sub.contract or sub.status == "pending":
            continue
        opp_id = xref.counterpart("subscription", BILLING, sub.id, CRM)
        opp = crm.get(opp_id) if opp_id else next(iter(crm_by_number.get(sub.contract, [])), None)
        event = _CONTRACT_EVENTS.get(sub.status, ACTIVATED)
        if opp is not None and opp.status != sub.status:
            drifts.append(
                Drift(
                    DriftKind.STATUS,
                    "contract",
                    sub.contract,
                    _ids(billing=sub, crm=opp),
                    f"billing says {sub.status}, the CRM says {opp.status}",
                    Repair("publish billing's status to the CRM", event, about=sub.id),
                    {BILLING: sub.status, CRM: opp.status},
                )
            )
        booking = erp_by_number.get(sub.contract, [])
        if not booking and snapshot.complete and sub.status != "canceled":
            drifts.append(
                Drift(
                    DriftKind.MISSING,
                    "contract",
                    sub.contract,
                    _ids(billing=sub, crm=opp),
                    f"contract {sub.contract} has no ERP booking",
                    Repair("book the contract in the ERP", ACTIVATED, about=sub.id),
                )
            )
        elif len(booking) > 1:
            drifts.append(
                Drift(
                    DriftKind.DUPLICATE,
                    "contract",
                    sub.contract,
                    _ids(billing=sub, erp=booking),
                    f"{len(booking)} ERP sales book contract {sub.contract}",
                    Repair(f"cancel all but one ERP sale of contract {sub.contract}"),
                )
            )
        elif booking and sub.currency and booking[0].currency != sub.currency:
            drifts.append(
                Drift(
                    DriftKind.CURRENCY_OR_ENTITY,
                    "contract",
                    sub.contract,
                    _ids(billing=sub, erp=booking),
                    f"billing charges {sub.currency}, the ERP booked {booking[0].currency}",
                    Repair(f"re-book contract {sub.contract} in the entity billing charges for"),
                    {BILLING: sub.currency, ERP: str(booking[0].currency)},
                )
            )
    return drifts


# --- invoices and credit notes ---------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    billing: LedgerEntry
    other: LedgerEntry
    expected_entity: str | None


Check = Callable[[_Pair], Drift | None]


def _invoices(snapshot: Snapshot, xref: CrossRefs) -> list[Drift]:
    drifts: list[Drift] = []
    erp_entries = snapshot.of(ERP, LedgerKind.INVOICE)
    erp_by_id = {e.id: e for e in erp_entries}
    erp_by_number = _by_number(erp_entries)
    crm_by_number = _by_number(snapshot.of(CRM, LedgerKind.INVOICE))
    entities = _contract_entities(snapshot)
    matched: dict[str, set[str]] = {ERP: set(), CRM: set()}
    for invoice in sorted(snapshot.of(BILLING, LedgerKind.INVOICE), key=lambda e: e.number or ""):
        number = invoice.number or invoice.id
        linked = xref.counterpart("invoice", BILLING, invoice.id, ERP)
        erp_docs = list(erp_by_number.get(number, []))
        if linked in erp_by_id and erp_by_id[linked] not in erp_docs:
            erp_docs.insert(0, erp_by_id[linked])
        erp_docs.sort(key=lambda e: e.id != linked)
        crm_docs = crm_by_number.get(number, [])
        matched[ERP].update(e.id for e in erp_docs)
        matched[CRM].update(e.id for e in crm_docs)
        expected = entities.get(invoice.links.get("subscription", ""))
        for system, docs in ((ERP, erp_docs), (CRM, crm_docs)):
            if not docs:
                drifts.append(_missing_invoice(invoice, system, linked))
                continue
            if len(docs) > 1:
                drifts.append(_duplicate_invoice(invoice, system, docs))
            pair = _Pair(invoice, docs[0], expected if system == ERP else None)
            drifts.extend(d for check in INVOICE_CHECKS if (d := check(pair)) is not None)
    if snapshot.complete:
        for system, entries in ((ERP, erp_entries), (CRM, snapshot.of(CRM, LedgerKind.INVOICE))):
            for entry in entries:
                if entry.id not in matched[system]:
                    drifts.append(_orphan_invoice(entry))
    return drifts


def _contract_entities(snapshot: Snapshot) -> dict[str, str]:
    """Billing subscription id -> the legal entity its contract is booked in (ERP)."""
    booked = {
        e.number: e.entity for e in snapshot.of(ERP, LedgerKind.CONTRACT) if e.number and e.entity
    }
    return {
        sub.id: booked[sub.contract]
        for sub in snapshot.of(BILLING, LedgerKind.CONTRACT)
        if sub.contract in booked
    }


def _label(entry: LedgerEntry) -> str:
    return f"{'credit note' if entry.total and entry.total.is_negative() else 'invoice'}"


def _missing_invoice(invoice: LedgerEntry, system: str, linked: str | None) -> Drift:
    where = "the ERP" if system == ERP else "the CRM"
    hint = f" (the hub links ERP document {linked}, which is gone)" if linked else ""
    return Drift(
        DriftKind.MISSING,
        _label(invoice),
        invoice.number or invoice.id,
        _ids(billing=invoice),
        f"billing {_label(invoice)} {invoice.number} is not in {where}{hint}",
        _resync(invoice, system, f"post it in {where}" if system == ERP else "show it in the CRM"),
        {"missing_in": system},
    )


def _resync(invoice: LedgerEntry, system: str, action: str) -> Repair:
    """The billing event that carries the invoice to ``system`` again in its current state."""
    event = PAID if system == CRM and invoice.status == "paid" else FINALIZED
    return Repair(action, event, about=invoice.id)


def _duplicate_invoice(invoice: LedgerEntry, system: str, docs: Sequence[LedgerEntry]) -> Drift:
    keep = docs[0].id
    return Drift(
        DriftKind.DUPLICATE,
        _label(invoice),
        invoice.number or invoice.id,
        {BILLING: (invoice.id,), system: tuple(d.id for d in docs)},
        f"{len(docs)} {system} documents for billing {_label(invoice)} {invoice.number}",
        Repair(f"cancel the {system} duplicates of {invoice.number}, keeping {keep}"),
    )


def _orphan_invoice(entry: LedgerEntry) -> Drift:
    what = "ERP document" if entry.system == ERP else "CRM Invoice__c"
    return Drift(
        DriftKind.ORPHAN,
        _label(entry),
        entry.number or entry.id,
        {entry.system: (entry.id,)},
        f"{what} {entry.id} ({entry.number or 'no reference'}) matches no billing invoice",
        Repair(f"cancel {what} {entry.id}, or issue its invoice in billing"),
    )


def _values(pair: _Pair, attr: str) -> dict[str, str]:
    return {
        BILLING: str(getattr(pair.billing, attr)),
        pair.other.system: str(getattr(pair.other, attr)),
    }


def _drift(pair: _Pair, kind: DriftKind, detail: str, repair: Repair, attr: str) -> Drift:
    return Drift(
        kind,
        _label(pair.billing),
        pair.billing.number or pair.billing.id,
        _ids(billing=pair.billing, **{pair.other.system: pair.other}),
        detail,
        repair,
        _values(pair, attr),
    )


def _fix_in(pair: _Pair, what: str) -> Repair:
    """ERP documents are corrected by a person (the ERP is idempotent by reference, so a replay
    would find the wrong document again); the CRM takes billing's state by replay."""
    if pair.other.system == CRM:
        return _resync(pair.billing, CRM, f"publish billing's {what} to the CRM")
    return Repair(
        f"correct ERP document {pair.other.id} to billing's {what} (credit note or cancel and "
        "re-post); billing is the system of record"
    )


def check_currency(pair: _Pair) -> Drift | None:
    b, o = pair.billing, pair.other
    if o.currency and b.currency and o.currency != b.currency:
        return _drift(
            pair,
            DriftKind.CURRENCY_OR_ENTITY,
            f"billing bills in {b.currency}, {o.system} shows {o.currency}",
            _fix_in(pair, "currency"),
            "currency",
        )
    if pair.expected_entity and o.entity and o.entity != pair.expected_entity:
        return Drift(
            DriftKind.CURRENCY_OR_ENTITY,
            _label(b),
            b.number or b.id,
            _ids(billing=b, erp=o),
            f"posted in entity {o.entity}, but its contract is booked in {pair.expected_entity}",
            Repair(f"cancel ERP document {o.id} and re-post it in {pair.expected_entity}"),
            {ERP: o.entity, "contract": pair.expected_entity},
        )
    return None


def _comparable(pair: _Pair) -> bool:
    return not pair.other.currency or pair.other.currency == pair.billing.currency


def check_total(pair: _Pair) -> Drift | None:
    b, o = pair.billing, pair.other
    if not _comparable(pair) or b.total is None or o.total is None or b.total == o.total:
        return None
    return _drift(
        pair,
        DriftKind.AMOUNT,
        f"total {b.total} in billing, {o.total} in {o.system}",
        _fix_in(pair, "total"),
        "total",
    )


def check_tax(pair: _Pair) -> Drift | None:
    b, o = pair.billing, pair.other
    if not _comparable(pair) or b.tax is None or o.tax is None or b.tax == o.tax:
        return None
    return _drift(
        pair,
        DriftKind.TAX,
        f"tax {b.tax} in billing, {o.tax} in {o.system}",
        _fix_in(pair, "tax"),
        "tax",
    )


def check_settlement(pair: _Pair) -> Drift | None:
    """Paid in one system only is a status drift; the same status and total with a different
    amount still owed is an amount drift (a partial payment or refund not mirrored). Credit
    notes are left to the customer balance check: billing moves a credit onto the customer's
    balance, the ERP keeps the credit note open until it is used."""
    b, o = pair.billing, pair.other
    if not _comparable(pair) or (b.total is not None and b.total.is_negative()):
        return None  # a credit lives on the customer's balance in billing: compared there
    if b.status != o.status:
        if o.system == CRM:
            repair = _resync(b, CRM, "publish billing's status to the CRM")
        elif b.status == "paid":
            repair = Repair("apply billing's payment in the ERP", PAID, about=b.id)
        else:
            repair = Repair(
                f"the ERP shows document {o.id} paid but billing has not been paid: reverse the "
                "ERP payment, or record the payment in billing"
            )
        return _drift(
            pair,
            DriftKind.STATUS,
            f"{b.status} in billing, {o.status} in {o.system}",
            repair,
            "status",
        )
    if b.total != o.total and o.total is not None:
        return None  # the total's drift explains the amount owed
    if b.balance is not None and o.balance is not None and b.balance != o.balance:
        return _drift(
            pair,
            DriftKind.AMOUNT,
            f"still owed {b.balance} in billing, {o.balance} in {o.system}",
            _fix_in(pair, "amount still owed"),
            "balance",
        )
    return None


INVOICE_CHECKS: list[Check] = [check_currency, check_total, check_tax, check_settlement]
"""Run in order on each matched (billing, ERP or CRM) document; append to extend."""


# --- customer balances -----------------------------------------------------------------------


def _balances(snapshot: Snapshot, xref: CrossRefs, invoice_drifts: list[Drift]) -> list[Drift]:
    """What each customer owes: billing's open invoices net of its credit balance against the
    ERP's open documents (credit notes not applied count against it). A customer whose
    invoices already drift is left to those drifts."""
    if not snapshot.complete:
        return []
    drifting = {i for d in invoice_drifts for s in (BILLING, ERP) for i in d.ids.get(s, ())}
    billing_docs = _group(snapshot.of(BILLING, LedgerKind.INVOICE), lambda e: e.customer)
    erp_docs = _group(snapshot.of(ERP, LedgerKind.INVOICE), lambda e: e.customer)
    drifts: list[Drift] = []
    for customer in snapshot.of(BILLING, LedgerKind.CUSTOMER):
        party = xref.counterpart("customer", BILLING, customer.id, ERP)
        billed = billing_docs.get(customer.id, [])
        posted = erp_docs.get(party, []) if party else []
        if party is None or any(e.id in drifting for e in (*billed, *posted)):
            continue
        owed = _owed([*billed, customer])
        erp_owed = _owed(posted)
        if owed is None or erp_owed is None or owed == erp_owed:
            continue
        if owed.is_zero() and erp_owed.is_zero():
            continue
        drifts.append(
            Drift(
                DriftKind.AMOUNT,
                "customer balance",
                customer.id,
                {BILLING: (customer.id,), ERP: (party,)},
                f"billing says the customer owes {owed} (invoices net of its credit balance), "
                f"the ERP's receivable is {erp_owed}",
                Repair(
                    f"find the credit or payment booked differently for ERP party {party} and "
                    "book it as billing applied it"
                ),
                {BILLING: str(owed), ERP: str(erp_owed)},
            )
        )
    return drifts


def _owed(entries: Sequence[LedgerEntry]) -> Money | None:
    """The sum of what the entries owe, or None if they mix currencies (not comparable)."""
    amounts = [e.balance for e in entries if e.balance is not None]
    currencies = {m.currency for m in amounts if not m.is_zero()}
    if len(currencies) > 1:
        return None
    currency = next(iter(currencies), amounts[0].currency if amounts else "USD")
    return Money.sum((m for m in amounts if not m.is_zero()), currency)
