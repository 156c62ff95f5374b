"""Usage intake against a real store (SQLite and PostgreSQL): validation rules, deduplication
against all history, corrections, quarantine, receipts, aggregates and events."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import audit_log, events, usage_batches, usage_quarantine
from quote2cash.usage.intake import BATCH_ACCEPTED, UsageIntake
from quote2cash.usage.ledger import SqlUsageLedger
from quote2cash.usage.quarantine import UsageQuarantine, UsageQuarantineError
from support.identity import first_admin, new_operator, via_token
from support.usage_files import RAGGED_CSV
from support.usage_terms import log_subscription

MARCH = datetime(2026, 3, 15, tzinfo=UTC)


def rec(rid: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": rid,
        "subscription": "C-1",
        "meter": "api_calls",
        "quantity": "5",
        "unit": "call",
        "timestamp": "2026-03-20T10:00:00Z",
    }
    row.update(over)
    return {k: v for k, v in row.items() if v is not None}


@pytest.fixture
def sub(runtime: Runtime) -> str:
    return log_subscription(runtime, current_period_start=MARCH)


def quarantined(runtime: Runtime) -> list[Any]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(select(usage_quarantine).order_by(usage_quarantine.c.id)))


RULES = [
    ("unknown subscription", rec("r1", subscription="C-404"), "subscription", "'C-404'"),
    ("no reference", rec("r1", subscription=None), "subscription", "is missing"),
    ("unknown customer", rec("r1", subscription=None, customer="cus_x"), "customer", "cus_x"),
    ("no meter", rec("r1", meter=None), "meter", "is missing"),
    ("meter not on items", rec("r1", meter="storage_gb"), "meter", "not on subscription"),
    ("licensed item is no meter", rec("r1", meter="price_seat"), "meter", "expected one of"),
    ("non-numeric", rec("r1", quantity="12abc"), "quantity", "expected a decimal number"),
    ("no quantity", rec("r1", quantity=None), "quantity", "missing"),
    ("negative", rec("r1", quantity="-3"), "quantity", "expected zero or more"),
    ("too precise", rec("r1", quantity="1.0000000000001"), "quantity", "decimal places"),
    ("wrong unit", rec("r1", unit="GB"), "unit", "expected 'call'"),
    ("naive time", rec("r1", timestamp="2026-03-20T10:00:00"), "timestamp", "with a zone"),
    ("bad time", rec("r1", timestamp="yesterday"), "timestamp", "ISO 8601"),
    ("before service", rec("r1", timestamp="2026-01-01T00:00:00Z"), "timestamp", "outside"),
    ("future", rec("r1", timestamp="2027-01-01T00:00:00Z"), "timestamp", "future"),
    ("properties", rec("r1", properties="[1, 2]"), "properties", "JSON object"),
    ("no id", rec("", quantity="1"), "id", "is missing"),
    ("long id", rec("x" * 300), "id", "at most 255"),
]


@pytest.mark.parametrize(("name", "row", "field", "says"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_quarantines_naming_record_field_and_expectation(
    runtime: Runtime,
    intake: UsageIntake,
    sub: str,
    name: str,
    row: dict[str, Any],
    field: str,
    says: str,
) -> None:
    good = rec("ok-1")
    receipt = intake.ingest_rows([good, row], source="meterd", actor="alice")
    assert (receipt.accepted, receipt.quarantined, receipt.duplicate) == (1, 1, 0)
    [q] = quarantined(runtime)
    assert q.field == field
    assert says in q.reason
    assert f"field '{field}'" in q.reason
    if row.get("id"):
        assert f"record '{row['id'][:200]}" in q.reason  # a long value is cut at 200
    assert json.loads(q.raw)["quantity"] == row.get("quantity")


def test_malformed_rows_are_kept_not_dropped(
    runtime: Runtime, intake: UsageIntake, sub: str
) -> None:
    receipt = intake.ingest_rows([rec("a"), 42, "text"], source="s", actor="alice")  # type: ignore[list-item]
    assert (receipt.records, receipt.accepted, receipt.quarantined) == (3, 1, 2)
    assert {q.field for q in quarantined(runtime)} == {"row"}


def test_ended_subscription_refuses_usage_after_its_end(
    runtime: Runtime, intake: UsageIntake
) -> None:
    log_subscription(runtime, "sub_2", contract="C-2", ended_at=datetime(2026, 3, 18, tzinfo=UTC))
    receipt = intake.ingest_rows(
        [
            rec("a", subscription="C-2", timestamp="2026-03-17T00:00:00Z"),
            rec("b", subscription="C-2", timestamp="2026-03-19T00:00:00Z"),
        ],
        source="s",
        actor="alice",
    )
    assert (receipt.accepted, receipt.quarantined) == (1, 1)
    assert "outside the subscription's service" in quarantined(runtime)[0].reason


def test_a_subscription_on_a_test_clock_takes_usage_dated_by_that_clock(
    runtime: Runtime, intake: UsageIntake
) -> None:
    """Billing's simulated clock runs ahead of the hub's, and the hub's snapshot of the
    subscription can lag it (a renewal not heard of yet): usage dated by it is not "in the
    future", inside the snapshot's current period or past it; a subscription on real time keeps
    the hub's clock as the bound."""
    # the hub's clock (the intake fixture's) says 2026-04-01; the period runs March 15 - April 15
    log_subscription(
        runtime, "sub_tc", contract="C-TC", current_period_start=MARCH, test_clock="clock_1"
    )
    log_subscription(runtime, "sub_rt", contract="C-RT", current_period_start=MARCH)
    receipt = intake.ingest_rows(
        [
            rec("ahead", subscription="C-TC", timestamp="2026-04-10T00:00:00Z"),
            rec("beyond", subscription="C-TC", timestamp="2026-06-20T00:00:00Z"),
            rec("real", subscription="C-RT", timestamp="2026-04-10T00:00:00Z"),
        ],
        source="s",
        actor="alice",
    )
    assert (receipt.accepted, receipt.quarantined) == (2, 1)
    refused = {row.record_id: row.reason for row in quarantined(runtime)}
    assert set(refused) == {"real"}
    assert "not in the future" in refused["real"]


