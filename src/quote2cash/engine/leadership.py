"""One holder at a time of a named store lease among a deployment's processes: the bus
publisher of a stream, ``q2c serve``'s scheduled jobs. A holder renews once a third of its lease
is spent; a lapsed lease is taken, and one whose holder's process on this host is gone at once."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from contextlib import suppress

from sqlalchemy import Engine

from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.worker import process_alive
from quote2cash.store.leases import drop_lease, lease_owner, take_lease


def new_owner() -> str:
    """This process's holder name: ``host:pid:tag`` (the pid lets a neighbour see it is gone)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """False only for an owner of this host whose process is gone (``host:pid:tag``)."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(rest.partition(":")[0])
    except ValueError:
        return True
    return process_alive(pid)


class Leadership:
    """Whether this process holds lease ``name`` now; ``held`` reads the store at most once per
    third of the lease."""

    def __init__(
        self,
        engine: Engine,
        name: str,
        seconds: float,
        *,
        owner: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.engine, self.name, self.seconds = engine, name, seconds
        self.owner = owner or new_owner()
        self.clock = clock or SystemClock()
        self._until = 0.0

    @property
    def holding(self) -> bool:
        """Held at the last check (no store read)."""
        return bool(self._until)

    async def held(self) -> bool:
        now = time.monotonic()
        if self._until - now > self.seconds * 2 / 3:
            return True

        def attempt() -> bool:
            holder = lease_owner(self.engine, self.name)
            dead = holder if holder and holder != self.owner and not owner_alive(holder) else None
            return take_lease(
                self.engine, self.name, self.owner, self.clock.now(), self.seconds, dead=dead
            )

        held = await asyncio.to_thread(attempt)
        self._until = now + self.seconds if held else 0.0
        return held

    async def release(self) -> None:
        """Hand the lease to the next process at once (a clean stop); a failing store only
        delays that until the lease lapses."""
        if self._until:
            self._until = 0.0
            with suppress(Exception):
                await asyncio.to_thread(drop_lease, self.engine, self.name, self.owner)
