"""An event's audit entries are those whose details name its ``event_id``; their (entry id, hash)
go into the manifest, and a restore checks each still stands unchanged in the audit log. Entry
ids, not seqs: a seq counts within one audit chain, and chains are partitioned."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, select

from quote2cash.retention.manifest import AuditRef, ManifestEvent
from quote2cash.retention.membership import in_parts
from quote2cash.store.schema import audit_log

_BATCH = 10_000
_NAMES_EVENT = '%"event_id":%'


Found = dict[int, tuple[str, str | None]]
"""Audit entries found so far: entry id -> (hash, the event id its details name)."""


def correlated_refs(conn: Connection, archived: Iterable[Any], found: Found) -> None:
    """Add the entries naming one of the archived event rows, found through the indexed columns
    the engine fills: the event's correlation id, its subject or ``event:<pos>`` as entity."""
    rows = list(archived)
    ids = {r.event_id for r in rows}
    lookups = [
        (audit_log.c.correlation_id, sorted({r.correlation_id for r in rows})),
        (audit_log.c.entity, sorted({r.subject for r in rows} | {f"event:{r.pos}" for r in rows})),
    ]
    for column, values in lookups:
        for where in in_parts(conn, column, values):
            _collect(conn, found, ids, where)


def uncorrelated_refs(conn: Connection, ids: set[str], found: Found) -> None:
    """Add the entries without a correlation id (operator and quarantine decisions) naming one
    of ``ids``: one pass in batches by entry id, each a short transaction of its own."""
    last = -1
    while True:
        with conn.begin():
            batch = _collect(
                conn, found, ids, audit_log.c.correlation_id.is_(None), after=last, limit=_BATCH
            )
        if batch is None:
            return
        last = batch


def by_event(found: Found) -> dict[str, list[AuditRef]]:
    """Each event id's entries, in chain order. The details are canonical JSON, so
    ``"event_id":`` is literal in every entry that names an event."""
    out: dict[str, list[AuditRef]] = defaultdict(list)
    for entry in sorted(found):
        hash_, event_id = found[entry]
        if event_id is not None:
            out[event_id].append(AuditRef(entry, hash_))
    return out


def _collect(
    conn: Connection,
    found: Found,
    ids: set[str],
    where: ColumnElement[bool],
    *,
    after: int | None = None,
    limit: int | None = None,
) -> int | None:
    """Add the entries matching ``where`` that name one of ``ids``; the last entry id read (None
    when nothing was read)."""
    query = select(audit_log.c.id, audit_log.c.hash, audit_log.c.details).where(
        where, audit_log.c.details.like(_NAMES_EVENT)
    )
    if after is not None:
        query = query.where(audit_log.c.id > after).order_by(audit_log.c.id)
    if limit is not None:
        query = query.limit(limit)
    last = None
    for entry, hash_, details in conn.execute(query):
        last = int(entry)
        named = _event_id(details)
        if named in ids:
            found[last] = (str(hash_), named)
    return last


def audit_mismatches(conn: Connection, archived: Iterable[ManifestEvent]) -> list[str]:
    """What no longer holds: an entry missing, its hash changed, or no longer naming the event."""
    wanted = {a.id: (e, a) for e in archived for a in e.audit}
    problems: list[str] = []
    stored: dict[int, tuple[str, str]] = {}
    for where in in_parts(conn, audit_log.c.id, sorted(wanted)):
        query = select(audit_log.c.id, audit_log.c.hash, audit_log.c.details).where(where)
        stored.update((int(entry), (str(h), d)) for entry, h, d in conn.execute(query))
    for entry in sorted(wanted):
        event, ref = wanted[entry]
        name = f"event {event.source}/{event.event_id} (pos {event.pos})"
        if entry not in stored:
            problems.append(f"{name}: audit entry {entry} is missing from the audit log")
        elif stored[entry][0] != ref.hash:
            problems.append(
                f"{name}: audit entry {entry} has hash {stored[entry][0][:12]}..., the manifest "
                f"says {ref.hash[:12]}..."
            )
        elif _event_id(stored[entry][1]) != event.event_id:
            problems.append(f"{name}: audit entry {entry} no longer names the event")
    return problems


def _event_id(details: str) -> str | None:
    try:
        value = json.loads(details).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
