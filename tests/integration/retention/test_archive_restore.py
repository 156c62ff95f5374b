"""Retention on a real store (SQLite and PostgreSQL) and real files: what is archived, what
stays, the files' modes, a round trip that puts back the very rows, and tampering refused."""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from quote2cash.engine.audit import AuditEntry, append_audit, verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.events import new_event
from quote2cash.engine.queries import list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.engine.worker import Worker
from quote2cash.retention import archive as archive_module
from quote2cash.retention.archive import ArchiveError, run_archive
from quote2cash.retention.manifest import manifest_path
from quote2cash.retention.policy import RetentionPolicy
from quote2cash.retention.restore import RestoreError, list_runs, restore_archive
from quote2cash.store.schema import audit_log, event_state, events, failures, steps, subjects
from support.retention_handlers import registry

POLICY = RetentionPolicy(finance_days=3650, other_days=90)


def day(clock: ManualClock, days_ago: float) -> Any:
    return clock.now() - timedelta(days=days_ago)


def append(rt: Runtime, type_: str, subject: str, id_: str, days_ago: float) -> None:
    rt.log.append(
        new_event(type_, subject, {"n": id_}, id=id_, correlation_id=f"c-{subject}",
                  time=day(rt.clock, days_ago))
    )  # fmt: skip


def statuses(rt: Runtime) -> dict[str, str]:
    return {e.id: e.status for e in list_events(rt, limit=1000)}


def rows_of(rt: Runtime, table: Any, key: Any) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(key))]


async def test_boundaries_per_class_and_unfinished_work_stay(
    runtime: Runtime, tmp_path: Path
) -> None:
    append(runtime, "crm.account.updated", "acct-1", "other-old", 90.01)
    append(runtime, "crm.account.updated", "acct-2", "other-young", 89.99)
    append(runtime, "billing.invoice.finalized", "inv-1", "finance-old", 3650.01)
    append(runtime, "billing.invoice.finalized", "inv-2", "finance-young", 3649.99)
    append(runtime, "crm.opportunity.closed_won", "deal-1", "deal-kept", 9000)
    append(runtime, "crm.account.updated", "broken-1", "failed-old", 400)
    append(runtime, "crm.account.updated", "acct-3", "front-old", 400)
    await Worker(runtime, registry).drain()
    append(runtime, "crm.account.updated", "acct-3", "pending-old", 400)
    assert statuses(runtime)["failed-old"] == "exception"

    folder = tmp_path / "archive"
    dry = run_archive(runtime, folder, POLICY, dry_run=True)
    assert (dry.events, dry.by_class) == (3, {"other": 2, "finance": 1})
    assert not folder.exists() and len(statuses(runtime)) == 8

    report = run_archive(runtime, folder, POLICY)
    assert report.events == 3 and report.steps == 3
    left = statuses(runtime)
    assert sorted(left) == [
        "deal-kept", "failed-old", "finance-young", "other-young", "pending-old",
    ]  # fmt: skip
    assert left["failed-old"] == "exception" and left["pending-old"] == "pending"
    assert run_archive(runtime, folder, POLICY).events == 0
    await Worker(runtime, registry).drain()  # the subject goes on after its archived front
    [after] = list_events(runtime, subject="acct-3")
    assert (after.id, after.sequence, after.status) == ("pending-old", 2, "done")

    forever = RetentionPolicy(finance_days=0, other_days=0)
    assert forever.cutoffs(runtime.clock.now()) == {"finance": None, "other": None}
    assert run_archive(runtime, folder, forever).events == 0
    assert verify_audit(runtime.engine).ok


async def test_before_only_narrows_the_class_cutoffs(runtime: Runtime, tmp_path: Path) -> None:
    append(runtime, "crm.account.updated", "acct-1", "a300", 300)
    append(runtime, "crm.account.updated", "acct-2", "a100", 100)
    append(runtime, "billing.invoice.finalized", "inv-1", "f300", 300)
    await Worker(runtime, registry).drain()
    report = run_archive(runtime, tmp_path / "a", POLICY, before=day(runtime.clock, 200))
    assert report.events == 1  # a300; f300 is inside its ten years whatever --before says
    assert report.cutoffs["other"] == day(runtime.clock, 200)
    assert report.cutoffs["finance"] == day(runtime.clock, 3650)
    assert sorted(statuses(runtime)) == ["a100", "f300"]


