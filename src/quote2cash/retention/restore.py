"""Putting an archive run back: the file must match its manifest's SHA-256, the manifest the
hashes the store recorded for the run, and every event's audit entries must still stand in the
audit log; then its rows return with the same pos, ids and times, in one transaction.

A restored event is ``done`` as it was; ``q2c replay request --include-processed`` re-runs it
(finance-sensitive ones approved by a finance approver)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.runtime import Runtime
from quote2cash.retention.archive import ACTOR
from quote2cash.retention.audit_refs import audit_mismatches
from quote2cash.retention.manifest import Manifest, ManifestError, manifest_path, read_manifest
from quote2cash.retention.membership import in_parts
from quote2cash.retention.parquet_file import ArchivedEvent, file_sha256, read_archive
from quote2cash.store.schema import (
    STATE_COLUMNS,
    archive_runs,
    event_state,
    events,
    failures,
    steps,
)


class RestoreError(RuntimeError):
    """A refused restore; the message names the file and what does not match."""


@dataclass(frozen=True)
class ArchiveRun:
    id: str
    started_at: datetime
    via: str
    file: str
    sha256: str
    events: int
    steps: int
    failures: int
    pos_min: int
    pos_max: int
    restored_at: datetime | None


@dataclass(frozen=True)
class RestoreReport:
    run_id: str
    file: str
    events: int
    steps: int
    failures: int
    audit_entries_checked: int


def list_runs(runtime: Runtime) -> list[ArchiveRun]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(archive_runs).order_by(archive_runs.c.started_at)).all()
    return [
        ArchiveRun(
            r.id,
            r.started_at,
            r.via,
            r.file,
            r.sha256,
            r.events,
            r.steps,
            r.failures,
            r.pos_min,
            r.pos_max,
            r.restored_at,
        )
        for r in rows
    ]


def resolve(runtime: Runtime, folder: Path, target: str) -> Path:
    """``target`` is an archive file's path, or the id of a run whose file is in ``folder``."""
    as_path = Path(target)
    if as_path.suffix == ".parquet":
        return as_path
    with runtime.engine.connect() as conn:
        name = conn.execute(
            select(archive_runs.c.file).where(archive_runs.c.id == target)
        ).scalar_one_or_none()
    if name is None:
        raise RestoreError(
            f"{target!r} is neither a .parquet file nor an archive run of this store "
            "(see `q2c archive list`)"
        )
    return folder / str(name)


