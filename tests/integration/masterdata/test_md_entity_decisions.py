"""The legal entity decided for a contract stands for its whole life (SQLite and PostgreSQL):
deciding again keeps the first decision; a customer's row follows its latest contract; the
customer's own sync state (what the hub wrote to the ERP and billing) is untouched."""

from __future__ import annotations

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata.entities import EntityDecisions
from quote2cash.masterdata.sync import SyncState
from quote2cash.masterdata.xref import Kind, XrefStore


def test_a_contracts_entity_is_decided_once(runtime: Runtime, clock: ManualClock) -> None:
    xref = XrefStore(runtime.engine, clock)
    decisions = EntityDecisions(runtime.engine, clock)
    customer = xref.ensure_global_id(Kind.CUSTOMER, "crm", "001GB")
    first = xref.ensure_global_id(Kind.SUBSCRIPTION, "crm", "006A")
    second = xref.ensure_global_id(Kind.SUBSCRIPTION, "crm", "006B")
    sync = SyncState(runtime.engine, clock, xref)
    xref.link(customer, "erp", "P-1")
    sync.record(customer, "erp", "print-1", "P-1")

    assert decisions.decided(first) is None
    assert decisions.decide(first, customer, "US") == "US"
    # The account moves or its currency is edited: the contract keeps its entity.
    assert decisions.decide(first, customer, "DE") == "US"
    assert decisions.decided(first) == "US"
    assert decisions.decided(customer) == "US"

    assert decisions.decide(second, customer, "DE") == "DE"
    assert (decisions.decided(first), decisions.decided(second)) == ("US", "DE")
    assert decisions.decided(customer) == "DE"  # billing documents outside a contract
    assert sync.unchanged(customer, "erp", "print-1") == "P-1"
