"""The engine's shared parts for one process: store, clock, log, gates, audit."""

from __future__ import annotations

from sqlalchemy import Engine

from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.log import EventLog
from quote2cash.engine.systems import SystemGates, SystemLimits
from quote2cash.store.db import migrate, open_engine


class Runtime:
    """Everything a worker, the CLI or the API needs to talk to the engine's state."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        limits: dict[str, SystemLimits] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.log = EventLog(engine, self.clock)
        self.gates = SystemGates(self.clock, limits, engine=engine)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        clock: Clock | None = None,
        limits: dict[str, SystemLimits] | None = None,
        initialise: bool = True,
        sqlite_synchronous: str = "FULL",
    ) -> Runtime:
        engine = open_engine(url, sqlite_synchronous=sqlite_synchronous)
        if initialise:
            migrate(engine)
        return cls(engine, clock=clock, limits=limits)

    def close(self) -> None:
        self.engine.dispose()
