"""One archive run: expired processed events, with their steps and failures, are written to a
Parquet file and its manifest first; then deleted in the transaction that records the run
(``archive_runs``) and its audit entry. A crash between the two leaves a file no run names
and every event still in the store; the next run takes them again."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.retention.audit_refs import Found, by_event, correlated_refs, uncorrelated_refs
from quote2cash.retention.candidates import (
    archivable,
    newest_position,
    pinned_positions,
    store_types,
)
from quote2cash.retention.folder import ensure_private_folder
from quote2cash.retention.manifest import (
    Manifest,
    ManifestEvent,
    iso,
    manifest_path,
    write_manifest,
)
from quote2cash.retention.membership import in_parts
from quote2cash.retention.parquet_file import (
    EVENT_COLUMNS,
    FAILURE_COLUMNS,
    STEP_COLUMNS,
    ArchivedEvent,
    write_archive,
)
from quote2cash.retention.policy import RetentionPolicy, event_class
from quote2cash.store.schema import archive_runs, event_state, events, failures, steps

ACTOR = "retention"
PAGE = 10_000


class ArchiveError(RuntimeError):
    """A run that archived nothing; the message says why."""


@dataclass(frozen=True)
class ArchiveReport:
    dry_run: bool
    events: int
    steps: int
    failures: int
    cutoffs: dict[str, datetime | None]
    by_class: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    file: str | None = None
    sha256: str | None = None
    pos_min: int | None = None
    pos_max: int | None = None
    more: bool = False
    """The run stopped at its limit: more expired events wait for the next one."""
    transaction_seconds: float = 0.0
    """How long the deleting transaction took (SQLite: intake waited that long)."""


def run_archive(
    runtime: Runtime,
    folder: Path,
    policy: RetentionPolicy,
    *,
    before: datetime | None = None,
    dry_run: bool = False,
    limit: int = 200_000,
    via: str = "cli",
) -> ArchiveReport:
    started = runtime.clock.now()
    cutoffs = policy.cutoffs(started, before)
    rows, taken, found = _read(runtime, policy, cutoffs, limit + 1, with_audit=not dry_run)
    more = len(rows) > limit
    rows, taken = rows[:limit], taken[:limit]
    refs = by_event(found)
    by_class = dict(Counter(event_class(r.type) for r in rows))
    n_steps = sum(len(a.steps) for a in taken)
    n_failures = sum(len(a.failures) for a in taken)
    if dry_run or not rows:
        return ArchiveReport(
            dry_run,
            len(rows),
            n_steps,
            n_failures,
            cutoffs,
            by_class,
            pos_min=rows[0].pos if rows else None,
            pos_max=rows[-1].pos if rows else None,
            more=more,
        )
    run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    ensure_private_folder(folder)
    path = folder / f"q2c-archive-{run_id}.parquet"
    sha = write_archive(path, taken)
    manifest = Manifest(
        run_id=run_id,
        file=path.name,
        sha256=sha,
        created_at=started.isoformat(),
        events=len(rows),
        steps=n_steps,
        failures=n_failures,
        pos_min=rows[0].pos,
        pos_max=rows[-1].pos,
        cutoffs={cls: iso(c) for cls, c in cutoffs.items()},
        archived=tuple(
            ManifestEvent(
                r.pos,
                r.source,
                r.event_id,
                r.type,
                event_class(r.type),
                tuple(refs.get(r.event_id, ())),
            )
            for r in rows
        ),
    )
    mpath = manifest_path(path)
    manifest_sha = write_manifest(mpath, manifest)
    began = time.perf_counter()
    try:
        with runtime.engine.begin() as conn:
            _delete(conn, [r.pos for r in rows])
            now = runtime.clock.now()
            conn.execute(
                insert(archive_runs).values(
                    id=run_id,
                    started_at=started,
                    finished_at=now,
                    via=via,
                    file=path.name,
                    sha256=sha,
                    manifest_sha256=manifest_sha,
                    events=len(rows),
                    steps=n_steps,
                    failures=n_failures,
                    pos_min=manifest.pos_min,
                    pos_max=manifest.pos_max,
                    finance_cutoff=cutoffs.get("finance"),
                    other_cutoff=cutoffs.get("other"),
                )
            )
            append_audit(
                conn,
                [
                    AuditEntry(
                        ACTOR,
                        "archive.completed",
                        f"archive:{run_id}",
                        details={
                            "via": via,
                            "file": path.name,
                            "sha256": sha,
                            "manifest_sha256": manifest_sha,
                            "events": len(rows),
                            "by_class": by_class,
                            "pos_min": manifest.pos_min,
                            "pos_max": manifest.pos_max,
                        },
                    )
                ],
                now,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        mpath.unlink(missing_ok=True)
        raise
    return ArchiveReport(
        False, len(rows), n_steps, n_failures, cutoffs, by_class, run_id, path.name, sha,
        manifest.pos_min, manifest.pos_max, more, time.perf_counter() - began,
    )  # fmt: skip


def _read(
    runtime: Runtime,
    policy: RetentionPolicy,
    cutoffs: dict[str, datetime | None],
    limit: int,
    *,
    with_audit: bool,
) -> tuple[list[Any], list[ArchivedEvent], Found]:
    """The run's events with their rows and audit entries, read a page at a time, each page a
    short transaction (on SQLite every transaction holds the write lock: intake waits one page,
    not the whole read)."""
    rows: list[Any] = []
    taken: list[ArchivedEvent] = []
    found: Found = {}
    with runtime.engine.connect() as conn:
        with conn.begin():
            types = store_types(conn, policy)
            newest = newest_position(conn)
        while len(rows) < limit:
            with conn.begin():
                after = rows[-1].pos if rows else 0
                size = min(PAGE, limit - len(rows))
                page = archivable(conn, types, cutoffs, size, after=after, below=newest)
                if not page:
                    break
                taken.extend(_with_steps_and_failures(conn, page))
                if with_audit:
                    correlated_refs(conn, page, found)
            rows.extend(page)
        if rows and with_audit:
            uncorrelated_refs(conn, {r.event_id for r in rows}, found)
    return rows, taken, found


def _with_steps_and_failures(conn: Connection, rows: list[Any]) -> list[ArchivedEvent]:
    taken = {r.pos: ArchivedEvent(_pick(r, EVENT_COLUMNS)) for r in rows}
    positions = list(taken)
    for where in in_parts(conn, steps.c.event_pos, positions):
        for s in conn.execute(select(steps).where(where).order_by(steps.c.event_pos)):
            taken[s.event_pos].steps.append(_pick(s, STEP_COLUMNS))
    for where in in_parts(conn, failures.c.event_pos, positions):
        for f in conn.execute(select(failures).where(where).order_by(failures.c.id)):
            taken[f.event_pos].failures.append(_pick(f, FAILURE_COLUMNS))
    return list(taken.values())


def _pick(row: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    mapping = row._mapping
    return {c: mapping[c] for c in columns}


def _delete(conn: Connection, positions: list[int]) -> None:
    """Delete the run's rows; refuse if one was meanwhile pinned by a replay request or is no
    longer done (the file is then removed and nothing changes)."""
    clash = pinned_positions(conn).intersection(positions)
    if clash:
        raise ArchiveError(
            f"events at pos {sorted(clash)[:5]} were named by a replay request meanwhile; "
            "nothing archived, run again"
        )
    deleted = 0
    for where in in_parts(conn, steps.c.event_pos, positions):
        conn.execute(delete(steps).where(where))
    for where in in_parts(conn, failures.c.event_pos, positions):
        conn.execute(delete(failures).where(where))
    done: list[int] = []
    for where in in_parts(conn, event_state.c.pos, positions):
        done += conn.execute(
            delete(event_state)
            .where(where, event_state.c.status == "done")
            .returning(event_state.c.pos)
        ).scalars()
    for where in in_parts(conn, events.c.pos, done):
        deleted += conn.execute(delete(events).where(where)).rowcount
    if deleted != len(positions):
        raise ArchiveError(
            f"{len(positions) - deleted} of {len(positions)} events changed while archiving; "
            "nothing archived, run again"
        )
