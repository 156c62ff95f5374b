"""The flows' own store calls (cross-references, sync state, entity decisions, the golden
record) off the event loop: one place decides where they run.

A worker runs every handler of a batch on one event loop; a synchronous read there blocks every
subject of the process while the database answers. ``in_store(fn, *args)`` runs ``fn`` in the
worker's flow-store threads instead, beside its store thread, so master-data reads neither wait
behind step commits nor hold them up: on SQLite one thread (the flows write from one thread, as
they did from the loop: besides the store thread the file has one writer per worker), on
PostgreSQL a few. Outside a worker (the CLI, a test driving a flow by hand) there is no loop to
keep free and ``fn`` runs in place, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from quote2cash.engine.recorder import StoreThread

P = ParamSpec("P")
R = TypeVar("R")
POSTGRES_THREADS = 3
"""Master-data threads per PostgreSQL worker: with the store thread and the budgets' calls they
stay inside the engine's connection pool (5 + 2 overflow)."""

_RUNNER: ContextVar[StoreThread | None] = ContextVar("q2c_store_calls", default=None)


async def in_store(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` off the event loop, in the running worker's store calls (in place
    when no worker runs this handler). ``fn`` is synchronous and must not touch the loop."""
    runner = _RUNNER.get()
    if runner is None:
        return fn(*args, **kwargs)
    return await runner.call(fn, *args, **kwargs)


def store_calls_for(worker: str, dialect: str, *, nice: int = 0) -> StoreThread:
    """Where a worker's flows run their store calls (the caller closes it): one thread on
    SQLite, whose writers take turns; a few on PostgreSQL; ``nice`` as ``StoreThread``'s."""
    threads = POSTGRES_THREADS if dialect == "postgresql" else 1
    return StoreThread(f"q2c-flows-{worker}", threads=threads, nice=nice)


@contextlib.contextmanager
def running_store_calls(runner: StoreThread) -> Iterator[None]:
    """Handlers started inside this block (their tasks copy the context) use ``runner``."""
    token = _RUNNER.set(runner)
    try:
        yield
    finally:
        _RUNNER.reset(token)
