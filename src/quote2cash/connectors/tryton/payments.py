"""Collections: billing's payments applied to Tryton invoices, refunds booked as reversals."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from quote2cash.canonical import (
    Money,
    Payment,
    PaymentStatus,
)
from quote2cash.connectors.tryton import credits, mapping
from quote2cash.connectors.tryton.config import TrytonLegalEntity
from quote2cash.connectors.tryton.invoices import Invoices
from quote2cash.connectors.tryton.session import SYSTEM, about, utc_today
from quote2cash.engine.errors import (
    ConflictError,
    DataError,
    MappingError,
    TransientError,
)

__all__ = ["Collections"]

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


class Collections(Invoices):
    """The ERP role's collections: ``apply_payment`` and ``reverse_payment``."""

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
        when = min(payment.created_at.date(), utc_today())
        with about(label):
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
        with about(label):
            return await credits.release_credit(
                await self._erp(),
                current,
                excess,
                ctx,
                lambda ids: self._reconcile(ids, label, ctx),
            )

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
            with about(label):
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
            with about(label):
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
            with about(label):
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
        today = utc_today()
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
        with about(label):
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
            with about(label):
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
            with about(label):
                await invoices.write(
                    [invoice_id], {"payment_lines": [("add", [remainder])]}, context=ctx
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
