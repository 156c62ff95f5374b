"""Partitioned audit chains: anchored into "main", verified as one root, forgeries named by chain.

Each forgery is made by a database writer without the audit key (on PostgreSQL one who switches
the guard off, support.forger) and caught by the CLI's `q2c audit verify` on both backends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.engine.audit import (
    ANCHOR_ACTION,
    MAIN_CHAIN,
    AuditEntry,
    _digest,
    anchor_chains,
    append_audit,
    read_head,
    worker_chain,
)
from quote2cash.engine.checkpoints import Checkpointer, checkpoint_now, run_sync
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.store.schema import audit_anchors, audit_head, audit_log
from support.forger import forging

runner = CliRunner()
A, B = worker_chain("a"), worker_chain("b")


@pytest.fixture
def checkpoint_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "outside" / "checkpoints.jsonl"
    monkeypatch.setenv("Q2C_AUDIT_CHECKPOINT_FILE", str(path))
    return path


@pytest.fixture
def hub(db_url: str, checkpoint_file: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = Runtime.open(db_url, clock=clock, sqlite_synchronous="NORMAL")
    yield rt
    rt.close()


def record(rt: Runtime, chain: str, count: int) -> None:
    entries = [
        AuditEntry("engine", "step.completed", f"{chain}-{i}", "corr-1", {"n": i})
        for i in range(count)
    ]
    with rt.engine.begin() as conn:
        append_audit(conn, entries, rt.clock.now(), chain=chain)


def anchor(rt: Runtime) -> int:
    with rt.engine.begin() as conn:
        return anchor_chains(conn, rt.clock.now())


def partitioned(rt: Runtime) -> None:
    """main 3, worker:a 4, worker:b 2, all anchored and checkpointed (main then holds 4)."""
    record(rt, MAIN_CHAIN, 3)
    record(rt, A, 4)
    record(rt, B, 2)
    checkpoint_now(rt)


def rows(rt: Runtime, chain: str) -> list[dict[str, Any]]:
    with rt.engine.connect() as conn:
        query = select(audit_log).where(audit_log.c.chain == chain).order_by(audit_log.c.seq)
        return [dict(r._mapping) for r in conn.execute(query)]


def verify(db_url: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["audit", "verify", "--db", db_url, "--format", "json"])
    return result.exit_code, json.loads(result.stdout)


def verify_line(db_url: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--db", db_url])
    return result.exit_code, " ".join(result.output.split())


def test_partitioned_log_verifies_with_counts_per_chain(hub: Runtime, db_url: str) -> None:
    partitioned(hub)
    code, report = verify(db_url)
    assert code == 0, report
    assert report["chains"] == {MAIN_CHAIN: 4, A: 4, B: 2}
    assert report["entries_verified"] == 10 and report["last_checkpoint_entry"] == 4
    code, line = verify_line(db_url)
    assert code == 0 and "10 entries verified in 3 chains (main 4, worker:a 4, worker:b 2)" in line


def test_each_chain_numbers_from_one_and_has_its_own_head(hub: Runtime) -> None:
    record(hub, A, 2)
    record(hub, B, 3)
    record(hub, A, 1)
    assert [r["seq"] for r in rows(hub, A)] == [1, 2, 3]
    assert [r["seq"] for r in rows(hub, B)] == [1, 2, 3]
    assert rows(hub, A)[0]["prev_hash"] == "0" * 64 == rows(hub, B)[0]["prev_hash"]
    with hub.engine.connect() as conn:
        head_a, head_b = read_head(conn, A), read_head(conn, B)
        ids = list(conn.execute(select(audit_log.c.id).order_by(audit_log.c.id)).scalars())
    assert head_a is not None and head_a.seq == 3 and head_a.hash == rows(hub, A)[-1]["hash"]
    assert head_b is not None and head_b.seq == 3 and head_b.hash == rows(hub, B)[-1]["hash"]
    assert len(ids) == len(set(ids)) == 6


def test_anchoring_names_moved_heads_once_and_is_a_no_op_when_nothing_moved(hub: Runtime) -> None:
    record(hub, A, 2)
    record(hub, B, 1)
    assert anchor(hub) == 2
    anchors = [r for r in rows(hub, MAIN_CHAIN) if r["action"] == ANCHOR_ACTION]
    assert len(anchors) == 1
    heads = json.loads(anchors[0]["details"])["heads"]
    assert heads == [
        {"chain": A, "seq": 2, "hash": rows(hub, A)[-1]["hash"]},
        {"chain": B, "seq": 1, "hash": rows(hub, B)[-1]["hash"]},
    ]
    main_before = len(rows(hub, MAIN_CHAIN))
    assert anchor(hub) == 0 and len(rows(hub, MAIN_CHAIN)) == main_before
    record(hub, B, 1)
    assert anchor(hub) == 1
    last = json.loads(rows(hub, MAIN_CHAIN)[-1]["details"])["heads"]
    assert last == [{"chain": B, "seq": 2, "hash": rows(hub, B)[-1]["hash"]}]
    with hub.engine.connect() as conn:
        cached = {r.chain: r.seq for r in conn.execute(select(audit_anchors))}
    assert cached == {A: 2, B: 2}


def test_the_checkpoint_tick_anchors_before_it_signs(hub: Runtime) -> None:
    record(hub, A, 3)
    checkpoint = run_sync(Checkpointer(hub, every_seconds=0).tick(force=True))
    assert checkpoint is not None
    main = rows(hub, MAIN_CHAIN)
    assert main[-1]["action"] == ANCHOR_ACTION and checkpoint.seq == main[-1]["seq"]
    assert checkpoint.hash == main[-1]["hash"]


def test_a_partition_chain_deleted_with_its_head_row_is_named_by_its_anchor(
    hub: Runtime, db_url: str
) -> None:
    partitioned(hub)
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log).where(audit_log.c.chain == A))
        conn.execute(delete(audit_head).where(audit_head.c.chain == A))
        conn.execute(delete(audit_anchors).where(audit_anchors.c.chain == A))
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == A and report["first_broken_entry"] == 1
    assert f"chain {A} is missing: main entry 4 anchored it at entry 4" in report["reason"]
    code, line = verify_line(db_url)
    assert code == 1 and f"broken at entry 1 of chain {A}" in line


def test_a_partition_chain_cut_back_with_its_head_reset_is_caught(
    hub: Runtime, db_url: str
) -> None:
    partitioned(hub)
    kept = rows(hub, A)[1]
    with forging(hub.engine) as conn:
        conn.execute(delete(audit_log).where(audit_log.c.chain == A, audit_log.c.seq > 2))
        conn.execute(
            update(audit_head).where(audit_head.c.chain == A).values(seq=2, hash=kept["hash"])
        )
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == A and report["first_broken_entry"] == 3
    assert "entries 3..4 were removed" in report["reason"]


def test_a_head_row_reset_to_an_earlier_point_is_caught(hub: Runtime, db_url: str) -> None:
    record(hub, A, 4)  # not anchored yet: the head row alone must match its chain
    first = rows(hub, A)[0]
    with forging(hub.engine) as conn:
        conn.execute(
            update(audit_head).where(audit_head.c.chain == A).values(seq=1, hash=first["hash"])
        )
    checkpoint_now(hub)  # the anchor now names the reset head, which is on the chain
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == A and report["first_broken_entry"] == 2
    assert (
        "head says 1 entries but the chain has 4 (head reset to an earlier point)"
        in (report["reason"])
    )


@pytest.mark.parametrize("target", [B, MAIN_CHAIN])
def test_an_entry_moved_to_another_chain_is_caught(hub: Runtime, db_url: str, target: str) -> None:
    """The moved entry was never anchored, and its old chain's head is set back to match."""
    partitioned(hub)
    record(hub, A, 1)
    moved, kept = rows(hub, A)[-1], rows(hub, A)[-2]
    dest = rows(hub, target)[-1]
    with forging(hub.engine) as conn:
        conn.execute(
            update(audit_head).where(audit_head.c.chain == A).values(seq=4, hash=kept["hash"])
        )
        conn.execute(
            update(audit_log)
            .where(audit_log.c.id == moved["id"])
            .values(chain=target, seq=dest["seq"] + 1, prev_hash=dest["hash"])
        )
        conn.execute(
            update(audit_head)
            .where(audit_head.c.chain == target)
            .values(seq=dest["seq"] + 1, hash=moved["hash"])
        )
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == target
    assert report["first_broken_entry"] == dest["seq"] + 1
    assert "does not match its signed hash" in report["reason"]