def test_closed_period_adjust_counts_it_in_the_open_period(
    runtime: Runtime, intake: UsageIntake, ledger: SqlUsageLedger, sub: str
) -> None:
    receipt = intake.ingest_rows(
        [rec("late", timestamp="2026-02-20T00:00:00Z")], source="s", actor="a"
    )
    assert receipt.accepted == 1
    [agg] = ledger.pending_aggregates()
    assert agg.period_start == MARCH
    [record] = ledger.records_of(agg.aggregate_id)
    assert record.timestamp == datetime(2026, 2, 20, tzinfo=UTC)


def test_closed_period_reject_policy_quarantines(
    runtime: Runtime, usage_dir: Path, clock: ManualClock, sub: str
) -> None:
    intake = UsageIntake(runtime.engine, usage_dir, policy="reject", clock=clock)
    try:
        receipt = intake.ingest_rows(
            [rec("late", timestamp="2026-02-20T00:00:00Z")], source="s", actor="a"
        )
    finally:
        intake.close()
    assert receipt.quarantined == 1
    [q] = quarantined(runtime)
    assert "closed billing period 2026-02-15 to 2026-03-15" in q.reason


def test_customer_reference_resolves_to_its_metered_subscription(
    runtime: Runtime, intake: UsageIntake, ledger: SqlUsageLedger, sub: str
) -> None:
    receipt = intake.ingest_rows(
        [rec("c1", subscription=None, customer="cus_1", meter="mtr_api_calls")],
        source="s",
        actor="a",
    )
    assert receipt.accepted == 1
    [agg] = ledger.pending_aggregates()
    assert (agg.subscription, agg.meter) == (sub, "api_calls")


def test_duplicates_within_a_batch_across_batches_and_restarts(
    runtime: Runtime, usage_dir: Path, clock: ManualClock, ledger: SqlUsageLedger, sub: str
) -> None:
    first = UsageIntake(runtime.engine, usage_dir, clock=clock)
    r1 = first.ingest_rows([rec("a"), rec("b"), rec("a")], source="s", actor="a")
    assert (r1.accepted, r1.duplicate) == (2, 1)
    r2 = first.ingest_rows([rec("a"), rec("c")], source="s", actor="a")
    assert (r2.accepted, r2.duplicate) == (1, 1)
    # the same id from another source is another record
    r3 = first.ingest_rows([rec("a")], source="other", actor="a")
    assert r3.accepted == 1
    first.close()
    again = UsageIntake(runtime.engine, usage_dir, clock=clock)  # a restart
    r4 = again.ingest_rows([rec("a"), rec("b"), rec("c"), rec("d")], source="s", actor="a")
    assert (r4.accepted, r4.duplicate) == (1, 3)
    again.close()
    # the key index is derived: lost, it is rebuilt from the ledger and still knows everything
    for path in (usage_dir / "index").iterdir():
        path.unlink()
    rebuilt = UsageIntake(runtime.engine, usage_dir, clock=clock)
    r5 = rebuilt.ingest_rows([rec("a"), rec("d"), rec("e")], source="s", actor="a")
    rebuilt.close()
    assert (r5.accepted, r5.duplicate) == (1, 2)
    [agg] = ledger.pending_aggregates()
    assert agg.record_count == 6  # s:a b c d e + other:a
    assert agg.quantity == Decimal(30)