async def test_events_behind_unfinished_work_of_their_subject_stay(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A subject's done events after a failed one cannot exist, but a parked one lets later
    events finish: the front rule keeps everything behind it."""
    append(runtime, "crm.account.updated", "acct-7", "first", 200)
    await Worker(runtime, registry).drain()
    append(runtime, "crm.account.updated", "acct-7", "second", 199)
    with runtime.engine.begin() as conn:
        second = conn.execute(select(events.c.pos).where(events.c.event_id == "second")).scalar()
        conn.execute(
            event_state.update().where(event_state.c.pos == second).values(status="parked")
        )
        third = conn.execute(
            events.insert().values(
                event_id="third", source="q2c", type="crm.account.updated", subject="acct-7",
                time=day(runtime.clock, 198), correlation_id="c", sequence=3, data="{}",
                recorded_at=runtime.clock.now(),
            ).returning(events.c.pos)
        ).scalar_one()  # fmt: skip
        conn.execute(event_state.insert().values(pos=third, subject="acct-7", status="done"))
    report = run_archive(runtime, tmp_path / "a", POLICY)
    assert report.events == 1
    assert sorted(statuses(runtime)) == ["second", "third"]


async def test_round_trip_puts_back_the_same_rows_and_audit_stays_verifiable(
    runtime: Runtime, tmp_path: Path
) -> None:
    for i in range(5):
        append(runtime, "billing.payment.succeeded", f"pay-{i % 2}", f"p{i}", 4000 - i)
    append(runtime, "billing.payment.succeeded", "flaky-1", f"flaky-{uuid.uuid4()}", 3900)
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    runtime.clock.advance(3600)  # type: ignore[attr-defined]
    await Worker(runtime, registry).drain()
    assert set(statuses(runtime).values()) == {"done"}
    before = (
        rows_of(runtime, events, events.c.pos),
        rows_of(runtime, event_state, event_state.c.pos),
        rows_of(runtime, steps, steps.c.event_pos),
        rows_of(runtime, failures, failures.c.id),
    )
    assert verify_audit(runtime.engine).ok

    report = run_archive(runtime, tmp_path / "archive", POLICY)
    assert report.events == 6 and report.failures == 1
    assert report.run_id is not None and report.file is not None
    assert [r["event_id"] for r in rows_of(runtime, events, events.c.pos)] == ["recent"]
    assert verify_audit(runtime.engine).ok
    path = tmp_path / "archive" / report.file
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["rows"] == {"events": 6, "steps": 6, "failures": 1}
    assert manifest["pos"] == {"min": before[0][0]["pos"], "max": before[0][-2]["pos"]}
    assert all(e["class"] == "finance" and e["audit"] for e in manifest["events"])

    restored = restore_archive(runtime, path)
    assert restored.events == 6 and restored.audit_entries_checked >= 6
    after = (
        rows_of(runtime, events, events.c.pos),
        rows_of(runtime, event_state, event_state.c.pos),
        rows_of(runtime, steps, steps.c.event_pos),
        rows_of(runtime, failures, failures.c.id),
    )
    assert after == before
    assert verify_audit(runtime.engine).ok
    [run] = list_runs(runtime)
    assert run.restored_at == runtime.clock.now()
    with pytest.raises(RestoreError, match="was restored"):
        restore_archive(runtime, path)


async def test_files_are_private_and_tampering_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    append(runtime, "billing.refund.created", "ref-1", "r1", 4000)
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    folder = tmp_path / "archive"
    report = run_archive(runtime, folder, POLICY)
    assert report.file is not None
    path = folder / report.file
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for f in (path, manifest_path(path)):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600

    original = path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))
    with pytest.raises(RestoreError) as refused:
        restore_archive(runtime, path)
    assert str(path) in str(refused.value)
    assert "does not match the manifest" in str(refused.value)

    # An edited manifest that vouches for the edited file is caught by the store's record.
    mpath = manifest_path(path)
    manifest = json.loads(mpath.read_text())
    import hashlib

    manifest["sha256"] = hashlib.sha256(bytes(tampered)).hexdigest()
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(RestoreError, match="the manifest was changed"):
        restore_archive(runtime, path)
    assert [e.id for e in list_events(runtime)] == ["recent"]


async def test_appending_after_archiving_keeps_the_subject_sequence(
    runtime: Runtime, tmp_path: Path
) -> None:
    for i in range(3):
        append(runtime, "crm.account.updated", "acct-9", f"old-{i}", 500 - i)
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    assert run_archive(runtime, tmp_path / "a", POLICY).events == 3
    append(runtime, "crm.account.updated", "acct-9", "new", 0)
    await Worker(runtime, registry).drain()
    [row] = list_events(runtime, subject="acct-9")
    assert (row.id, row.sequence, row.status) == ("new", 4, "done")
    with runtime.engine.connect() as conn:
        last = conn.execute(
            select(subjects.c.last_sequence).where(subjects.c.subject == "acct-9")
        ).scalar_one()
    assert last == 4


async def test_every_audit_entry_naming_the_event_goes_into_the_manifest(
    runtime: Runtime, tmp_path: Path
) -> None:
    append(runtime, "crm.account.updated", "acct-5", "e5", 300)
    append(runtime, "crm.account.updated", "acct-6", "e6", 1)
    await Worker(runtime, registry).drain()
    [pos] = [e.pos for e in list_events(runtime) if e.id == "e5"]
    entries = [
        AuditEntry("olga", "event.retried", f"event:{pos}", "elsewhere", {"event_id": "e5"}),
        AuditEntry("olga", "quarantine.released", "quarantine:1", None, {"event_id": "e5"}),
        AuditEntry("olga", "quarantine.released", "quarantine:2", None, {"event_id": "e6"}),
        AuditEntry("olga", "operator.added", "olga", None, {"roles": ["operator"]}),
    ]
    with runtime.engine.begin() as conn:
        append_audit(conn, entries, runtime.clock.now())
    with runtime.engine.connect() as conn:
        by_event: dict[str, list[int]] = {}
        for s, d in conn.execute(select(audit_log.c.id, audit_log.c.details)):
            if json.loads(d).get("event_id"):
                by_event.setdefault(json.loads(d)["event_id"], []).append(s)
    report = run_archive(runtime, tmp_path / "a", POLICY)
    assert report.events == 1 and report.file is not None
    manifest = json.loads(manifest_path(tmp_path / "a" / report.file).read_text())
    [archived] = manifest["events"]
    assert [a["id"] for a in archived["audit"]] == by_event["e5"]
    assert len(by_event["e5"]) == 3  # its step, the retry, the quarantine release


async def test_concurrent_runs_archive_each_event_once(runtime: Runtime, tmp_path: Path) -> None:
    """Two hub processes' schedules firing together: whatever the interleaving, each event is
    in exactly one recorded run's file, a run that lost leaves no file, the chain verifies."""
    rt_events = [
        new_event("crm.account.updated", f"acct-{i % 50}", id=f"c{i}", time=day(runtime.clock, 200))
        for i in range(1500)
    ]
    runtime.log.append_many(rt_events)
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    folder = tmp_path / "a"
    outcomes: list[object] = []

    def one_run() -> None:
        try:
            outcomes.append(run_archive(runtime, folder, POLICY))
        except ArchiveError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    runs = list_runs(runtime)
    assert sum(r.events for r in runs) == 1500
    assert [e.id for e in list_events(runtime)] == ["recent"]
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(r.file for r in runs)
    assert not list(folder.glob("*.partial"))
    assert verify_audit(runtime.engine).ok
    assert len(outcomes) == 2


async def test_a_run_reads_in_pages_and_stops_at_its_limit(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_module, "PAGE", 10)
    old = day(runtime.clock, 4000)
    runtime.log.append_many(
        [new_event("billing.invoice.paid", f"inv-{i % 4}", id=f"i{i}", time=old) for i in range(25)]
    )
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    first = run_archive(runtime, tmp_path / "a", POLICY, limit=22)
    assert (first.events, first.steps, first.more) == (22, 22, True)
    second = run_archive(runtime, tmp_path / "a", POLICY, limit=22)
    assert (second.events, second.more) == (3, False)
    assert first.pos_max is not None and second.pos_min is not None
    assert first.pos_max < second.pos_min
    manifest = json.loads(manifest_path(tmp_path / "a" / str(first.file)).read_text())
    assert len(manifest["events"]) == 22 and all(e["audit"] for e in manifest["events"])


async def test_the_newest_event_stays_so_no_position_is_given_again(
    runtime: Runtime, tmp_path: Path
) -> None:
    """SQLite numbers a new row after the largest left: were the newest event archived, the
    next one would take its pos (and its restore would clash)."""
    for i in range(3):
        append(runtime, "crm.account.updated", f"acct-{i}", f"old-{i}", 500)
    await Worker(runtime, registry).drain()
    report = run_archive(runtime, tmp_path / "a", POLICY)
    assert report.events == 2 and [e.id for e in list_events(runtime)] == ["old-2"]
    append(runtime, "crm.account.updated", "acct-0", "new", 0)
    assert report.pos_max is not None
    assert all(e.pos > report.pos_max for e in list_events(runtime))
    assert report.file is not None
    assert restore_archive(runtime, tmp_path / "a" / report.file).events == 2
    assert verify_audit(runtime.engine).ok


async def test_restore_refuses_an_event_the_store_holds_again(
    runtime: Runtime, tmp_path: Path
) -> None:
    append(runtime, "crm.account.updated", "acct-1", "twice", 300)
    append(runtime, "crm.account.updated", "acct-0", "recent", 0)
    await Worker(runtime, registry).drain()
    report = run_archive(runtime, tmp_path / "a", POLICY)
    assert report.events == 1 and report.file is not None
    append(runtime, "crm.account.updated", "acct-1", "twice", 1)  # redelivered after archiving
    with pytest.raises(RestoreError, match="event q2c/twice is already in the store"):
        restore_archive(runtime, tmp_path / "a" / report.file)
