"""Named leases in the store (table ``outbox_lease``): one holder per name across every hub
process of a deployment; a lapsed lease, or one whose holder is known gone, is taken over. The
bus publisher (one per stream) and ``q2c serve``'s scheduled jobs (``serve.schedule``) use them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, or_, select, update

from quote2cash.store.schema import outbox_lease
from quote2cash.store.upsert import insert_missing


def take_lease(
    engine: Engine, name: str, owner: str, now: datetime, seconds: float, *, dead: str | None = None
) -> bool:
    """Take or extend the lease ``name`` for ``owner``: True when it is ours until
    ``now + seconds``. Free, lapsed, already ours, or held by ``dead`` (an owner known gone)
    counts as takeable; one conditional UPDATE decides between racing processes."""
    with engine.begin() as conn:
        insert_missing(conn, outbox_lease, {"name": name}, key="name")
        takeable = or_(
            outbox_lease.c.owner.is_(None),
            outbox_lease.c.owner == owner,
            outbox_lease.c.lease_until < now,
            *([outbox_lease.c.owner == dead] if dead else []),
        )
        result = conn.execute(
            update(outbox_lease)
            .where(and_(outbox_lease.c.name == name, takeable))
            .values(owner=owner, lease_until=now + timedelta(seconds=seconds))
        )
    return bool(result.rowcount)


def lease_owner(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        owner = conn.execute(
            select(outbox_lease.c.owner).where(outbox_lease.c.name == name)
        ).scalar_one_or_none()
    return None if owner is None else str(owner)


def drop_lease(engine: Engine, name: str, owner: str) -> None:
    """Let the next holder in at once (a clean stop)."""
    with engine.begin() as conn:
        conn.execute(
            update(outbox_lease)
            .where(outbox_lease.c.name == name, outbox_lease.c.owner == owner)
            .values(owner=None, lease_until=None)
        )
