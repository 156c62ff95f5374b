"""Golden customer records in the store: ingest, steward queue, merge on "same"; both backends."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from quote2cash.canonical import Address, Customer
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.errors import ConflictError
from quote2cash.engine.runtime import Runtime
from quote2cash.masterdata import (
    CustomerCandidate,
    GoldenCustomers,
    IngestOutcome,
    ReviewStatus,
    XrefStore,
    load_matching,
    load_ownership,
    load_survivorship,
)
from quote2cash.masterdata.xref import Kind
from quote2cash.store.schema import audit_log
from unit.masterdata.accounts_data import CONFIG

AT = datetime(2026, 10, 1, tzinfo=UTC)


def record(
    system: str, local_id: str, name: str, postal: str | None, *, tax: str | None = None
) -> CustomerCandidate:
    customer = Customer(
        name=name,
        address=Address(line1="Hauptstrasse 1", city="Berlin", postal_code=postal, country="DE"),
        tax_ids=(("eu_vat", tax),) if tax else (),
        currency="EUR" if system == "erp" else None,
    )
    return CustomerCandidate(system, local_id, customer, AT)


@pytest.fixture
def golden(runtime: Runtime, clock: ManualClock) -> GoldenCustomers:
    survivorship = load_survivorship(
        CONFIG / "survivorship.yaml", load_ownership(CONFIG / "ownership.yaml")
    )
    return GoldenCustomers(
        runtime.engine, load_matching(CONFIG / "matching.yaml"), survivorship, clock
    )


def test_ingest_matches_queues_and_merges_on_a_steward_decision(
    runtime: Runtime, golden: GoldenCustomers, clock: ManualClock
) -> None:
    xrefs = XrefStore(runtime.engine, clock)
    first = golden.ingest(record("crm", "001A", "Müller Maschinenbau GmbH", "80331"))
    assert first.outcome is IngestOutcome.NEW
    erp = golden.ingest(
        record("erp", "C1", "MUELLER MASCHINENBAU G.m.b.H.", "80331", tax="DE811234567")
    )
    assert erp.outcome is IngestOutcome.AUTO_MATCH and erp.global_id == first.global_id
    assert xrefs.system_ids(first.global_id) == {"crm": ("001A",), "erp": ("C1",)}
    again = golden.ingest(record("crm", "001A", "Müller Maschinenbau GmbH", "80331"))
    assert again.outcome is IngestOutcome.KNOWN and again.global_id == first.global_id

    other_town = golden.ingest(record("crm", "001B", "Schmidt GmbH", "10117"))
    assert other_town.outcome is IngestOutcome.NEW
    doubtful = golden.ingest(record("crm", "001C", "Schmidt GmbH", "80331"))
    assert doubtful.outcome is IngestOutcome.REVIEW
    assert doubtful.global_id != other_town.global_id
    (review,) = golden.reviews()
    assert review.candidate == ("crm", "001C") and review.existing == ("crm", "001B")
    assert review.evidence["postal_code"] == "different"
    assert review.evidence["name_similarity"] == 100

    clock.advance(30)
    merge = golden.decide(review.id, same=True, actor="steward.anna", note="same company, moved")
    assert merge is not None and merge.survivor == other_town.global_id
    assert golden.reviews() == []
    decided = golden.reviews(ReviewStatus.SAME)[0]
    assert decided.decided_by == "steward.anna" and decided.decided_at == clock.now()
    with pytest.raises(ConflictError, match="already decided"):
        golden.decide(review.id, same=False, actor="steward.ben")
    assert xrefs.global_id_for(Kind.CUSTOMER, "crm", "001C") == other_town.global_id
    assert xrefs.resolve(doubtful.global_id) == other_town.global_id

    record_ = golden.golden(first.global_id)
    assert record_ is not None
    assert record_.customer.name == "Müller Maschinenbau GmbH"  # CRM first for the name
    assert [t.value for t in record_.customer.tax_ids] == ["DE811234567"]  # ERP owns tax ids
    assert record_.provenance["tax_ids"].system == "erp"
    merged_golden = golden.golden(doubtful.global_id)
    assert merged_golden is not None
    assert merged_golden.customer.external_ids == {"crm": "001B"}

    assert verify_audit(runtime.engine).ok
    with runtime.engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))]
        decision = conn.execute(
            select(audit_log.c.details).where(
                audit_log.c.action == "masterdata.match_review.decided"
            )
        ).scalar_one()
    assert actions == [
        "masterdata.customer.new",
        "masterdata.customer.auto_match",
        "masterdata.customer.known",
        "masterdata.customer.new",
        "masterdata.steward_task.opened",
        "masterdata.customer.review",
        "masterdata.match_review.decided",
        "masterdata.xref.merged",
    ]
    assert json.loads(decision)["decision"] == "same"


def test_different_decision_keeps_both_customers(runtime: Runtime, golden: GoldenCustomers) -> None:
    a = golden.ingest(record("crm", "1", "Schmidt GmbH", "10117"))
    b = golden.ingest(record("erp", "C9", "Schmidt GmbH", "80331", tax="DE144556677"))
    assert b.outcome is IngestOutcome.REVIEW
    (review,) = golden.reviews()
    assert golden.decide(review.id, same=False, actor="steward.ben") is None
    xrefs = XrefStore(runtime.engine)
    assert xrefs.resolve(a.global_id) != xrefs.resolve(b.global_id)
    assert golden.reviews(ReviewStatus.DIFFERENT)[0].decided_by == "steward.ben"
    assert verify_audit(runtime.engine).ok


def test_a_record_that_conflicts_with_any_filed_record_goes_to_review(
    golden: GoldenCustomers,
) -> None:
    first = golden.ingest(record("crm", "a", "Acme GmbH", "10115", tax="DE100"))
    bridge = golden.ingest(record("crm", "b", "ACME G.m.b.H.", None))
    assert bridge.outcome is IngestOutcome.AUTO_MATCH and bridge.global_id == first.global_id
    other = golden.ingest(record("erp", "c", "Acme GmbH", None, tax="DE200"))
    assert other.outcome is IngestOutcome.REVIEW
    assert other.global_id != first.global_id
    assert {r.existing for r in golden.reviews()} == {("crm", "a"), ("crm", "b")}


def test_concurrent_ingests_of_one_company_file_under_one_customer(
    runtime: Runtime, golden: GoldenCustomers
) -> None:
    records = [
        record("crm", f"00{n}", name, "80331", tax="DE811234567" if n % 2 else None)
        for n, name in enumerate(
            [
                "Müller Maschinenbau GmbH",
                "MUELLER MASCHINENBAU GMBH",
                "Mueller Maschinenbau",
                "Müller Maschinenbau G.m.b.H.",
                "Muller Maschinenbau GmbH",
                "MÜLLER MASCHINENBAU",
            ]
        )
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(golden.ingest, records))
    assert len({r.global_id for r in results}) == 1
    assert sorted(r.outcome for r in results).count(IngestOutcome.NEW) == 1
    assert verify_audit(runtime.engine).ok