def test_an_edit_in_a_partition_chain_names_chain_and_entry(hub: Runtime, db_url: str) -> None:
    partitioned(hub)
    with forging(hub.engine) as conn:
        conn.execute(
            update(audit_log)
            .where(audit_log.c.chain == B, audit_log.c.seq == 2)
            .values(actor="omar")
        )
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == B and report["first_broken_entry"] == 2
    assert "edited" in report["reason"]
    assert report["chains"][MAIN_CHAIN] == 4 and report["chains"][A] == 4


def test_a_partition_chain_recomputed_without_the_key_is_caught(hub: Runtime, db_url: str) -> None:
    """The forger re-signs worker:a from entry 2 with a key of their own, head and anchor cache."""
    from quote2cash.engine.audit_key import AuditKey

    partitioned(hub)
    guess = AuditKey(b"a-key-the-forger-made-up")
    forged = rows(hub, A)
    prev = forged[0]["hash"]
    with forging(hub.engine) as conn:
        for row in forged[1:]:
            entry = AuditEntry("omar", row["action"], row["entity"], row["correlation_id"])
            digest = _digest(guess, prev, row["seq"], row["at"], entry, row["details"], A)
            conn.execute(
                update(audit_log)
                .where(audit_log.c.id == row["id"])
                .values(actor="omar", prev_hash=prev, hash=digest, key_id=hub.audit_key.key_id)
            )
            prev = digest
        conn.execute(update(audit_head).where(audit_head.c.chain == A).values(hash=prev))
        conn.execute(update(audit_anchors).where(audit_anchors.c.chain == A).values(hash=prev))
    code, report = verify(db_url)
    assert code == 1 and report["broken_chain"] == A and report["first_broken_entry"] == 2
    assert "edited" in report["reason"]


