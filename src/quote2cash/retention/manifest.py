"""The manifest beside each archive file: the file's SHA-256, its row counts and pos range, and
for each event the audit entries (id, hash) that name it, checked again on restore."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from quote2cash.private_files import open_private

FORMAT = "q2c-archive/1"


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class AuditRef:
    """An audit entry by its id (``audit_log.id``: unique across the partitioned chains)."""

    id: int
    hash: str


@dataclass(frozen=True)
class ManifestEvent:
    pos: int
    source: str
    event_id: str
    type: str
    event_class: str
    audit: tuple[AuditRef, ...]


@dataclass(frozen=True)
class Manifest:
    run_id: str
    file: str
    sha256: str
    created_at: str
    events: int
    steps: int
    failures: int
    pos_min: int
    pos_max: int
    cutoffs: dict[str, str | None]
    archived: tuple[ManifestEvent, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "file": self.file,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "rows": {"events": self.events, "steps": self.steps, "failures": self.failures},
            "pos": {"min": self.pos_min, "max": self.pos_max},
            "cutoffs": self.cutoffs,
            "events": [
                {
                    "pos": e.pos,
                    "source": e.source,
                    "event_id": e.event_id,
                    "type": e.type,
                    "class": e.event_class,
                    "audit": [{"id": a.id, "hash": a.hash} for a in e.audit],
                }
                for e in self.archived
            ],
        }


def manifest_path(archive_file: Path) -> Path:
    return archive_file.with_name(archive_file.stem + ".manifest.json")


def write_manifest(path: Path, manifest: Manifest) -> str:
    """Write it 0600 (synced, through a temporary name); returns the SHA-256 of its bytes."""
    body = json.dumps(manifest.to_json(), separators=(",", ":"), sort_keys=True).encode()
    partial = path.with_name(path.name + ".partial")
    with open_private(partial, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return hashlib.sha256(body).hexdigest()


def read_manifest(path: Path) -> tuple[Manifest, str]:
    """The manifest at ``path`` and the SHA-256 of its bytes."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"manifest {path}: cannot be read ({exc.strerror})") from exc
    try:
        raw = json.loads(body)
        if raw.get("format") != FORMAT:
            raise ManifestError(f"manifest {path}: format {raw.get('format')!r}, expected {FORMAT}")
        manifest = Manifest(
            run_id=str(raw["run_id"]),
            file=str(raw["file"]),
            sha256=str(raw["sha256"]),
            created_at=str(raw["created_at"]),
            events=int(raw["rows"]["events"]),
            steps=int(raw["rows"]["steps"]),
            failures=int(raw["rows"]["failures"]),
            pos_min=int(raw["pos"]["min"]),
            pos_max=int(raw["pos"]["max"]),
            cutoffs=dict(raw.get("cutoffs") or {}),
            archived=tuple(
                ManifestEvent(
                    pos=int(e["pos"]),
                    source=str(e["source"]),
                    event_id=str(e["event_id"]),
                    type=str(e["type"]),
                    event_class=str(e["class"]),
                    audit=tuple(AuditRef(int(a["id"]), str(a["hash"])) for a in e["audit"]),
                )
                for e in raw["events"]
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"manifest {path}: not a q2c archive manifest ({exc!r})") from exc
    return manifest, hashlib.sha256(body).hexdigest()


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
