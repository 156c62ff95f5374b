"""The dispatcher's load of pending work (``dispatch_sql.load_pending``): a prefix of each claimed
subject's pending events, in log order, as many as the batch's limit allows while work waits,
whatever was processed before it or waits behind it; one busy subject can still fill a batch."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from quote2cash.engine import dispatch_sql as sql
from quote2cash.engine.events import new_event
from quote2cash.engine.runtime import Runtime


def _store(db_url: str, counts: dict[str, int], seed: int) -> Runtime:
    """Events for each subject, interleaved in a random order (so a subject's positions are not
    contiguous), appended in batches as intake does."""
    rt = Runtime.open(db_url)
    order = [s for s, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(order)
    for i in range(0, len(order), 500):
        rt.log.append_many(
            [
                new_event("test.item.changed", s, {"i": i + j})
                for j, s in enumerate(order[i : i + 500])
            ]
        )
    return rt


def _pending(rt: Runtime, subject: str) -> list[int]:
    with rt.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pos FROM event_state WHERE subject = :s AND status = 'pending' ORDER BY pos"
            ),
            {"s": subject},
        )
        return [int(r[0]) for r in rows]


def _check(rt: Runtime, claimed: list[str], limit: int) -> list[tuple[int, str]]:
    with rt.engine.connect() as conn:
        rows = sql.load_pending(conn, claimed, limit, rt.engine.dialect.name == "postgresql")
    loaded = [(int(r[0]), str(r[4])) for r in rows]
    assert len(loaded) <= limit
    assert [p for p, _ in loaded] == sorted(p for p, _ in loaded), "not in log order"
    assert {s for _, s in loaded} <= set(claimed), "a subject that was not claimed"
    for subject in claimed:
        mine = [p for p, s in loaded if s == subject]
        assert mine == _pending(rt, subject)[: len(mine)], f"{subject}: not a prefix of its pending"
    waiting = sum(len(_pending(rt, s)) for s in claimed)
    assert len(loaded) == min(limit, waiting), "the batch not filled while work was waiting"
    return loaded


def test_a_load_is_each_subjects_pending_prefix_after_processed_history(db_url: str) -> None:
    counts = {f"sub-{i}": 12 for i in range(40)}
    rt = _store(db_url, counts, seed=1)
    with rt.engine.begin() as conn:  # the first 300 positions processed (a prefix per subject)
        conn.execute(text("UPDATE event_state SET status = 'done' WHERE pos <= 300"))
    claimed = [f"sub-{i}" for i in range(0, 40, 3)]
    waiting = sum(len(_pending(rt, s)) for s in claimed)
    for limit in (1, 7, 25, waiting - 1, waiting, 5000):
        assert len(_check(rt, claimed, limit)) == min(limit, waiting)
    rt.close()


def test_one_busy_subject_fills_the_batch(db_url: str) -> None:
    counts = {f"small-{i}": 3 for i in range(10)} | {"busy": 400}
    rt = _store(db_url, counts, seed=2)
    claimed = list(counts)
    loaded = _check(rt, claimed, 200)
    assert len(loaded) == 200
    # more than its even share (200 / 11): the second read gave busy the room the others left
    assert sum(1 for _, s in loaded if s == "busy") > 19
    alone = _check(rt, ["busy"], 250)
    assert len(alone) == 250
    rt.close()


@pytest.mark.parametrize("seed", range(6))
def test_random_backlogs_load_prefixes_and_progress(db_url: str, seed: int) -> None:
    rng = random.Random(seed)
    counts = {f"s{i}": rng.choice([0, 1, 2, 5, 30, 120]) for i in range(25)}
    counts["always"] = 1  # at least one event in the store
    rt = _store(db_url, counts, seed=seed)
    with rt.engine.begin() as conn:
        conn.execute(
            text("UPDATE event_state SET status = 'done' WHERE pos <= :p"),
            {"p": rng.randint(0, 200)},
        )
    for _ in range(5):
        claimed = rng.sample(sorted(counts), rng.randint(1, len(counts)))
        _check(rt, claimed, rng.choice([1, 3, 10, 64, 1000]))
    rt.close()
