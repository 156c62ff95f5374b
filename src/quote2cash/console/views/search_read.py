"""Find deals by any business key: contract number, opportunity, account, invoice number, any
system's id (through the cross-reference table), correlation id or event id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Select, func, select

from quote2cash.console.views.xref_keys import global_ids_of
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.subjects import contract_subject
from quote2cash.store.schema import events, md_xrefs, steps

MAX_DEALS: Final = 50


@dataclass(frozen=True)
class DealHit:
    """A deal (correlation id) the key leads to, and how it was found."""

    correlation_id: str
    subject: str
    first_type: str
    started: datetime
    events: int
    matched_by: str


def find_deals(runtime: Runtime, key: str) -> list[DealHit]:
    """Deals matching ``key`` exactly, strongest evidence first; empty for a blank key."""
    key = key.strip()
    if not key or len(key) > 300:
        return []
    found: dict[str, str] = {}
    with runtime.engine.connect() as conn:

        def add(query: Select[tuple[str]], how: str) -> None:
            for cid in conn.execute(query.limit(MAX_DEALS)).scalars():
                found.setdefault(str(cid), how)

        add(
            select(events.c.correlation_id).where(events.c.correlation_id == key).distinct(),
            "correlation id",
        )
        add(
            select(events.c.correlation_id).where(events.c.event_id == key).distinct(),
            "event id",
        )
        add(
            select(events.c.correlation_id)
            .where(events.c.subject.in_([key, contract_subject(key)]))
            .distinct(),
            "contract number",
        )
        local_ids = [key]
        global_ids = sorted(set(conn.execute(global_ids_of(conn, conn.engine, [key])).scalars()))
        if global_ids:
            local_ids += list(
                conn.execute(
                    select(md_xrefs.c.local_id).where(md_xrefs.c.global_id.in_(global_ids))
                ).scalars()
            )
            local_ids += global_ids
        for ident in dict.fromkeys(local_ids):
            text = f'"{ident}"'
            how = "id in event data" if ident == key else f"cross-reference of {key}"
            add(
                select(events.c.correlation_id)
                .where(events.c.data.contains(text, autoescape=True))
                .distinct(),
                how,
            )
            add(
                select(events.c.correlation_id)
                .join(steps, steps.c.event_pos == events.c.pos)
                .where(steps.c.result.contains(text, autoescape=True))
                .distinct(),
                "id in a step result" if ident == key else f"cross-reference of {key}",
            )
        if not found:
            return []
        summary = conn.execute(
            select(
                events.c.correlation_id,
                func.min(events.c.pos),
                func.count(),
            )
            .where(events.c.correlation_id.in_(list(found)[:MAX_DEALS]))
            .group_by(events.c.correlation_id)
        ).all()
        firsts = {
            r.pos: r
            for r in conn.execute(
                select(events.c.pos, events.c.subject, events.c.type, events.c.recorded_at).where(
                    events.c.pos.in_([s[1] for s in summary])
                )
            )
        }
    hits = []
    for cid, first_pos, count in summary:
        first = firsts[first_pos]
        hits.append(
            DealHit(cid, first.subject, first.type, first.recorded_at, int(count), found[cid])
        )
    order = list(found)
    hits.sort(key=lambda h: order.index(h.correlation_id))
    return hits
