"""Hot reads awaited on the event loop: on PostgreSQL the driver's asynchronous connection (no
thread hop); on SQLite, which has no asynchronous driver, ``raw_reads`` in a thread.

Why: for GetInvoiceStatus at 1,000 requests/s, handing the read to a thread and its answer back
(``asyncio.to_thread``: the executor's queue, a thread wake-up, the GIL passed twice, the future
chained back with a wake-up of the loop) cost more CPU than the read itself (measured 575 against
235 us per call, docs/benchmarks.md). Same answers as ``raw_reads``: the same compiled statement,
result processors and row type (``raw_reads._Compiled``), autocommit (each statement reads the
last committed state by itself), and the driver's errors raised as SQLAlchemy's ``DBAPIError``
family. A connection whose call fails or is cancelled (a timeout) is closed, never reused.
Connections belong to the loop they were opened on; the engine's dispose closes those kept.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from contextlib import suppress
from typing import Any, Final, Protocol

from sqlalchemy import Engine, TextClause, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.selectable import TextualSelect

from quote2cash.store.raw_reads import _Compiled, raw_reads

Statement = TextualSelect | TextClause


class LoopReads(Protocol):
    async def first(self, statement: Statement, values: dict[str, Any]) -> Any:
        """The statement's first row (a named tuple), or None."""


class ThreadReads:
    """``raw_reads`` in a thread: for a store without an asynchronous driver (SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def first(self, statement: Statement, values: dict[str, Any]) -> Any:
        return await asyncio.to_thread(raw_reads(self.engine).first, statement, values)

    def close(self) -> None:
        return None


IN_FLIGHT: Final = 4
"""Reads on the server at once per loop; more wait their turn. Unbounded, a burst opened a
connection per waiting request and the process spent itself connecting (measured: most
requests timed out at 1,000/s where 4 connections answer all)."""


class PsycopgLoopReads:
    """psycopg's ``AsyncConnection`` on the loop: one per read in flight, at most
    ``IN_FLIGHT``, kept open between reads."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._idle: list[Any] = []
        self._compiled: dict[int, _Compiled] = {}
        self._closed = False
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        self._connect_args: tuple[list[Any], dict[str, Any]] = (list(cargs), dict(cparams))

    async def _connection(self) -> Any:
        if self._idle:
            return self._idle.pop()
        import psycopg

        cargs, cparams = self._connect_args
        return await psycopg.AsyncConnection.connect(*cargs, **cparams, autocommit=True)

    async def first(self, statement: Statement, values: dict[str, Any]) -> Any:
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = self._compiled.setdefault(id(statement), _Compiled(self.engine, statement))
        async with self._slots:
            return await self._first(compiled, values)

    async def _first(self, compiled: _Compiled, values: dict[str, Any]) -> Any:
        import psycopg

        conn: Any = None
        try:
            conn = await self._connection()
            cursor = conn.cursor()
            try:
                await cursor.execute(compiled.sql, compiled.params(values), prepare=True)
                raw = await cursor.fetchone()
                if compiled.shaped is None:
                    compiled.shape(cursor.description)
            finally:
                await cursor.close()
        except BaseException as exc:
            if conn is not None:
                with suppress(Exception):
                    conn.pgconn.finish()  # at once, without a round trip (it may be cancelled)
            if isinstance(exc, psycopg.Error):
                raise DBAPIError.instance(compiled.sql, None, exc, psycopg.Error) from exc
            raise
        if self._closed:
            await conn.close()
        else:
            self._idle.append(conn)
        return None if raw is None else compiled.make(raw)

    def close(self) -> None:
        """Close the kept connections (from any thread: their sockets, not a round trip)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):
                conn.pgconn.finish()


_READS: weakref.WeakKeyDictionary[Engine, PsycopgLoopReads | ThreadReads] = (
    weakref.WeakKeyDictionary()
)
_LOCK: Final = threading.Lock()


def loop_reads(engine: Engine) -> LoopReads:
    """The engine's reads for the running loop (made on first use; PostgreSQL's are remade for
    another loop, and closed when the engine is disposed)."""
    loop = asyncio.get_running_loop()
    found = _READS.get(engine)
    if found is not None and (not isinstance(found, PsycopgLoopReads) or found.loop is loop):
        return found
    with _LOCK:
        if found is not None:
            found.close()
        elif engine not in _READS:

            def disposed(*_: Any) -> None:
                reads = _READS.pop(engine, None)
                if reads is not None:
                    reads.close()

            event.listen(engine, "engine_disposed", disposed)
        made: PsycopgLoopReads | ThreadReads = (
            PsycopgLoopReads(engine, loop)
            if engine.dialect.driver == "psycopg"
            else ThreadReads(engine)
        )
        _READS[engine] = made
    return made
