"""GetInvoiceStatus's read model, kept by the engine's projection hooks as a real worker records
steps and completes events, answers exactly what the log scan (the reference) answers, by every
id, whatever order subjects are committed in; ``rebuild`` gives an existing store the same."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

from quote2cash.canonical import Money, Payment, PaymentStatus, Ref
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.context import HandlerContext
from quote2cash.engine.errors import DataError
from quote2cash.engine.events import Event, new_event
from quote2cash.engine.registry import Registry
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.flows.status import InvoiceStatusView, get_invoice_status
from quote2cash.flows.status_log import invoice_status_from_log
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.readmodels.invoice_status import InvoiceStatusProjection, rebuild
from quote2cash.store.db import MIGRATIONS, migrate
from quote2cash.store.schema import invoice_keys, invoice_status

DUE = int(datetime(2026, 12, 31, tzinfo=UTC).timestamp())


def _invoice(
    inv: str, status: str, *, number: str | None, paid: int = 0, total: int = 14700
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "object": "invoice",
        "id": inv,
        "number": number,
        "status": status,
        "currency": "usd",
        "total": total,
        "amount_paid": paid,
        "amount_remaining": total - paid,
        "due_date": DUE,
        "status_transitions": {"paid_at": DUE - 86400 if status == "paid" else None},
    }
    return {"object": obj}


def _registry(xref: XrefStore) -> Registry:
    """Handlers recording the steps the invoice, payment and refund flows record (same names,
    same result shapes), and linking cross-references outside the step as the flows do."""
    registry = Registry()

    @registry.on("billing.invoice.finalized")
    async def finalized(ctx: HandlerContext, event: Event) -> None:
        inv = event.data["object"]["id"]
        n = inv.removeprefix("in_")
        posted = await ctx.step("erp.post_invoice", lambda _k: _const({"erp_id": f"E-{n}"}))
        gid = xref.ensure_global_id(Kind.INVOICE, "billing", inv, actor="flows")
        xref.link(gid, "erp", posted["erp_id"], actor="flows")
        await ctx.step("crm.publish_invoice", lambda _k: _const([f"a0X{n}", f"006OPP{n}"]))

    @registry.on("billing.payment.succeeded")
    async def paid(ctx: HandlerContext, event: Event) -> None:
        await ctx.step("erp.apply_payment", lambda _k: _const({"ok": True}))
        # as the CRM role answers now (the finalized invoice's list is the older answer)
        crm_id = f"a0X{event.data['object']['id'][3:]}"
        await ctx.step("crm.publish_paid", lambda _k: _const({"crm_invoice_id": crm_id}))

    @registry.on("billing.payment.refunded")
    async def refunded(ctx: HandlerContext, event: Event) -> None:
        obj = event.data["object"]
        amount = obj.get("refunded")
        payment = Payment(
            invoice=Ref(external_ids={"billing": obj["invoice"]}),
            amount=Money("147.00", "USD"),
            status=PaymentStatus.REFUNDED if amount else PaymentStatus.SUCCEEDED,
            created_at=event.time,
            amount_refunded=Money(amount, "USD") if amount else None,
        )
        await ctx.step("billing.get_payment", lambda _k: _const(payment.model_dump(mode="json")))
        if amount and obj.get("reverse", True):
            await ctx.step("erp.reverse_payment", lambda _k: _const({"ok": True}))

    @registry.on("billing.*")
    async def recorded_only(ctx: HandlerContext, event: Event) -> None:
        return None

    registry.add_projection(InvoiceStatusProjection())
    return registry


async def _const(value: Any) -> Any:
    return value


def _append(runtime: Runtime, n: int, type_: str, subject: str, data: dict[str, Any]) -> None:
    runtime.log.append(
        new_event(type_, subject, data, source="billing", id=f"evt_{n}", correlation_id="c")
    )


def _answers(runtime: Runtime, xref: XrefStore, ident: str) -> tuple[Any, Any]:
    def one(read: Any) -> InvoiceStatusView | str:
        try:
            view: InvoiceStatusView = read(runtime, xref, ident)
        except DataError:
            return "unknown"
        return view

    return one(get_invoice_status), one(invoice_status_from_log)


IDS = (
    "in_1",
    "in_2",
    "in_3",
    "F-0001",
    "F-0002",
    "E-1",
    "E-2",
    "E-3",
    "a0X1",
    "a0X2",
    "a0X3",
    "006OPP1",
    " in_1 ",
    "in_unknown",
    "ch_1",
    "INV-unknown",
)


@pytest.mark.parametrize("refund_first", [False, True])
async def test_read_model_answers_as_the_log_scan_by_every_id(
    runtime: Runtime, clock: ManualClock, refund_first: bool
) -> None:
    xref = XrefStore(runtime.engine, clock)
    worker = Worker(runtime, _registry(xref))
    n = iter(range(1, 100))

    def refunds() -> None:
        # Heard outside the contract (a charge names no invoice object); the newest reading
        # wins: 147.00 then a later reading of the same payment, 50.00 of it, not reversed.
        _append(
            runtime,
            next(n),
            "billing.payment.refunded",
            "billing:cus_1",
            {"object": {"object": "charge", "id": "ch_1", "invoice": "in_1", "refunded": "147.00"}},
        )
        clock.advance(1)
        _append(
            runtime,
            next(n),
            "billing.payment.refunded",
            "billing:cus_2",
            {
                "object": {
                    "object": "charge",
                    "id": "ch_2",
                    "invoice": "in_2",
                    "refunded": "50.00",
                    "reverse": False,
                }
            },
        )

    if refund_first:
        refunds()
        await worker.drain()
    # in_1: drafted (no number), finalized, paid; in_2: finalized only; in_3: a draft only.
    _append(
        runtime,
        next(n),
        "billing.invoice.created",
        "contract:C-1",
        _invoice("in_1", "draft", number=None),
    )
    _append(
        runtime,
        next(n),
        "billing.invoice.created",
        "contract:C-3",
        _invoice("in_3", "draft", number=None),
    )
    clock.advance(1)
    _append(
        runtime,
        next(n),
        "billing.invoice.finalized",
        "contract:C-1",
        _invoice("in_1", "open", number="F-0001"),
    )
    _append(
        runtime,
        next(n),
        "billing.invoice.finalized",
        "contract:C-2",
        _invoice("in_2", "open", number="F-0002"),
    )
    await worker.drain()
    clock.advance(1)
    _append(
        runtime,
        next(n),
        "billing.payment.succeeded",
        "contract:C-1",
        _invoice("in_1", "paid", number="F-0001", paid=14700),
    )
    if not refund_first:
        await worker.drain()
        refunds()
    await worker.drain()

    for ident in IDS:
        model, scanned = _answers(runtime, xref, ident)
        assert model == scanned, ident
    paid = get_invoice_status(runtime, xref, "F-0001")
    assert (paid.status, paid.amount_paid, paid.amount_due) == (
        "paid",
        Money("147.00", "USD"),
        Money("0.00", "USD"),
    )
    assert paid.amount_refunded == Money("147.00", "USD") and paid.refund_reversed_in_erp
    assert (paid.erp_id, paid.crm_id, paid.contract) == ("E-1", "a0X1", "C-1")
    assert paid.global_id is not None and paid.posted_in_erp and paid.payment_applied_in_erp
    part = get_invoice_status(runtime, xref, "E-2")
    assert part.amount_refunded == Money("50.00", "USD") and not part.refund_reversed_in_erp
    draft = get_invoice_status(runtime, xref, "in_3")
    assert (draft.status, draft.number, draft.erp_id, draft.posted_in_erp) == (
        "draft",
        None,
        None,
        False,
    )
    assert draft.due_date == datetime.fromtimestamp(DUE, UTC).date()
    assert _answers(runtime, xref, paid.global_id)[0] == paid

    # An existing store: the read model rebuilt from the log alone answers the same.
    with runtime.engine.begin() as conn:
        before = sorted(map(tuple, conn.execute(select(invoice_status)).all()))
        keys = sorted(map(tuple, conn.execute(select(invoice_keys)).all()))
        assert rebuild(conn) == 7
        assert sorted(map(tuple, conn.execute(select(invoice_status)).all())) == before
        assert sorted(map(tuple, conn.execute(select(invoice_keys)).all())) == keys
    for ident in IDS:
        model, scanned = _answers(runtime, xref, ident)
        assert model == scanned, ident


async def test_a_re_run_or_an_older_event_never_takes_the_row_back(
    runtime: Runtime, clock: ManualClock
) -> None:
    """Data is taken by log position, not by arrival: completing an older event after a newer
    one (another subject, another worker) leaves the newer data."""
    projection = InvoiceStatusProjection()
    older = new_event(
        "billing.invoice.finalized",
        "contract:C-9",
        _invoice("in_9", "open", number="F-9"),
        source="billing",
        id="evt_a",
        correlation_id="c",
    )
    newer = new_event(
        "billing.payment.succeeded",
        "billing:cus_9",
        _invoice("in_9", "paid", number="F-9", paid=14700),
        source="billing",
        id="evt_b",
        correlation_id="c",
    )
    runtime.log.append(older)
    runtime.log.append(newer)
    with runtime.engine.connect() as conn:  # appending alone projects nothing
        assert conn.execute(select(func.count()).select_from(invoice_status)).scalar_one() == 0
    worker_events = _logged(runtime)
    with runtime.engine.begin() as conn:
        projection.on_done(conn, [worker_events["evt_b"]])
        projection.on_done(conn, [worker_events["evt_a"]])
        projection.on_done(conn, [worker_events["evt_b"]])
    xref = XrefStore(runtime.engine, clock)
    view = get_invoice_status(runtime, xref, "F-9")
    assert view.status == "paid" and view.amount_paid == Money(Decimal("147.00"), "USD")
    assert view == invoice_status_from_log(runtime, xref, "F-9")
    # The same event again with its data corrected (correct-and-retry) brings the correction.
    corrected = _invoice("in_9", "void", number="F-9", paid=14700)
    with runtime.engine.begin() as conn:
        projection.on_done(conn, [msgspec.structs.replace(worker_events["evt_b"], data=corrected)])
        projection.on_done(conn, [worker_events["evt_a"]])
    assert get_invoice_status(runtime, xref, "in_9").status == "void"


def _logged(runtime: Runtime) -> dict[str, Event]:
    from quote2cash.engine.events import decode_data
    from quote2cash.store.schema import events

    with runtime.engine.connect() as conn:
        rows = conn.execute(select(events)).all()
    return {
        r.event_id: Event(
            id=r.event_id,
            source=r.source,
            type=r.type,
            subject=r.subject,
            time=r.time,
            correlation_id=r.correlation_id,
            causation_id=r.causation_id,
            sequence=r.sequence,
            data=decode_data(r.data),
            pos=r.pos,
        )
        for r in rows
    }


async def test_ids_of_a_merged_global_id_answer_as_the_log_scan(
    runtime: Runtime, clock: ManualClock
) -> None:
    """A global id merged into another resolves to its survivor (the exact path through the
    merge chain), by every id of either invoice."""
    xref = XrefStore(runtime.engine, clock)
    worker = Worker(runtime, _registry(xref))
    for n, inv in enumerate(("in_1", "in_2"), start=1):
        _append(
            runtime,
            n,
            "billing.invoice.finalized",
            f"contract:C-{n}",
            _invoice(inv, "open", number=f"F-000{n}"),
        )
        clock.advance(1)
        await worker.drain()
    survivor = xref.global_id_for(Kind.INVOICE, "billing", "in_1")
    merged = xref.global_id_for(Kind.INVOICE, "billing", "in_2")
    assert survivor and merged and survivor != merged
    xref.merge(survivor, merged, actor="steward", reason="one invoice known twice")
    for ident in (*IDS, survivor, merged):
        model, scanned = _answers(runtime, xref, ident)
        assert model == scanned, ident
    assert get_invoice_status(runtime, xref, merged).billing_id == "in_1"


async def test_an_upgraded_store_answers_as_its_log_did(
    runtime: Runtime, clock: ManualClock
) -> None:
    """Migration 0015 builds the read model from the history already logged: a store whose
    history predates it (here: taken back below 0015, read model dropped) answers the same."""
    xref = XrefStore(runtime.engine, clock)
    worker = Worker(runtime, _registry(xref))
    _append(
        runtime,
        1,
        "billing.invoice.finalized",
        "contract:C-1",
        _invoice("in_1", "open", number="F-0001"),
    )
    await worker.drain()
    clock.advance(1)
    _append(
        runtime,
        2,
        "billing.payment.succeeded",
        "contract:C-1",
        _invoice("in_1", "paid", number="F-0001", paid=14700),
    )
    _append(
        runtime,
        3,
        "billing.payment.refunded",
        "billing:cus_1",
        {"object": {"object": "charge", "id": "ch_1", "invoice": "in_1", "refunded": "47.00"}},
    )
    await worker.drain()
    before = {
        ident: get_invoice_status(runtime, xref, ident)
        for ident in ("in_1", "F-0001", "E-1", "a0X1")
    }

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = runtime.engine
    below = ScriptDirectory(str(MIGRATIONS)).get_revision("0015").down_revision
    command.downgrade(config, str(below))
    assert not inspect(runtime.engine).has_table("invoice_status")
    migrate(runtime.engine)
    for ident, view in before.items():
        assert get_invoice_status(runtime, xref, ident) == view
        assert invoice_status_from_log(runtime, xref, ident) == view
    assert before["a0X1"].amount_refunded == Money("47.00", "USD")
