"""An event's audit entries are those whose details name its ``event_id``; their (seq, hash) go
into the manifest, and a restore checks each still stands unchanged in the audit log."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Connection, select

from quote2cash.retention.manifest import AuditRef, ManifestEvent
from quote2cash.store.schema import audit_log

_BATCH = 10_000
_NAMES_EVENT = '%"event_id":%'


def audit_refs(conn: Connection, event_ids: set[str]) -> dict[str, list[AuditRef]]:
    """For each of ``event_ids``, the audit entries naming it, in chain order.

    One pass over the entries that name any event (the details are canonical JSON, so the key
    is written ``"event_id":``), in seq batches: bounded memory on a long log."""
    found: dict[str, list[AuditRef]] = defaultdict(list)
    if not event_ids:
        return found
    last = -1
    while True:
        rows = conn.execute(
            select(audit_log.c.seq, audit_log.c.hash, audit_log.c.details)
            .where(audit_log.c.seq > last, audit_log.c.details.like(_NAMES_EVENT))
            .order_by(audit_log.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            return found
        for seq, hash_, details in rows:
            named = _event_id(details)
            if named in event_ids:
                found[named].append(AuditRef(int(seq), str(hash_)))
        last = int(rows[-1][0])


def audit_mismatches(conn: Connection, archived: Iterable[ManifestEvent]) -> list[str]:
    """What no longer holds: an entry missing, its hash changed, or no longer naming the event."""
    wanted = {a.seq: (e, a) for e in archived for a in e.audit}
    problems: list[str] = []
    seqs = sorted(wanted)
    for i in range(0, len(seqs), _BATCH):
        chunk = seqs[i : i + _BATCH]
        stored = {
            int(seq): (str(hash_), details)
            for seq, hash_, details in conn.execute(
                select(audit_log.c.seq, audit_log.c.hash, audit_log.c.details).where(
                    audit_log.c.seq.in_(chunk)
                )
            )
        }
        for seq in chunk:
            event, ref = wanted[seq]
            name = f"event {event.source}/{event.event_id} (pos {event.pos})"
            if seq not in stored:
                problems.append(f"{name}: audit entry {seq} is missing from the audit log")
            elif stored[seq][0] != ref.hash:
                problems.append(
                    f"{name}: audit entry {seq} has hash {stored[seq][0][:12]}..., the manifest "
                    f"says {ref.hash[:12]}..."
                )
            elif _event_id(stored[seq][1]) != event.event_id:
                problems.append(f"{name}: audit entry {seq} no longer names the event")
    return problems


def _event_id(details: str) -> str | None:
    try:
        value = json.loads(details).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
