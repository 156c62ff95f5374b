"""The golden record as onboarding uses it, on both backends: a new account is compared with
exactly the records ``q2c customers match``'s blocking would pair it with (the same block keys
and block limit as ``MatchIndex``); a steward task per doubtful account, decided same-as or new
(audited, one commit with the caller's event); a CRM merge moves the loser's customer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

from quote2cash.canonical import Address, Customer
from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.errors import ConflictError, DataError
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
from quote2cash.masterdata.match_index import MatchIndex
from quote2cash.masterdata.xref import Kind
from quote2cash.store.schema import audit_log, events, md_customer_blocks, md_customer_sources
from unit.masterdata.accounts_data import CONFIG

AT = datetime(2026, 11, 2, tzinfo=UTC)


def account(local_id: str, name: str, city: str, postal: str, *, tax: str | None = None):
    address = Address(line1="1 Main St", city=city, postal_code=postal, country="US")
    customer = Customer(name=name, address=address, tax_ids=(("us_ein", tax),) if tax else ())
    return CustomerCandidate("crm", local_id, customer, AT)


@pytest.fixture
def golden(runtime: Runtime, clock: ManualClock) -> GoldenCustomers:
    survivorship = load_survivorship(
        CONFIG / "survivorship.yaml", load_ownership(CONFIG / "ownership.yaml")
    )
    return GoldenCustomers(
        runtime.engine, load_matching(CONFIG / "matching.yaml"), survivorship, clock
    )


NAMES = [
    ("a1", "Marrowgate Logistics Inc", "Austin", "73301"),
    ("a2", "Marrowgate Logistic", "Austin", "73301"),
    ("a3", "Marrowgate Freight Partners", "Dallas", "75201"),
    ("a4", "Gate Logistics Holdings", "Austin", "73301"),
    ("a5", "Brightwater Assay", "Austin", "73302"),
    ("a6", "Unrelated Sundries LLC", "Dallas", "75201"),
]


def test_an_account_is_compared_with_what_the_batch_blocking_would_pair(
    golden: GoldenCustomers,
) -> None:
    index = MatchIndex(golden.matcher)
    for local_id, name, city, postal in NAMES:
        candidate = account(local_id, name, city, postal)
        keys = golden.matcher.keys(candidate)
        expected = {e.right for e in index.match(candidate.key, keys)}
        result = golden.ingest(candidate)
        found = {e.right for e in result.evidence}
        assert found == expected, (local_id, found, expected)
        index.add([candidate.key], [keys])
    assert {("crm", "a1")} <= {
        e.right for e in index.match(("crm", "x"), golden.matcher.keys(account("x", *NAMES[0][1:])))
    }


def test_a_crowded_block_is_not_compared(runtime: Runtime, golden: GoldenCustomers) -> None:
    """More than ``max_block_size`` records under one key: that key identifies nobody."""
    first = golden.ingest(account("c0", "Zephyrine Quartz Works", "Austin", "73301"))
    limit = golden.matcher.config.blocking.max_block_size
    with runtime.engine.begin() as conn:
        conn.execute(
            insert(md_customer_blocks),
            [
                {"block": "n:zephyrine", "system": "filler", "local_id": str(n)}
                for n in range(limit)
            ],
        )
    blocks = golden.matcher.config.blocking
    assert blocks.max_block_size == limit
    again = golden.ingest(account("c1", "Zephyrine", "Boston", "02108"))
    assert first.global_id != again.global_id
    assert again.outcome is IngestOutcome.NEW  # only shared "zephyrine", which is crowded


def test_blocks_are_built_for_records_filed_before_they_were_kept(
    runtime: Runtime, golden: GoldenCustomers
) -> None:
    known = golden.ingest(account("b1", "Marrowgate Logistics Inc", "Austin", "73301"))
    with runtime.engine.begin() as conn:
        conn.execute(md_customer_blocks.delete())
    joined = golden.ingest(account("b2", "Marrowgate Logistics", "Austin", "73301"))
    assert joined.outcome is IngestOutcome.AUTO_MATCH and joined.global_id == known.global_id
    with runtime.engine.connect() as conn:
        filed = set(conn.execute(select(md_customer_blocks.c.local_id)).scalars())
    assert filed == {"b1", "b2"}


def test_a_steward_task_is_decided_same_as_one_of_its_options(
    runtime: Runtime, golden: GoldenCustomers, clock: ManualClock
) -> None:
    known = golden.ingest(account("k1", "Marrowgate Logistics Inc", "Austin", "73301"))
    doubtful = golden.ingest(account("d1", "Marrowgate Logistics", "Dallas", "75201"))
    assert doubtful.outcome is IngestOutcome.REVIEW
    [task] = golden.tasks()
    assert golden.task("crm", "d1") == task
    assert (task.local_id, task.options, task.global_id) == (
        "d1",
        (known.global_id,),
        doubtful.global_id,
    )
    assert task.name == "Marrowgate Logistics" and task.opened_at == clock.now()
    assert json.loads(json.dumps(task.as_dict()))["reviews"][0]["evidence"]["outcome"] == "review"

    with pytest.raises(DataError, match=f"expected one of {known.global_id}"):
        golden.decide_task("crm", "d1", same_as=doubtful.global_id, actor="anna")
    with pytest.raises(ConflictError, match="no open steward task"):
        golden.decide_task("crm", "k1", same_as=None, actor="anna")

    def log_in_the_same_commit(conn: object) -> None:
        from quote2cash.engine.events import new_event

        runtime.log.append_in(conn, [new_event("t.decided", "s-1", {}, id="ev-1")])  # type: ignore[arg-type]

    decided = golden.decide_task(
        "crm",
        "d1",
        same_as=known.global_id,
        actor="anna",
        note="moved",
        also=log_in_the_same_commit,
    )
    assert decided.global_id == known.global_id and decided.merge is not None
    assert golden.tasks() == [] and golden.reviews(ReviewStatus.SAME)[0].decided_by == "anna"
    xrefs = XrefStore(runtime.engine)
    assert xrefs.global_id_for(Kind.CUSTOMER, "crm", "d1") == known.global_id
    with pytest.raises(ConflictError):
        golden.decide_task("crm", "d1", same_as=None, actor="ben")
    with runtime.engine.connect() as conn:
        assert conn.execute(select(events.c.event_id)).scalars().all() == ["ev-1"]
        details = conn.execute(
            select(audit_log.c.details).where(
                audit_log.c.action == "masterdata.steward_task.decided"
            )
        ).scalar_one()
    assert json.loads(details)["decision"] == "same" and json.loads(details)["note"] == "moved"
    assert verify_audit(runtime.engine).ok


def test_a_failed_commit_leaves_the_task_open(runtime: Runtime, golden: GoldenCustomers) -> None:
    golden.ingest(account("k1", "Marrowgate Logistics Inc", "Austin", "73301"))
    doubtful = golden.ingest(account("d1", "Marrowgate Logistics", "Dallas", "75201"))

    def fails(conn: object) -> None:
        raise RuntimeError("the event could not be logged")

    with pytest.raises(RuntimeError):
        golden.decide_task("crm", "d1", same_as=None, actor="anna", also=fails)
    assert golden.task("crm", "d1") is not None
    decided = golden.decide_task("crm", "d1", same_as=None, actor="anna")
    assert decided.merge is None and decided.global_id == doubtful.global_id
    assert golden.reviews(ReviewStatus.DIFFERENT)[0].candidate == ("crm", "d1")


def test_a_crm_merge_moves_the_losers_customer_to_the_survivors(
    runtime: Runtime, golden: GoldenCustomers, clock: ManualClock
) -> None:
    xrefs = XrefStore(runtime.engine, clock)
    kept = golden.ingest(account("s1", "Pinecrest Dental Group Inc", "Austin", "73301"))
    lost = golden.ingest(account("l1", "Unrelated Sundries LLC", "Dallas", "75201"))
    xrefs.link(kept.global_id, "erp", "P-1")
    xrefs.link(lost.global_id, "erp", "P-2")
    xrefs.link(lost.global_id, "billing", "cus_2")
    clock.advance(60)

    result = golden.crm_account_merged("crm", "l1", "s1", actor="crm-merge")
    assert result.survivor_global_id == kept.global_id and result.retired
    assert result.merged is not None and ("billing", "cus_2") in result.merged.moved
    assert xrefs.system_ids(kept.global_id) == {
        "crm": ("s1",),
        "erp": ("P-1", "P-2"),
        "billing": ("cus_2",),
    }
    assert xrefs.resolve(lost.global_id) == kept.global_id
    assert xrefs.global_id_for(Kind.CUSTOMER, "crm", "l1") is None
    with runtime.engine.connect() as conn:
        sources = set(conn.execute(select(md_customer_sources.c.local_id)).scalars())
    assert sources == {"s1"}
    again = golden.crm_account_merged("crm", "l1", "s1", actor="crm-merge")
    assert again.merged is None and not again.retired  # a repeat changes nothing
    assert verify_audit(runtime.engine).ok


def test_a_merge_into_an_account_the_hub_does_not_know_passes_the_customer_on(
    golden: GoldenCustomers, runtime: Runtime
) -> None:
    xrefs = XrefStore(runtime.engine)
    lost = golden.ingest(account("l1", "Harrier Freight Inc", "Austin", "73301"))
    result = golden.crm_account_merged("crm", "l1", "s9", actor="crm-merge")
    assert result.survivor_global_id == lost.global_id and result.merged is None
    assert xrefs.system_ids(lost.global_id) == {"crm": ("s9",)}
    nothing = golden.crm_account_merged("crm", "x1", "x2", actor="crm-merge")
    assert nothing.survivor_global_id is None and not nothing.retired