def test_same_id_new_values_is_a_conflict_unless_a_correction(
    runtime: Runtime, intake: UsageIntake, ledger: SqlUsageLedger, sub: str
) -> None:
    intake.ingest_rows([rec("a"), rec("b", quantity="2")], source="s", actor="alice")
    refused = intake.ingest_rows([rec("a", quantity="9")], source="s", actor="alice")
    assert (refused.quarantined, refused.corrected) == (1, 0)
    assert "send it with corrections" in quarantined(runtime)[0].reason
    assert ledger.ingested_total(sub, "api_calls", MARCH) == Decimal(7)
    fixed = intake.ingest_rows(
        [rec("a", quantity="9")], source="s", actor="alice", corrections=True
    )
    assert (fixed.corrected, fixed.accepted) == (1, 0)
    flagged = intake.ingest_rows([rec("b", quantity="3", correction=True)], source="s", actor="bob")
    assert flagged.corrected == 1
    assert ledger.ingested_total(sub, "api_calls", MARCH) == Decimal(12)
    [agg] = ledger.pending_aggregates()
    records = {r.record_id: r for r in ledger.records_of(agg.aggregate_id)}
    assert (records["a"].quantity, records["a"].revision) == (Decimal(9), 2)
    assert agg.record_count == 2
    with runtime.engine.connect() as conn:
        audits = list(
            conn.execute(select(audit_log).where(audit_log.c.action == "usage.record.corrected"))
        )
    assert [a.entity for a in audits] == ["s:a", "s:b"]
    assert json.loads(audits[0].details)["previous"]["quantity"].startswith("5")
    # re-sending the corrected values is a duplicate now, the old ones a conflict again
    again = intake.ingest_rows([rec("a", quantity="9"), rec("a2")], source="s", actor="a")
    assert (again.duplicate, again.accepted) == (1, 1)


def test_quarantined_record_corrected_and_resubmitted_flows_through(
    runtime: Runtime, intake: UsageIntake, ledger: SqlUsageLedger, sub: str
) -> None:
    receipt = intake.ingest_rows(
        [rec("a", quantity="1O"), rec("b", meter="nope")], source="s", actor="a"
    )
    assert receipt.quarantined == 2
    q = UsageQuarantine(intake)
    held = q.records()
    admin = first_admin(runtime)
    viewer = new_operator(runtime, admin, "vic", "viewer")
    with pytest.raises(UsageQuarantineError, match="needs the operator role"):
        q.correct(held[0].id, {"quantity": "10"}, by=viewer)
    operator = via_token(runtime, new_operator(runtime, admin, "olga", "operator"))
    q.correct(held[0].id, {"quantity": "10"}, by=operator, note="typo O for 0")
    with pytest.raises(UsageQuarantineError, match="cannot be corrected"):
        q.correct(held[0].id, {"id": "z"}, by=operator)
    [back] = q.resubmit([held[0].id, held[1].id], by=operator)
    assert (back.accepted, back.quarantined, back.submitted_by) == (1, 1, "olga")
    after = {r.id: r for r in q.records(status=None)}
    assert after[held[0].id].status == "resubmitted"
    assert after[held[0].id].resubmitted_batch == back.batch_id
    assert after[held[1].id].status == "held"  # failed again: still one entry, still held
    assert len(after) == 2
    assert ledger.ingested_total(sub, "api_calls", MARCH) == Decimal(10)
    with pytest.raises(UsageQuarantineError, match="not held"):
        q.resubmit([held[0].id], by=operator)


