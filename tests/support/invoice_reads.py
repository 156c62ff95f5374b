"""A check any test with a hub can run at its end: GetInvoiceStatus from the read model equals
the log scan (the reference) for every invoice the store knows, by each of its ids, and the read
model rebuilt from the log alone holds the same rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from quote2cash.engine.errors import DataError
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.status import get_invoice_status
from quote2cash.flows.status_log import invoice_status_from_log
from quote2cash.masterdata.xref import XrefStore
from quote2cash.readmodels.invoice_status import rebuild
from quote2cash.store.schema import invoice_status


def _answer(read: Any, runtime: Runtime, xref: XrefStore, ident: str) -> Any:
    try:
        return read(runtime, xref, ident)
    except DataError:
        return "unknown"


def assert_read_model_matches_log(runtime: Runtime, xref: XrefStore) -> int:
    """Returns how many (invoice, id) answers were compared."""
    with runtime.engine.connect() as conn:
        billing_ids = list(
            conn.execute(
                select(invoice_status.c.billing_id).where(invoice_status.c.data_pos.is_not(None))
            ).scalars()
        )
    compared = 0
    for billing_id in billing_ids:
        view = get_invoice_status(runtime, xref, billing_id)
        assert view == invoice_status_from_log(runtime, xref, billing_id), billing_id
        for ident in (view.number, view.crm_id, view.erp_id, view.global_id):
            if ident:
                model = _answer(get_invoice_status, runtime, xref, ident)
                scanned = _answer(invoice_status_from_log, runtime, xref, ident)
                assert model == scanned, (billing_id, ident)
                compared += 1
        compared += 1
    with runtime.engine.connect() as conn, conn.begin() as tx:
        before = sorted(tuple(r) for r in conn.execute(select(invoice_status)).all())
        rebuild(conn)
        after = sorted(tuple(r) for r in conn.execute(select(invoice_status)).all())
        tx.rollback()
    assert after == before, "the read model rebuilt from the log differs from the one kept"
    return compared
