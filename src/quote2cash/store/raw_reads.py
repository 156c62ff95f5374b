"""Hot reads on the driver's own connection: a statement compiled once per dialect, run on a
small set of read-only autocommit DBAPI connections kept beside the engine's pool, its row a
named tuple. For a read answered many times a second (GetInvoiceStatus): SQLAlchemy's per-call
work (pool checkout and reset, execution options, result metadata, row processing) cost about as
much CPU as the read itself.

Same answers as the SQLAlchemy path: the statement is SQLAlchemy's own compilation, and the
columns the statement types (``TextClause.columns``) go through their types' result processors.
Each statement reads the last committed state by itself (autocommit: no transaction, no lock on
SQLite). A connection whose call fails is closed, never reused, and the driver's error is raised
as SQLAlchemy's (``DBAPIError`` family); the engine's dispose closes all.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import Any, Final

from sqlalchemy import Engine, TextClause, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.selectable import TextualSelect

KEPT: Final = 8
"""Connections kept idle per engine at most (the default thread pool of a 2-core machine has 6)."""


class _Compiled:
    def __init__(self, engine: Engine, statement: TextualSelect | TextClause) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.order = compiled.positiontup
        self.bind_names = list(compiled.binds)
        processors: dict[str, Callable[[Any], Any]] = {}
        if isinstance(statement, TextualSelect):
            for column in statement.selected_columns:
                proc = column.type._cached_result_processor(engine.dialect, None)
                if proc is not None:
                    processors[column.key] = proc
        self.processors = processors
        self.shaped: tuple[Any, list[tuple[int, Callable[[Any], Any]]]] | None = None
        """The row type and the typed columns' processors by position, from the first answer."""

    def params(self, values: Mapping[str, Any]) -> Any:
        if self.order is not None:
            return tuple(values[name] for name in self.order)
        return dict(values)

    def shape(self, description: Any) -> None:
        names = [d[0] for d in description]
        row = namedtuple("Row", names, rename=True)  # type: ignore[misc]
        self.shaped = (row, [(names.index(k), p) for k, p in self.processors.items() if k in names])

    def make(self, raw: Any) -> Any:
        assert self.shaped is not None
        row, indexed = self.shaped
        if not indexed:
            return row._make(raw)
        values = list(raw)
        for i, proc in indexed:
            values[i] = proc(values[i])
        return row._make(values)


class RawReads:
    """One engine's kept connections and compiled statements."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._compiled: dict[int, _Compiled] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._new_connection()

    def _new_connection(self) -> Any:
        pooled = self.engine.raw_connection()
        dbapi: Any = pooled.driver_connection
        pooled.detach()  # ours now: the pool's slot is freed, its reset-on-return never runs
        self.engine.dialect.set_isolation_level(dbapi, "AUTOCOMMIT")
        return dbapi

    def _give_back(self, dbapi: Any) -> None:
        if self._closed or self._idle.qsize() >= KEPT:
            dbapi.close()
        else:
            self._idle.put(dbapi)

    def first(self, statement: TextualSelect | TextClause, values: Mapping[str, Any]) -> Any:
        """The statement's first row (a named tuple), or None."""
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            with self._lock:
                made = _Compiled(self.engine, statement)
                compiled = self._compiled.setdefault(id(statement), made)
        dbapi = self._connection()
        try:
            cursor = dbapi.cursor()
            try:
                cursor.execute(compiled.sql, compiled.params(values))
                raw = cursor.fetchone()
                if compiled.shaped is None:
                    compiled.shape(cursor.description)
            finally:
                cursor.close()
        except BaseException as exc:
            with suppress(Exception):
                dbapi.close()
            if isinstance(exc, self.engine.dialect.loaded_dbapi.Error):
                # as SQLAlchemy raises it (OperationalError...), so callers catch one family
                raise DBAPIError.instance(
                    compiled.sql, None, exc, self.engine.dialect.loaded_dbapi.Error
                ) from exc
            raise
        self._give_back(dbapi)
        return None if raw is None else compiled.make(raw)

    def warm(
        self, statement: TextualSelect | TextClause, values: Mapping[str, Any], connections: int
    ) -> None:
        """Open up to ``connections`` kept connections now, each running ``statement`` once, so
        the first answers do not each pay a new server connection, its first plan and its
        catalogue caches (measured: the tail of a freshly started web process)."""
        count = min(connections, KEPT) - self._idle.qsize()
        for _ in range(count):
            self._give_back(self._new_connection())
        for _ in range(count):  # the queue is first in, first out: each connection runs it once
            self.first(statement, values)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_READS: weakref.WeakKeyDictionary[Engine, RawReads] = weakref.WeakKeyDictionary()
_READS_LOCK = threading.Lock()


def raw_reads(engine: Engine) -> RawReads:
    """The engine's raw reads (made on first use; closed when the engine is disposed)."""
    found = _READS.get(engine)
    if found is not None:
        return found
    with _READS_LOCK:
        found = _READS.get(engine)
        if found is None:
            found = _READS[engine] = RawReads(engine)

            def disposed(*_: Any) -> None:
                reads = _READS.pop(engine, None)
                if reads is not None:
                    reads.close()

            event.listen(engine, "engine_disposed", disposed)
    return found
