"""Customer credit in Tryton: credit notes that stay open as the customer's credit, and their
use on later invoices exactly as billing applied the balance, with no cash.

Applying ``amount`` of credit to an invoice books one transfer move in the entity's revenue
journal, described ``q2c-credit:<key>``: a receivable debit per credit note used (put on that
note's payment lines) and one receivable credit of ``amount`` (on the invoice's payment lines),
oldest credit first; a document settled in full is reconciled. The move nets to zero on the
receivable, so the customer's receivable stays what billing says they owe (open invoices net of
the balance). A crash part-way is finished by calling again with the same key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import Money
from quote2cash.connectors.tryton import mapping
from quote2cash.connectors.tryton.client import TrytonClient
from quote2cash.connectors.tryton.config import TrytonLegalEntity
from quote2cash.engine.errors import ConflictError, DataError, TransientError

SYSTEM: Final = "erp"
_FROM: Final = " from credit note "
_TO: Final = " to invoice "

Reconcile = Callable[[Sequence[int]], Awaitable[None]]


@dataclass(frozen=True)
class OpenCredit:
    """A posted credit note of the customer with ``available`` (> 0) not yet used."""

    invoice: int
    number: str
    available: Decimal


async def open_credits(
    erp: TrytonClient, row: Mapping[str, Any], ctx: Mapping[str, Any]
) -> list[OpenCredit]:
    """The open credit notes of the invoice's party, company, currency and account, oldest
    first."""
    notes = await erp.model("account.invoice").search_read(
        [
            ("company", "=", int(row["company"])),
            ("party", "=", int(row["party"])),
            ("account", "=", int(row["account"])),
            ("type", "=", "out"),
            ("state", "=", "posted"),
        ],
        ["number", "total_amount", "amount_to_pay", "currency.code"],
        order=[("id", "ASC")],
        context=ctx,
    )
    currency = row["currency."]["code"]
    return [
        OpenCredit(int(n["id"]), str(n.get("number") or n["id"]), -Decimal(n["amount_to_pay"]))
        for n in notes
        if n["currency."]["code"] == currency
        and Decimal(n["total_amount"]) < 0
        and Decimal(n["amount_to_pay"]) < 0
    ]


def take_oldest(credits: Sequence[OpenCredit], amount: Decimal) -> list[tuple[OpenCredit, Decimal]]:
    """What each credit note gives towards ``amount``, oldest first (may fall short)."""
    taken: list[tuple[OpenCredit, Decimal]] = []
    left = amount
    for credit in credits:
        if left <= 0:
            break
        share = min(credit.available, left)
        taken.append((credit, share))
        left -= share
    return taken


async def open_period(
    erp: TrytonClient, entity: TrytonLegalEntity, day: dt.date, label: str, ctx: Mapping[str, Any]
) -> int:
    periods = await erp.model("account.period").search(
        [
            ("company", "=", entity.company),
            ("type", "=", "standard"),
            ("state", "=", "open"),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
        ],
        limit=1,
        context=ctx,
    )
    if not periods:
        raise DataError(
            f"{label}: Tryton company {entity.company} has no open accounting period on {day}",
            system=SYSTEM,
        )
    return periods[0]


async def apply_credit(
    erp: TrytonClient,
    row: Mapping[str, Any],
    entity: TrytonLegalEntity,
    amount: Money,
    *,
    key: str,
    label: str,
    ctx: Mapping[str, Any],
    reconcile: Reconcile,
    today: dt.date,
) -> int:
    """The id of the transfer move applying ``amount`` of credit to invoice ``row``."""
    marker = mapping.credit_marker(key)
    moves = erp.model("account.move")
    found = await moves.search_read(
        [("company", "=", entity.company), ("description", "=", marker)], ["state"], context=ctx
    )
    posted = [int(m["id"]) for m in found if m["state"] == "posted"]
    if posted:
        await _finish(erp, posted[0], row, ctx, reconcile)
        return posted[0]
    if found:
        await moves.delete([int(m["id"]) for m in found], context=ctx)
    invoice_label = f"ERP invoice {row.get('number') or row['id']}"
    currency = str(row["currency."]["code"])
    if amount.currency != currency:
        raise DataError(
            f"{label}: credit of {amount} cannot pay {invoice_label} in {currency}", system=SYSTEM
        )
    to_pay = Decimal(row["amount_to_pay"])
    if row["state"] != "posted" or to_pay < amount.amount:
        raise ConflictError(
            f"{label}: {invoice_label} is {row['state']} and owes {to_pay} {currency}; the "
            f"customer's credit of {amount} billing applied to it does not fit",
            system=SYSTEM,
        )
    credits = await open_credits(erp, row, ctx)
    taken = take_oldest(credits, amount.amount)
    available = sum((c.available for c in credits), Decimal(0))
    if available < amount.amount:
        raise TransientError(
            f"{label}: billing applied {amount} of the customer's credit to {invoice_label}, but "
            f"the ERP holds {available} {currency} of open credit notes for them; the credit may "
            "not be posted yet",
            system=SYSTEM,
        )
    lines: list[dict[str, Any]] = [
        {
            "account": int(row["account"]),
            "party": int(row["party"]),
            "debit": share,
            "credit": Decimal(0),
            "description": f"{marker}{_FROM}{credit.invoice}",
        }
        for credit, share in taken
    ]
    lines.append(
        {
            "account": int(row["account"]),
            "party": int(row["party"]),
            "debit": Decimal(0),
            "credit": amount.amount,
            "description": f"{marker}{_TO}{row['id']}",
        }
    )
    move_id = await moves.create_one(
        {
            "company": entity.company,
            "journal": entity.revenue_journal,
            "period": await open_period(erp, entity, today, label, ctx),
            "date": today,
            "origin": f"account.invoice,{row['id']}",
            "description": marker,
            "lines": [("create", lines)],
        },
        context=ctx,
    )
    await moves.execute_button("post", [move_id], context=ctx)
    await _finish(erp, move_id, row, ctx, reconcile)
    return move_id


async def _finish(
    erp: TrytonClient,
    move_id: int,
    row: Mapping[str, Any],
    ctx: Mapping[str, Any],
    reconcile: Reconcile,
) -> None:
    """Put the move's lines on the payment lines of the documents they pay; settle those paid."""
    lines = await erp.model("account.move.line").search_read(
        [("move", "=", move_id)], ["description", "invoice_payment"], context=ctx
    )
    invoices = erp.model("account.invoice")
    touched: list[int] = []
    for line in lines:
        text = str(line.get("description") or "")
        target = _target(text)
        if target is None:
            continue
        touched.append(target)
        if not line.get("invoice_payment"):
            await invoices.write(
                [target], {"payment_lines": [("add", [int(line["id"])])]}, context=ctx
            )
    for document in touched:
        await _settle(erp, document, ctx, reconcile)


def _target(description: str) -> int | None:
    for sep in (_FROM, _TO):
        if sep in description:
            return mapping.record_id(description.rsplit(sep, 1)[1])
    return None


async def _settle(
    erp: TrytonClient, document: int, ctx: Mapping[str, Any], reconcile: Reconcile
) -> None:
    """Reconcile a document its payment lines settle in full, so it shows paid."""
    invoices = erp.model("account.invoice")
    [row] = await invoices.read(
        [document], ["state", "amount_to_pay", "lines_to_pay", "payment_lines"], context=ctx
    )
    if row["state"] != "posted" or Decimal(row["amount_to_pay"]) != 0:
        return
    ids = [int(i) for i in (*row["lines_to_pay"], *row["payment_lines"])]
    open_lines = [
        int(line["id"])
        for line in await erp.model("account.move.line").read(ids, ["reconciliation"], context=ctx)
        if not line.get("reconciliation")
    ]
    if open_lines:
        await reconcile(open_lines)
    [after] = await invoices.read([document], ["state"], context=ctx)
    if after["state"] == "posted":
        await invoices.execute_button("process", [document], context=ctx)