def restore_archive(runtime: Runtime, path: Path, *, via: str = "cli") -> RestoreReport:
    try:
        manifest, manifest_sha = read_manifest(manifest_path(path))
    except ManifestError as exc:
        raise RestoreError(f"archive file {path}: {exc}") from exc
    if not path.is_file():
        raise RestoreError(f"archive file {path} does not exist")
    if manifest.file != path.name:
        raise RestoreError(
            f"archive file {path}: its manifest describes {manifest.file!r}, not this file"
        )
    actual = file_sha256(path)
    if actual != manifest.sha256:
        raise RestoreError(
            f"archive file {path}: SHA-256 {actual} does not match the manifest's "
            f"{manifest.sha256} (the file was changed after archiving); nothing restored"
        )
    archived = read_archive(path)
    _check_contents(path, manifest, archived)
    now = runtime.clock.now()
    with runtime.engine.begin() as conn:
        _check_run(conn, path, manifest, manifest_sha)
        problems = audit_mismatches(conn, manifest.archived)
        if problems:
            shown = "; ".join(problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise RestoreError(
                f"archive file {path}: audit entries do not match: {shown}{more}; nothing restored"
            )
        _check_absent(conn, path, archived)
        _insert(conn, archived)
        conn.execute(
            update(archive_runs)
            .where(archive_runs.c.id == manifest.run_id)
            .values(restored_at=now, restored_events=len(archived))
        )
        append_audit(
            conn,
            [
                AuditEntry(
                    ACTOR,
                    "archive.restored",
                    f"archive:{manifest.run_id}",
                    details={
                        "via": via,
                        "file": path.name,
                        "sha256": actual,
                        "events": len(archived),
                        "pos_min": manifest.pos_min,
                        "pos_max": manifest.pos_max,
                    },
                )
            ],
            now,
        )
    return RestoreReport(
        manifest.run_id, path.name, len(archived), manifest.steps, manifest.failures,
        sum(len(e.audit) for e in manifest.archived),
    )  # fmt: skip


def _check_contents(path: Path, manifest: Manifest, archived: list[ArchivedEvent]) -> None:
    n_steps = sum(len(a.steps) for a in archived)
    n_failures = sum(len(a.failures) for a in archived)
    counts = (len(archived), n_steps, n_failures)
    if counts != (manifest.events, manifest.steps, manifest.failures):
        raise RestoreError(
            f"archive file {path}: holds {counts[0]} events, {counts[1]} steps, {counts[2]} "
            f"failures; the manifest says {manifest.events}, {manifest.steps}, {manifest.failures}"
        )
    listed = {(e.pos, e.source, e.event_id) for e in manifest.archived}
    held = {(a.row["pos"], a.row["source"], a.row["event_id"]) for a in archived}
    if listed != held:
        odd = sorted(held ^ listed)[:3]
        raise RestoreError(
            f"archive file {path}: its events differ from the manifest's (e.g. {odd})"
        )
    positions = [a.row["pos"] for a in archived]
    if positions and (min(positions), max(positions)) != (manifest.pos_min, manifest.pos_max):
        raise RestoreError(
            f"archive file {path}: pos range {min(positions)}..{max(positions)}, the manifest "
            f"says {manifest.pos_min}..{manifest.pos_max}"
        )


def _check_run(conn: Connection, path: Path, manifest: Manifest, manifest_sha: str) -> None:
    """The store's record of the run vouches for the manifest (an edited manifest, recomputed
    to match an edited file, is caught here)."""
    run = conn.execute(
        select(archive_runs).where(archive_runs.c.id == manifest.run_id).with_for_update()
    ).first()
    if run is None:
        raise RestoreError(
            f"archive file {path}: run {manifest.run_id} is not recorded in this store"
        )
    if run.sha256 != manifest.sha256 or run.manifest_sha256 != manifest_sha:
        raise RestoreError(
            f"archive file {path}: the manifest does not match what the store recorded for run "
            f"{manifest.run_id} (file SHA-256 {run.sha256}); the manifest was changed"
        )
    if run.restored_at is not None:
        raise RestoreError(
            f"archive file {path}: run {manifest.run_id} was restored at "
            f"{run.restored_at.isoformat()}"
        )


def _check_absent(conn: Connection, path: Path, archived: list[ArchivedEvent]) -> None:
    for where in in_parts(conn, events.c.pos, [a.row["pos"] for a in archived]):
        clash = conn.execute(select(events.c.pos).where(where).limit(1)).first()
        if clash is not None:
            raise RestoreError(f"archive file {path}: pos {clash.pos} is already in the store")
    by_source: dict[str, list[str]] = defaultdict(list)
    for a in archived:
        by_source[a.row["source"]].append(a.row["event_id"])
    for source, ids in by_source.items():  # one source at a time: the (source, id) index
        for where in in_parts(conn, events.c.event_id, ids):
            found = conn.execute(
                select(events.c.event_id).where(events.c.source == source, where).limit(1)
            ).first()
            if found is not None:
                raise RestoreError(
                    f"archive file {path}: event {source}/{found.event_id} is already in the store"
                )


def _insert(conn: Connection, archived: list[ArchivedEvent]) -> None:
    for i in range(0, len(archived), 5000):
        part = archived[i : i + 5000]
        conn.execute(
            insert(events), [{k: v for k, v in a.row.items() if k not in _STATE} for a in part]
        )
        conn.execute(
            insert(event_state),
            [{"pos": a.row["pos"], "subject": a.row["subject"], **_state(a.row)} for a in part],
        )
        step_rows: list[dict[str, Any]] = [
            {**s, "event_pos": a.row["pos"]} for a in part for s in a.steps
        ]
        if step_rows:
            conn.execute(insert(steps), step_rows)
        failure_rows = [{**f, "event_pos": a.row["pos"]} for a in part for f in a.failures]
        if failure_rows:
            conn.execute(insert(failures), failure_rows)


_STATE = frozenset(c.name for c in STATE_COLUMNS)


def _state(row: dict[str, Any]) -> dict[str, Any]:
    """An archived row's dispatch state (the file keeps the event's columns as one row)."""
    return {k: row[k] for k in _STATE}
