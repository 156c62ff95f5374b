"""The engine's shared parts for one process: store, clock, log, gates, audit key, checkpoints."""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from quote2cash.engine.audit_key import AuditKey, bind_key, ensure_key, key_for, require_key
from quote2cash.engine.checkpoints import (
    CheckpointError,
    CheckpointStore,
    checkpoint_store_for,
    run_sync,
    seal_new_store,
)
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.log import EventLog
from quote2cash.engine.systems import SystemGates, SystemLimits
from quote2cash.store.db import migrate, open_engine

log = logging.getLogger("quote2cash.audit")


class Runtime:
    """Everything a worker, the CLI or the API needs to talk to the engine's state.

    ``audit_key`` signs every audit entry written through ``engine``; ``checkpoints`` is where
    the signed heads go, outside the store.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        limits: dict[str, SystemLimits] | None = None,
        audit_key: AuditKey | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.log = EventLog(engine, self.clock)
        self.gates = SystemGates(self.clock, limits, engine=engine)
        self.audit_key = audit_key or key_for(engine)
        bind_key(engine, self.audit_key)
        url = engine.url.render_as_string(hide_password=False)
        self.checkpoints = checkpoints or checkpoint_store_for(url)

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
        """Open the store; ``initialise`` also migrates it, creates the default audit key file
        if none is configured, and gives a new store its first checkpoint."""
        engine = open_engine(url, sqlite_synchronous=sqlite_synchronous)
        key = ensure_key(url)[0] if initialise else require_key(url)
        if initialise:
            migrate(engine)
        runtime = cls(engine, clock=clock, limits=limits, audit_key=key)
        if initialise:
            try:
                run_sync(seal_new_store(runtime))
            except CheckpointError as exc:
                log.warning("first audit checkpoint not written: %s", exc)
        return runtime

    def close(self) -> None:
        self.engine.dispose()
