"""Reads awaited on the event loop (``store/loop_reads.py``): a connection the server dropped
or a read cut short by a timeout is closed and never reused, its error is SQLAlchemy's, and the
next read answers on a fresh connection."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import Integer, column, text
from sqlalchemy.exc import DBAPIError

from quote2cash.store.db import open_engine
from quote2cash.store.loop_reads import PsycopgLoopReads, ThreadReads, loop_reads

BACKEND_PID = text("SELECT pg_backend_pid() AS pid").columns(column("pid", Integer))
SLOW = text("SELECT 1 AS one FROM pg_sleep(:seconds)").columns(column("one", Integer))


async def test_a_dropped_connection_fails_one_read_and_is_replaced(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        reads = loop_reads(engine)
        assert isinstance(reads, PsycopgLoopReads)
        first = (await reads.first(BACKEND_PID, {})).pid
        assert (await reads.first(BACKEND_PID, {})).pid == first  # kept and reused
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with pytest.raises(DBAPIError):
            await reads.first(BACKEND_PID, {})
        assert (await reads.first(BACKEND_PID, {})).pid != first
    finally:
        engine.dispose()


async def test_a_read_cut_short_by_a_timeout_never_leaves_its_connection_for_another(
    pg_url: str,
) -> None:
    engine = open_engine(pg_url)
    try:
        reads = loop_reads(engine)
        kept = (await reads.first(BACKEND_PID, {})).pid
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await reads.first(SLOW, {"seconds": 5})
        # The cut read took the kept connection; it is closed, not handed back mid-statement.
        assert (await reads.first(BACKEND_PID, {})).pid != kept
        assert (await reads.first(SLOW, {"seconds": 0})).one == 1
    finally:
        engine.dispose()


async def test_sqlite_reads_go_through_a_thread(tmp_path: object) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/hub.sqlite")
    try:
        reads = loop_reads(engine)
        assert isinstance(reads, ThreadReads)
        one = text("SELECT 41 + 1 AS answer").columns(column("answer", Integer))
        assert (await reads.first(one, {})).answer == 42
    finally:
        engine.dispose()