def test_receipt_audit_and_event_per_batch(runtime: Runtime, intake: UsageIntake, sub: str) -> None:
    receipt = intake.ingest_rows([rec("a"), rec("b", quantity="x")], source="s", actor="alice")
    with runtime.engine.connect() as conn:
        row = conn.execute(select(usage_batches)).one()
        audit = conn.execute(
            select(audit_log).where(audit_log.c.action == "usage.batch.received")
        ).one()
        event = conn.execute(select(events).where(events.c.type == BATCH_ACCEPTED)).one()
    assert (row.batch_id, row.accepted, row.quarantined, row.submitted_by) == (
        receipt.batch_id,
        1,
        1,
        "alice",
    )
    assert len(row.content_sha256) == 64
    assert audit.entity == receipt.batch_id and audit.correlation_id == receipt.correlation_id
    assert json.loads(audit.details)["content_sha256"] == row.content_sha256
    assert event.subject == "contract:C-1"
    assert event.correlation_id == receipt.correlation_id
    assert json.loads(event.data)["batch_id"] == receipt.batch_id
    ledger_file = intake.ledger_dir / str(row.ledger_file)
    assert ledger_file.stat().st_mode & 0o777 == 0o600


def test_aggregate_handed_to_posting_gets_a_new_version_for_late_records(
    runtime: Runtime, intake: UsageIntake, ledger: SqlUsageLedger, sub: str
) -> None:
    intake.ingest_rows([rec("a"), rec("b")], source="s", actor="a")
    [v1] = ledger.pending_aggregates()
    assert ledger.mark_handed([v1.aggregate_id], datetime(2026, 4, 1, tzinfo=UTC)) == 1
    assert ledger.pending_aggregates() == []
    intake.ingest_rows([rec("c", quantity="2.25")], source="s", actor="a")
    [v2] = ledger.pending_aggregates()
    assert (v2.version, v2.quantity, v2.record_count) == (2, Decimal("12.25"), 3)
    assert v2.aggregate_id != v1.aggregate_id
    assert [r.record_id for r in ledger.records_of(v1.aggregate_id)] == ["a", "b"]
    assert [r.record_id for r in ledger.records_of(v2.aggregate_id)] == ["a", "b", "c"]
    assert sum(r.quantity for r in ledger.records_of(v2.aggregate_id)) == v2.quantity


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> Path:
    if fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_files_in_each_format_stream_in_chunks(
    runtime: Runtime,
    usage_dir: Path,
    clock: ManualClock,
    ledger: SqlUsageLedger,
    sub: str,
    tmp_path: Path,
    fmt: str,
) -> None:
    rows = [rec(f"r{i}", quantity=str(i)) for i in range(25)]
    rows[3]["quantity"] = "lots"
    path = _write(tmp_path / f"usage.{fmt}", rows, fmt)
    intake = UsageIntake(runtime.engine, usage_dir, clock=clock, chunk_rows=10)
    try:
        receipts = intake.ingest_file(path, source="files", actor="a")
        assert len(receipts) >= 3
        assert sum(r.accepted for r in receipts) == 24
        expected_bad = 2 if fmt == "jsonl" else 1
        assert sum(r.quarantined for r in receipts) == expected_bad
        assert len({r.content_sha256 for r in receipts}) == 1
        again = intake.ingest_file(path, source="files", actor="a")
        assert sum(r.duplicate for r in again) == 24
        assert sum(r.accepted for r in again) == 0
    finally:
        intake.close()
    assert ledger.ingested_total(sub, "api_calls", MARCH) == Decimal(sum(range(25)) - 3)


def test_unreadable_csv_rows_are_quarantined_not_dropped(
    runtime: Runtime, intake: UsageIntake, sub: str, tmp_path: Path
) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(RAGGED_CSV)
    receipts = intake.ingest_file(path, source="files", actor="a")
    assert sum(r.records for r in receipts) == 4
    assert sum(r.accepted for r in receipts) == 2
    rows = quarantined(runtime)
    assert [q.field for q in rows] == ["row", "row"]
    assert "Expected Number of Columns" in rows[0].reason and "b,C-1" in rows[0].reason


def test_jsonl_text_that_is_not_utf8_is_quarantined_not_a_crash(
    runtime: Runtime, intake: UsageIntake, sub: str, tmp_path: Path
) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text(
        json.dumps(rec("a"))
        + "\n"
        + '{"id": "\\ud800", "subscription": "C-1", "meter": "\\ud800"}\n',
        encoding="utf-8",
    )
    receipts = intake.ingest_file(path, source="files", actor="a")
    assert (sum(r.accepted for r in receipts), sum(r.quarantined for r in receipts)) == (1, 1)
    [q] = quarantined(runtime)
    assert q.field == "meter"
