"""Usage intake: a batch of records is validated, deduplicated against all history, and then
committed whole (ledger file, receipt, quarantine, aggregates, audit, events) or not at all.

Order of a batch: the accepted records go to a Parquet ledger file (written and fsynced under a
temporary name, then renamed); one store transaction then commits the receipt naming that file,
the quarantined records, the aggregates, the audit entries and the ``usage.batch.accepted``
events. A crash before the commit leaves at most an unnamed file (ignored); after it, the key
index catches up from the committed receipts the next time it is opened. Batches of one store
are serialised by a lock file, so two writers never decide the same key apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
from sqlalchemy import Connection, Engine, func, insert, select, update

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.events import new_event
from quote2cash.engine.log import EventLog
from quote2cash.store.schema import usage_aggregates, usage_batches, usage_quarantine
from quote2cash.usage.keyindex import KeyIndex, _fsync_dir
from quote2cash.usage.reading import (
    UsageFileError,
    file_chunks,
    format_of,
    prefetched,
    rows_chunk,
)
from quote2cash.usage.terms import SubscriptionTerms, load_terms
from quote2cash.usage.validation import (
    LatePolicy,
    check_chunk,
    new_connection,
    reference_tables,
)

AUDIT_CHAIN: Final = "usage"
BATCH_ACCEPTED: Final = "usage.batch.accepted"
EVENT_SOURCE: Final = "q2c.usage"
MAX_API_RECORDS: Final = 10_000
"""The most records one ``POST /v1/usage`` batch may carry."""


@dataclass(frozen=True)
class BatchReceipt:
    """What one batch did: the counts add up to ``records``; nothing is dropped."""

    batch_id: str
    source: str
    origin: str | None
    part: int
    content_sha256: str
    submitted_by: str
    received_at: datetime
    correlation_id: str
    records: int
    accepted: int
    duplicate: int
    quarantined: int
    corrected: int
    ledger_file: str | None
    seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["received_at"] = self.received_at.isoformat()
        return out


def agg_key(subscription: str, meter: str, period_start: datetime) -> str:
    text = f"{subscription}\x1f{meter}\x1f{period_start.astimezone(UTC).isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def aggregate_id(key: str, version: int) -> str:
    return f"usage-{key}-v{version}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def usage_dir_for(database_url: str, configured: str | None = None) -> Path:
    """``Q2C_USAGE_DIR``, else beside the SQLite file (``<name>-usage``), else ``.q2c/usage``."""
    from sqlalchemy.engine import make_url

    from quote2cash.store.db import normalise_url

    if configured:
        return Path(configured)
    url = make_url(normalise_url(database_url))
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        store = Path(database)
        return store.with_name(store.stem + "-usage")
    return Path(".q2c") / "usage"


class UsageIntake:
    """Validates, deduplicates and commits usage batches into one store's ledger."""

    def __init__(
        self,
        engine: Engine,
        folder: Path,
        *,
        policy: LatePolicy = "adjust",
        clock: Clock | None = None,
        chunk_rows: int = 1_000_000,
    ) -> None:
        self.engine = engine
        self.folder = folder
        self.policy: LatePolicy = policy
        self.clock = clock or SystemClock()
        self.chunk_rows = chunk_rows
        for sub in (folder, folder / "ledger"):
            sub.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(sub, 0o700)
        self.ledger_dir = folder / "ledger"
        self._index: KeyIndex | None = None

    # --- public entry points ---------------------------------------------------------------

    def ingest_file(
        self,
        path: Path,
        *,
        source: str,
        actor: str,
        corrections: bool = False,
        fmt: str | None = None,
        correlation_id: str | None = None,
    ) -> list[BatchReceipt]:
        """One batch per chunk of the file, each all-or-nothing; re-ingesting after a crash
        finds the committed chunks' records as duplicates and completes the rest."""
        if not path.is_file():
            raise UsageFileError(f"{path}: no such file")
        if fmt is None:
            format_of(path)
        sha = file_sha256(path)
        correlation = correlation_id or str(uuid.uuid4())
        receipts: list[BatchReceipt] = []
        terms = self._terms()
        with contextlib.closing(prefetched(file_chunks(path, self.chunk_rows, fmt))) as chunks:
            for part, chunk in enumerate(chunks, start=1):
                receipts.append(
                    self._ingest_chunk(
                        chunk,
                        terms,
                        source=source,
                        actor=actor,
                        corrections=corrections,
                        sha=sha,
                        origin=path.name,
                        part=part,
                        correlation_id=correlation,
                    )
                )
        return receipts

    def ingest_rows(
        self,
        rows: Sequence[Any],
        *,
        source: str,
        actor: str,
        corrections: bool = False,
        correlation_id: str | None = None,
        origin: str = "api",
    ) -> BatchReceipt:
        """One batch of records (JSON objects) as one all-or-nothing batch."""
        body = json.dumps(list(rows), sort_keys=True, separators=(",", ":"), default=str)
        return self._ingest_chunk(
            rows_chunk(rows),
            self._terms(),
            source=source,
            actor=actor,
            corrections=corrections,
            sha=hashlib.sha256(body.encode()).hexdigest(),
            origin=origin,
            part=1,
            correlation_id=correlation_id or str(uuid.uuid4()),
        )

    def resubmit(
        self, rows: Sequence[tuple[int, str, dict[str, Any]]], *, actor: str
    ) -> list[BatchReceipt]:
        """Quarantined records (id, source, values) through intake again, one batch per source.

        A resubmitted record may amend an accepted one (a person decided it); one that fails
        again stays in the quarantine with its new reason, never a second entry."""
        by_source: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for qid, source, values in rows:
            by_source.setdefault(source, []).append((qid, values))
        receipts = []
        terms = self._terms()
        for source, items in by_source.items():
            chunk = rows_chunk([v for _, v in items])
            chunk = chunk.set_column(
                chunk.column_names.index("line"),
                "line",
                pa.array([q for q, _ in items], pa.int64()),
            )
            body = json.dumps([v for _, v in items], sort_keys=True, default=str)
            receipts.append(
                self._ingest_chunk(
                    chunk,
                    terms,
                    source=source,
                    actor=actor,
                    corrections=True,
                    sha=hashlib.sha256(body.encode()).hexdigest(),
                    origin="quarantine",
                    part=1,
                    correlation_id=str(uuid.uuid4()),
                    resubmit=True,
                )
            )
        return receipts

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # --- the batch -------------------------------------------------------------------------

    def _terms(self) -> list[SubscriptionTerms]:
        with self.engine.connect() as conn:
            return load_terms(conn)

    @contextmanager
    def _locked(self) -> Iterator[KeyIndex]:
        lock = os.open(self.folder / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._index is None:
                self._index = KeyIndex(self.folder / "index")
            else:
                self._index.close()
                self._index = KeyIndex(self.folder / "index")
            self._catch_up(self._index)
            yield self._index
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)

    def _catch_up(self, index: KeyIndex) -> None:
        """Replay committed batches the index does not hold yet (a crash after a commit)."""
        with self.engine.connect() as conn:
            top = conn.execute(select(func.max(usage_batches.c.seq))).scalar() or 0
            if index.watermark > top:
                index.reset()
            if top <= index.watermark:
                return
            files = [
                str(self.ledger_dir / r.ledger_file)
                for r in conn.execute(
                    select(usage_batches.c.ledger_file)
                    .where(usage_batches.c.seq > index.watermark)
                    .where(usage_batches.c.ledger_file.is_not(None))
                    .order_by(usage_batches.c.seq)
                )
            ]
        if files:
            con = new_connection()
            try:
                table = con.sql(
                    "SELECT key, content FROM read_parquet($files, filename = true) "
                    "ORDER BY list_position($files, filename), line",
                    params={"files": files},
                ).to_arrow_table()
            finally:
                con.close()
            index.add(
                table.column("key").combine_chunks(), table.column("content").combine_chunks(), top
            )
        else:
            index.add(pa.array([], pa.uint64()), pa.array([], pa.uint64()), top)

    def _ingest_chunk(
        self,
        chunk: pa.Table,
        terms: Sequence[SubscriptionTerms],
        *,
        source: str,
        actor: str,
        corrections: bool,
        sha: str,
        origin: str | None,
        part: int,
        correlation_id: str,
        resubmit: bool = False,
    ) -> BatchReceipt:
        now = self.clock.now()
        batch_id = f"ub-{uuid.uuid4().hex[:24]}"
        con = new_connection()
        try:
            reference_tables(con, terms)
            with self._locked() as index:
                decided = check_chunk(
                    con,
                    chunk,
                    source=source,
                    policy=self.policy,
                    now=now,
                    lookup=index.lookup,
                    corrections=corrections,
                )
                con.register("decided", decided)
                counts = dict(
                    con.sql("SELECT outcome, count(*) FROM decided GROUP BY outcome").fetchall()
                )
                kept = counts.get("accepted", 0) + counts.get("corrected", 0)
                priors = self._priors(con) if counts.get("corrected") else None
                ledger_file = self._write_ledger(con, batch_id, source, priors) if kept else None
                receipt = BatchReceipt(
                    batch_id=batch_id,
                    source=source,
                    origin=origin,
                    part=part,
                    content_sha256=sha,
                    submitted_by=actor,
                    received_at=now,
                    correlation_id=correlation_id,
                    records=chunk.num_rows,
                    accepted=counts.get("accepted", 0),
                    duplicate=counts.get("duplicate", 0),
                    quarantined=sum(
                        counts.get(k, 0) for k in ("quarantined", "conflict", "conflict_batch")
                    ),
                    corrected=counts.get("corrected", 0),
                    ledger_file=ledger_file,
                )
                seq = self._commit(con, receipt, terms, priors, resubmit)
                if ledger_file:
                    keys = con.sql(
                        "SELECT key, content FROM decided "
                        "WHERE outcome IN ('accepted', 'corrected') ORDER BY line"
                    ).to_arrow_table()
                    index.add(
                        keys.column("key").combine_chunks(),
                        keys.column("content").combine_chunks(),
                        seq,
                    )
                else:
                    index.add(pa.array([], pa.uint64()), pa.array([], pa.uint64()), seq)
        finally:
            con.close()
        return BatchReceipt(**{**asdict(receipt), "seq": seq})

    def _priors(self, con: duckdb.DuckDBPyConnection) -> pa.Table:
        """The latest accepted revision of each corrected record (to reverse its quantity)."""
        with self.engine.connect() as conn:
            files = [
                str(self.ledger_dir / r.ledger_file)
                for r in conn.execute(
                    select(usage_batches.c.ledger_file)
                    .where(usage_batches.c.ledger_file.is_not(None))
                    .order_by(usage_batches.c.seq)
                )
            ]
        return con.sql(
            "SELECT * EXCLUDE (pos) FROM (SELECT l.*, list_position($files, l.filename) AS pos, "
            "row_number() OVER (PARTITION BY l.key ORDER BY list_position($files, l.filename) DESC)"
            " AS latest FROM read_parquet($files, filename = true) l "
            "WHERE l.key IN (SELECT key FROM decided WHERE outcome = 'corrected')) "
            "WHERE latest = 1",
            params={"files": files},
        ).to_arrow_table()

    def _write_ledger(
        self,
        con: duckdb.DuckDBPyConnection,
        batch_id: str,
        source: str,
        priors: pa.Table | None,
    ) -> str:
        """The batch's accepted records, fsynced under their final name before the commit."""
        if priors is not None:
            con.register("priors", priors)
            revision = "coalesce((SELECT p.revision FROM priors p WHERE p.key = d.key), 0) + 1"
        else:
            revision = "1"
        name = f"{batch_id}.parquet"
        tmp = self.ledger_dir / f"{name}.tmp"
        con.sql(
            f"""COPY (
              SELECT d.key, d.content, $source AS source, d.rid AS record_id,
                CAST({revision} AS INTEGER) AS revision, d.sub AS subscription, d.meter,
                d.q AS quantity, d.unit, d.ts AS "timestamp", d.period_start, d.period_end,
                d.praw AS properties, d.line, d.adjusted, $batch AS batch_id
              FROM decided d WHERE d.outcome IN ('accepted', 'corrected') ORDER BY d.line
            ) TO '{tmp}' (FORMAT parquet)""",
            params={"source": source, "batch": batch_id},
        )
        os.chmod(tmp, 0o600)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.ledger_dir / name)
        _fsync_dir(self.ledger_dir)
        return name

    # --- the commit ------------------------------------------------------------------------

    def _commit(
        self,
        con: duckdb.DuckDBPyConnection,
        receipt: BatchReceipt,
        terms: Sequence[SubscriptionTerms],
        priors: pa.Table | None,
        resubmit: bool,
    ) -> int:
        now = receipt.received_at
        quarantined = con.sql(
            "SELECT line, rid, field, reason, field, raw FROM decided "
            "WHERE outcome IN ('quarantined', 'conflict', 'conflict_batch') ORDER BY line"
        ).fetchall()
        deltas = self._deltas(con, priors)
        resubmitted = (
            [
                int(r[0])
                for r in con.sql(
                    "SELECT line FROM decided "
                    "WHERE outcome IN ('accepted', 'corrected', 'duplicate')"
                ).fetchall()
            ]
            if resubmit
            else []
        )
        corrections = (
            con.sql(
                "SELECT d.rid, d.sub, d.meter, CAST(d.q AS VARCHAR), d.ts, "
                'p.subscription, p.meter, CAST(p.quantity AS VARCHAR), p."timestamp", p.revision '
                "FROM decided d JOIN priors p ON p.key = d.key WHERE d.outcome = 'corrected' "
                "ORDER BY d.line"
            ).fetchall()
            if priors is not None
            else []
        )
        subjects = {t.subscription: t.subject for t in terms}
        with self.engine.begin() as conn:
            seq = int(
                conn.execute(
                    insert(usage_batches)
                    .values({k: v for k, v in asdict(receipt).items() if k != "seq"})
                    .returning(usage_batches.c.seq)
                ).scalar_one()
            )
            self._quarantine(conn, receipt, quarantined, resubmit)
            if resubmitted:
                conn.execute(
                    update(usage_quarantine)
                    .where(usage_quarantine.c.id.in_(resubmitted))
                    .values(
                        status="resubmitted",
                        resubmitted_batch=receipt.batch_id,
                        decided_by=receipt.submitted_by,
                        decided_at=now,
                    )
                )
            touched = self._aggregate(conn, receipt, seq, deltas)
            entries = [
                AuditEntry(
                    receipt.submitted_by,
                    "usage.batch.received",
                    entity=receipt.batch_id,
                    correlation_id=receipt.correlation_id,
                    details={
                        k: v
                        for k, v in receipt.as_dict().items()
                        if k not in ("batch_id", "correlation_id", "submitted_by", "seq")
                    },
                )
            ]
            for row in corrections:
                entries.append(
                    AuditEntry(
                        receipt.submitted_by,
                        "usage.record.corrected",
                        entity=storable(f"{receipt.source}:{row[0]}"),
                        correlation_id=receipt.correlation_id,
                        details={
                            "batch_id": receipt.batch_id,
                            "revision": int(row[9]) + 1,
                            "new": {
                                "subscription": row[1],
                                "meter": row[2],
                                "quantity": row[3],
                                "timestamp": str(row[4]),
                            },
                            "previous": {
                                "subscription": row[5],
                                "meter": row[6],
                                "quantity": row[7],
                                "timestamp": str(row[8]),
                            },
                        },
                    )
                )
            append_audit(conn, entries, now, chain=AUDIT_CHAIN)
            by_sub: dict[str, list[str]] = {}
            for sub, agg in touched:
                by_sub.setdefault(sub, []).append(agg)
            EventLog(self.engine, self.clock).append_in(
                conn,
                [
                    new_event(
                        BATCH_ACCEPTED,
                        subjects.get(sub, sub),
                        {
                            "batch_id": receipt.batch_id,
                            "subscription": sub,
                            "aggregates": sorted(aggs),
                            "source": receipt.source,
                        },
                        source=EVENT_SOURCE,
                        id=f"{receipt.batch_id}:{sub}",
                        correlation_id=receipt.correlation_id,
                        time=now,
                    )
                    for sub, aggs in sorted(by_sub.items())
                ],
            )
        return seq

    def _quarantine(
        self,
        conn: Connection,
        receipt: BatchReceipt,
        rows: Sequence[tuple[Any, ...]],
        resubmit: bool,
    ) -> None:
        if not rows:
            return
        if resubmit:
            for line, _rid, _field, reason, qfield, _raw in rows:
                conn.execute(
                    update(usage_quarantine)
                    .where(usage_quarantine.c.id == int(line))
                    .values(
                        reason=storable(reason),
                        field=qfield,
                        decided_by=receipt.submitted_by,
                        decided_at=receipt.received_at,
                    )
                )
            return
        conn.execute(
            insert(usage_quarantine),
            [
                {
                    "batch_id": receipt.batch_id,
                    "source": receipt.source,
                    "record_id": storable(rid)[:255] if rid else None,
                    "line": int(line),
                    "field": qfield,
                    "reason": storable(reason),
                    "raw": storable(raw),
                    "status": "held",
                    "received_at": receipt.received_at,
                }
                for line, rid, _field, reason, qfield, raw in rows
            ],
        )

    def _deltas(
        self, con: duckdb.DuckDBPyConnection, priors: pa.Table | None
    ) -> list[tuple[Any, ...]]:
        """Quantity and count changes per (subscription, meter, period) this batch makes."""
        reverse = (
            "UNION ALL SELECT subscription, meter, period_start, period_end, unit, "
            "-quantity, -1 FROM priors"
            if priors is not None
            else ""
        )
        return con.sql(
            "SELECT sub, meter, period_start, any_value(period_end), any_value(unit), "
            "CAST(sum(q) AS VARCHAR), CAST(sum(n) AS BIGINT) FROM ("
            "SELECT sub, meter, period_start, period_end, unit, q, 1 AS n FROM decided "
            f"WHERE outcome IN ('accepted', 'corrected') {reverse}) "
            "GROUP BY sub, meter, period_start ORDER BY sub, meter, period_start"
        ).fetchall()

    def _aggregate(
        self, conn: Connection, receipt: BatchReceipt, seq: int, deltas: Sequence[tuple[Any, ...]]
    ) -> list[tuple[str, str]]:
        """Fold the deltas into the aggregates; a version handed to posting gets a successor."""
        touched: list[tuple[str, str]] = []
        keyed = {agg_key(d[0], d[1], _aware(d[2])): d for d in deltas}
        current: dict[str, Any] = {}
        names = list(keyed)
        for start in range(0, len(names), 500):
            part = names[start : start + 500]
            newest = (
                select(usage_aggregates.c.agg_key, func.max(usage_aggregates.c.version).label("v"))
                .where(usage_aggregates.c.agg_key.in_(part))
                .group_by(usage_aggregates.c.agg_key)
                .subquery()
            )
            rows = conn.execute(
                select(usage_aggregates).join(
                    newest,
                    (newest.c.agg_key == usage_aggregates.c.agg_key)
                    & (newest.c.v == usage_aggregates.c.version),
                )
            )
            current.update({r.agg_key: r for r in rows})
        inserts: list[dict[str, Any]] = []
        for key, (sub, meter, start_at, end_at, unit, dq, dn) in keyed.items():
            start_at, end_at = _aware(start_at), _aware(end_at)
            row = current.get(key)
            quantity = Decimal(dq)
            if row is None:
                version, total, count, batches = 1, quantity, int(dn), [receipt.batch_id]
            else:
                total = Decimal(row.quantity) + quantity
                count = int(row.record_count) + int(dn)
                batches = list(dict.fromkeys([*json.loads(row.batch_ids), receipt.batch_id]))
                version = int(row.version) + (1 if row.handed_at is not None else 0)
            values = {
                "aggregate_id": aggregate_id(key, version),
                "agg_key": key,
                "version": version,
                "subscription": sub,
                "meter": meter,
                "period_start": start_at,
                "period_end": end_at,
                "unit": unit or "unit",
                "quantity": _plain(total),
                "record_count": count,
                "batch_ids": json.dumps(batches),
                "last_batch_seq": seq,
                "handed_at": None,
                "updated_at": receipt.received_at,
            }
            frozen_meanwhile = False
            if row is not None and row.handed_at is None:
                # posting may freeze this version after we read it: then it gets a successor
                updated = conn.execute(
                    update(usage_aggregates)
                    .where(usage_aggregates.c.aggregate_id == row.aggregate_id)
                    .where(usage_aggregates.c.handed_at.is_(None))
                    .values({k: v for k, v in values.items() if k != "aggregate_id"})
                )
                frozen_meanwhile = not updated.rowcount
                if frozen_meanwhile:
                    values["version"] = version = int(row.version) + 1
                    values["aggregate_id"] = aggregate_id(key, version)
            if row is None or row.handed_at is not None or frozen_meanwhile:
                inserts.append(values)
            touched.append((sub, values["aggregate_id"]))
        if inserts:
            conn.execute(insert(usage_aggregates), inserts)
        return touched


def storable(text: Any) -> str:
    """Text every store takes: PostgreSQL refuses NUL in text, so it becomes U+FFFD."""
    return str(text).replace("\x00", "\ufffd")


def _aware(value: datetime) -> datetime:
    """The checks compute in naive UTC wall clock; the store keeps aware UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _plain(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros (``1.50`` -> ``1.5``, ``0E-12`` -> ``0``)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def intake_for(engine: Engine, clock: Clock | None = None) -> UsageIntake:
    """The store's intake as configured (``Q2C_USAGE_DIR``, ``Q2C_USAGE_LATE_POLICY``)."""
    from quote2cash.settings import get_settings

    settings = get_settings()
    url = engine.url.render_as_string(hide_password=False)
    return UsageIntake(
        engine,
        usage_dir_for(url, settings.usage_dir),
        policy=settings.usage_late_policy,
        clock=clock,
        chunk_rows=settings.usage_chunk_rows,
    )


def list_batches(
    engine: Engine, *, limit: int = 50, source: str | None = None
) -> list[dict[str, Any]]:
    """Receipts, newest first."""
    query = select(usage_batches).order_by(usage_batches.c.seq.desc()).limit(limit)
    if source:
        query = query.where(usage_batches.c.source == source)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
