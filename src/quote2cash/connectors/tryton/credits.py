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
        await _finish(erp, posted[0], ctx, reconcile)
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
    await _finish(erp, move_id, ctx, reconcile)
    return move_id


async def _finish(
    erp: TrytonClient, move_id: int, ctx: Mapping[str, Any], reconcile: Reconcile
) -> None:
    """Put the move's open lines on the payment lines of the documents they pay; settle those
    paid (a reconciled line is settled already, or was released: never put back)."""
    lines = await erp.model("account.move.line").search_read(
        [("move", "=", move_id)],
        ["description", "invoice_payment", "reconciliation"],
        context=ctx,
    )
    invoices = erp.model("account.invoice")
    touched: list[int] = []
    for line in lines:
        target = _target(str(line.get("description") or ""))
        if target is None or line.get("reconciliation"):
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


async def release_credit(
    erp: TrytonClient,
    row: Mapping[str, Any],
    excess: Decimal,
    ctx: Mapping[str, Any],
    reconcile: Reconcile,
) -> bool:
    """Take exactly ``excess`` of credit back off invoice ``row`` (payment lines from the
    customer's credit notes or credit transfers), so cash billing collected for the invoice fits;
    that credit is the customer's open credit again. False (nothing changed) when the credit on
    the invoice cannot make up exactly ``excess``."""
    ids = [int(i) for i in row.get("payment_lines") or []]
    if not ids or excess <= 0:
        return False
    move_lines = erp.model("account.move.line")
    lines = await move_lines.read(
        ids, ["move", "debit", "credit", "description", "reconciliation"], context=ctx
    )
    moves = sorted({int(line["move"]) for line in lines})
    notes = {
        int(n["move"])
        for n in await erp.model("account.invoice").search_read(
            [("move", "in", moves)], ["move", "total_amount"], context=ctx
        )
        if Decimal(n["total_amount"]) < 0
    }
    credits = [
        line
        for line in lines
        if not line.get("reconciliation")
        and Decimal(line["credit"]) > 0
        and Decimal(line["debit"]) == 0
        and (
            int(line["move"]) in notes
            or str(line.get("description") or "").startswith(mapping.CREDIT_MARK)
        )
    ]
    picked = _exactly(credits, excess)
    if picked is None:
        return False
    invoices = erp.model("account.invoice")
    await invoices.write(
        [int(row["id"])],
        {"payment_lines": [("remove", [int(line["id"]) for line in picked])]},
        context=ctx,
    )
    for line in picked:
        if int(line["move"]) not in notes:
            await _undo_transfer(erp, int(line["move"]), ctx, reconcile)
    return True


def _exactly(lines: Sequence[Mapping[str, Any]], amount: Decimal) -> list[Mapping[str, Any]] | None:
    """Lines whose credits add up to exactly ``amount``: one such line, else largest first."""
    exact = [line for line in lines if Decimal(line["credit"]) == amount]
    if exact:
        return exact[:1]
    picked: list[Mapping[str, Any]] = []
    total = Decimal(0)
    for line in sorted(lines, key=lambda li: -Decimal(li["credit"])):
        if total + Decimal(line["credit"]) <= amount:
            picked.append(line)
            total += Decimal(line["credit"])
    return picked if total == amount else None


async def _undo_transfer(
    erp: TrytonClient, move_id: int, ctx: Mapping[str, Any], reconcile: Reconcile
) -> None:
    """A released credit transfer gives its credit back to its credit notes (reopened when it
    had settled them); its own lines, which balance, are reconciled with each other."""
    move_lines = erp.model("account.move.line")
    lines = await move_lines.search_read(
        [("move", "=", move_id)], ["description", "reconciliation", "debit"], context=ctx
    )
    settled = [int(line["id"]) for line in lines if line.get("reconciliation")]
    if settled:
        async with erp.wizard(
            "account.move.unreconcile_lines",
            active_model="account.move.line",
            active_ids=settled,
            context=ctx,
        ) as wizard:
            await wizard.start()
    invoices = erp.model("account.invoice")
    for line in lines:
        target = _target(str(line.get("description") or ""))
        if target is None or Decimal(line["debit"]) == 0:
            continue
        [note] = await invoices.read([target], ["state"], context=ctx)
        if note["state"] == "paid":
            await invoices.execute_button("process", [target], context=ctx)
        await invoices.write(
            [target], {"payment_lines": [("remove", [int(line["id"])])]}, context=ctx
        )
    await reconcile([int(line["id"]) for line in lines])
