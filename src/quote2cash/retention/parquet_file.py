"""The archive file: one Parquet row per event, its steps and failures nested in it, so one file
holds everything a run took and a restore reads it back exactly (same pos, ids, times)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from quote2cash.private_files import open_private

_TIME = pa.timestamp("us", tz="UTC")

STEP = pa.struct(
    [
        ("name", pa.string()),
        ("idempotency_key", pa.string()),
        ("system", pa.string()),
        ("result", pa.string()),
        ("completed_at", _TIME),
    ]
)
FAILURE = pa.struct(
    [
        ("id", pa.int64()),
        ("attempt", pa.int32()),
        ("kind", pa.string()),
        ("category", pa.string()),
        ("system", pa.string()),
        ("error", pa.string()),
        ("retry_at", _TIME),
        ("at", _TIME),
    ]
)
SCHEMA = pa.schema(
    [
        ("pos", pa.int64()),
        ("event_id", pa.string()),
        ("source", pa.string()),
        ("type", pa.string()),
        ("subject", pa.string()),
        ("time", _TIME),
        ("correlation_id", pa.string()),
        ("causation_id", pa.string()),
        ("sequence", pa.int64()),
        ("schema_version", pa.int32()),
        ("data", pa.string()),
        ("status", pa.string()),
        ("attempts", pa.int32()),
        ("category", pa.string()),
        ("last_error", pa.string()),
        ("recorded_at", _TIME),
        ("processed_at", _TIME),
        ("traceparent", pa.string()),
        ("steps", pa.list_(STEP)),
        ("failures", pa.list_(FAILURE)),
    ]
)
EVENT_COLUMNS = tuple(n for n in SCHEMA.names if n not in ("steps", "failures"))
STEP_COLUMNS = tuple(STEP.field(i).name for i in range(STEP.num_fields))
FAILURE_COLUMNS = tuple(FAILURE.field(i).name for i in range(FAILURE.num_fields))


@dataclass
class ArchivedEvent:
    """An event row as the store held it, with its steps and failures rows."""

    row: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def write_archive(path: Path, archived: list[ArchivedEvent]) -> str:
    """Write ``archived`` to ``path`` (0600 from the first byte, synced to disk) through a
    temporary name, so a file under its final name is always whole; returns its SHA-256."""
    records = [{**a.row, "steps": a.steps, "failures": a.failures} for a in archived]
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    partial = path.with_name(path.name + ".partial")
    with open_private(partial, "wb") as out:
        pq.write_table(table, out, compression="zstd")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return file_sha256(path)


def read_archive(path: Path) -> list[ArchivedEvent]:
    """The events of an archive file, times as aware UTC datetimes."""
    table = pq.read_table(path, schema=SCHEMA)
    out = []
    for record in table.to_pylist():
        steps = [_utc(s) for s in record.pop("steps") or []]
        failures = [_utc(f) for f in record.pop("failures") or []]
        out.append(ArchivedEvent(_utc(record), steps, failures))
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _utc(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in record.items()}
