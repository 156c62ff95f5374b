"""A registry for ``q2c worker --handlers support.scaleout_calls:registry``: each event books one
entry in a stand-in ERP, the ``booked`` table of the store's PostgreSQL database, which dedups by
idempotency key like a real system and counts every attempt (with the calling process and time),
so a test can tell a re-run (same key) from a duplicate and see which worker ran what, when."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg

from quote2cash.engine.context import HandlerContext
from quote2cash.engine.events import Event
from quote2cash.engine.registry import Registry

BOOKED = "test.scaleout.booked"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS booked (n BIGSERIAL PRIMARY KEY, key TEXT UNIQUE NOT NULL,"
    " subject TEXT NOT NULL, sequence BIGINT NOT NULL, pid INTEGER NOT NULL,"
    " at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    "CREATE TABLE IF NOT EXISTS booking_attempts (key TEXT NOT NULL, subject TEXT NOT NULL,"
    " pid INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
)
registry = Registry()
_pool: asyncio.Queue[Any] | None = None
CONNECTIONS = 8
"""Connections per process to the stand-in ERP, as an HTTP client keeps a few to a real one."""


def create_tables(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SCHEMA:
            conn.execute(statement)


async def _connections() -> asyncio.Queue[Any]:
    global _pool
    if _pool is None:
        url = os.environ["Q2C_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        _pool = pool = asyncio.Queue()  # set first: callers meanwhile wait for a connection
        for _ in range(CONNECTIONS):
            pool.put_nowait(await psycopg.AsyncConnection.connect(url, autocommit=True))
    return _pool


@registry.on(BOOKED)
async def book(ctx: HandlerContext, event: Event) -> None:
    """One recorded ERP step per event; ``Q2C_TEST_STEP_SECONDS`` stands for the call's latency."""
    latency = float(os.environ.get("Q2C_TEST_STEP_SECONDS", "0"))

    async def post(key: str) -> int:
        if latency:
            await asyncio.sleep(latency)
        pool = await _connections()
        conn = await pool.get()
        pid = os.getpid()
        try:
            await conn.execute(  # one statement: the attempt and the booking commit together
                "WITH attempt AS (INSERT INTO booking_attempts (key, subject, pid) "
                "VALUES (%s, %s, %s)) INSERT INTO booked (key, subject, sequence, pid) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                (key, event.subject, pid, key, event.subject, event.sequence or 0, pid),
            )
        finally:
            pool.put_nowait(conn)
        return pid

    await ctx.step("erp.book", post)