def test_postgres_guard_keeps_every_chain_head_moving_forward(hub: Runtime) -> None:
    if hub.engine.dialect.name != "postgresql":
        pytest.skip("the append-only guard is PostgreSQL's (SQLite has no roles)")
    record(hub, A, 3)
    refused = [
        f"UPDATE audit_head SET seq = 1 WHERE chain = '{A}'",
        f"UPDATE audit_head SET chain = 'worker:z' WHERE chain = '{A}'",
        f"DELETE FROM audit_head WHERE chain = '{A}'",
        f"UPDATE audit_log SET chain = '{B}' WHERE chain = '{A}'",
        f"DELETE FROM audit_log WHERE chain = '{A}'",
    ]
    for statement in refused:
        with (
            pytest.raises(DBAPIError, match=r"append-only|forward only|refused"),
            hub.engine.begin() as conn,
        ):
            conn.execute(text(statement))
    record(hub, A, 1)
    assert len(rows(hub, A)) == 4


def test_writers_of_different_chains_never_wait_on_each_other(
    pg_url: str, checkpoint_file: Path, clock: ManualClock
) -> None:
    """worker:a's transaction stays open holding its head; others commit within a lock timeout."""
    rt = Runtime.open(pg_url, clock=clock)
    try:
        record(rt, A, 1)
        record(rt, B, 1)
        holder = rt.engine.connect()
        held = holder.begin()
        append_audit(holder, [AuditEntry("engine", "step.completed", "held")], clock.now(), chain=A)
        try:
            for chain in (B, worker_chain("new"), MAIN_CHAIN):
                with rt.engine.begin() as conn:
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                    append_audit(
                        conn, [AuditEntry("engine", "x.done", chain)], clock.now(), chain=chain
                    )
            with rt.engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
                assert anchor_chains(conn, clock.now()) == 3  # a's committed head, b, new
            with (
                pytest.raises(DBAPIError, match="lock timeout"),
                rt.engine.begin() as conn,
            ):
                conn.exec_driver_sql("SET LOCAL lock_timeout = '300ms'")
                append_audit(conn, [AuditEntry("engine", "x.done", "same")], clock.now(), chain=A)
        finally:
            held.commit()
            holder.close()
        assert [r["entity"] for r in rows(rt, A)] == [f"{A}-0", "held"]
        assert len(rows(rt, B)) == 2 and len(rows(rt, worker_chain("new"))) == 1
        checkpoint_now(rt)
        code, report = verify(pg_url)
        assert code == 0, report
    finally:
        rt.close()


def test_verify_reads_one_snapshot_while_a_writer_appends(
    pg_url: str, checkpoint_file: Path, clock: ManualClock
) -> None:
    """Heads read first and entries read later agree: a live writer is no false alarm."""
    from quote2cash.engine.audit import verify_audit

    rt = Runtime.open(pg_url, clock=clock)
    try:
        for _ in range(4):
            record(rt, A, 100)
        stop = threading.Event()
        appended = 0

        def write() -> None:
            nonlocal appended
            while not stop.is_set():
                record(rt, A, 1)
                appended += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while appended < 3:
                time.sleep(0.01)
            before = appended
            result = verify_audit(rt.engine, batch=20)
            during = appended - before
        finally:
            stop.set()
            writer.join()
        assert result.ok, result
        assert during > 0, "the writer did not append while verify ran; nothing was shown"
    finally:
        rt.close()


def test_the_checkpoint_command_anchors_moved_chains(hub: Runtime, db_url: str) -> None:
    record(hub, A, 2)
    result = runner.invoke(app, ["audit", "checkpoint", "--db", db_url, "--format", "json"])
    assert result.exit_code == 0, result.output
    (written,) = json.loads(result.stdout)
    main = rows(hub, MAIN_CHAIN)
    assert main[-1]["action"] == ANCHOR_ACTION
    assert written["seq"] == main[-1]["seq"] and written["hash"] == main[-1]["hash"]
    assert json.loads(main[-1]["details"])["heads"] == [
        {"chain": A, "seq": 2, "hash": rows(hub, A)[-1]["hash"]}
    ]
