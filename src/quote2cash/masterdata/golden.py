"""The golden customer record: source records from CRM and ERP matched to one global id.

``ingest`` files a source record under a global id: an existing one when exactly one customer
auto-matches, a new one otherwise; doubtful pairs go to the steward queue with their evidence. A
steward's "same" decision merges the two global ids (audited); "different" is recorded. The
golden record is recomputed by survivorship whenever a customer's source records change.
On PostgreSQL ingests are serialised by a transaction-scoped advisory lock, so two records of
one company arriving together cannot both create a customer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, insert, or_, select, text, update

from quote2cash.canonical import Customer
from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.masterdata import xref
from quote2cash.masterdata.blocking import block_keys
from quote2cash.masterdata.matching import (
    CustomerCandidate,
    Matcher,
    MatchKeys,
    Outcome,
    PairEvidence,
    conflict,
)
from quote2cash.masterdata.survivorship import GoldenRecord, Provenance, Survivorship
from quote2cash.masterdata.xref import Kind, MergeResult
from quote2cash.store.schema import (
    md_customer_blocks,
    md_customer_sources,
    md_golden_customers,
    md_match_reviews,
)

_INGEST_LOCK = 0x51_32_43_4D  # "Q2CM"
_BLOCK_LENGTH = 300


class IngestOutcome(StrEnum):
    KNOWN = "known"
    AUTO_MATCH = "auto_match"
    REVIEW = "review"
    NEW = "new"


class ReviewStatus(StrEnum):
    OPEN = "open"
    SAME = "same"
    DIFFERENT = "different"


@dataclass(frozen=True)
class IngestResult:
    global_id: str
    outcome: IngestOutcome
    evidence: tuple[PairEvidence, ...] = ()
    review_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class MatchReview:
    id: int
    candidate: tuple[str, str]
    candidate_global_id: str
    existing: tuple[str, str]
    existing_global_id: str
    evidence: dict[str, Any]
    status: ReviewStatus
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None


@dataclass(frozen=True)
class StewardTask:
    """An account the hub would not file alone: its open match reviews, each with its evidence.
    A deal of the account waits (parked) until a steward decides the task."""

    system: str
    local_id: str
    global_id: str
    name: str
    opened_at: datetime
    reviews: tuple[MatchReview, ...]

    @property
    def options(self) -> tuple[str, ...]:
        """The existing customers (global ids) the account may be the same as."""
        return tuple(dict.fromkeys(r.existing_global_id for r in self.reviews))

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "local_id": self.local_id,
            "global_id": self.global_id,
            "name": self.name,
            "opened_at": self.opened_at.isoformat(),
            "options": list(self.options),
            "reviews": [
                {
                    "id": r.id,
                    "existing": list(r.existing),
                    "existing_global_id": r.existing_global_id,
                    "evidence": r.evidence,
                }
                for r in self.reviews
            ],
        }


@dataclass(frozen=True)
class TaskDecision:
    """A decided steward task: the customer the account now belongs to."""

    system: str
    local_id: str
    global_id: str
    same_as: str | None
    merge: MergeResult | None


@dataclass(frozen=True)
class AccountMergeResult:
    """What a source system's merge of two records did to the golden record."""

    survivor_global_id: str | None
    merged: MergeResult | None
    retired: bool


def _record_json(candidate: CustomerCandidate) -> str:
    return json.dumps(
        {
            "customer": candidate.customer.model_dump(mode="json"),
            "website": candidate.website,
        },
        sort_keys=True,
    )


def _candidate(row: Any) -> CustomerCandidate:
    data = json.loads(row.record)
    return CustomerCandidate(
        system=row.system,
        local_id=row.local_id,
        customer=Customer.model_validate(data["customer"]),
        updated_at=row.source_updated_at,
        website=data.get("website"),
    )


class GoldenCustomers:
    def __init__(
        self,
        engine: Engine,
        matcher: Matcher,
        survivorship: Survivorship,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        self.matcher = matcher
        self.survivorship = survivorship
        self.clock = clock or SystemClock()

    # --- ingest ---

    def ingest(
        self, candidate: CustomerCandidate, *, actor: str = "hub", correlation_id: str | None = None
    ) -> IngestResult:
        """File ``candidate`` under a customer's global id and refresh that golden record."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INGEST_LOCK})
            now = self.clock.now()
            result = self._ingest(conn, now, candidate, actor)
            opened = (
                [
                    AuditEntry(
                        actor=actor,
                        action="masterdata.steward_task.opened",
                        entity=f"customer/{result.global_id}",
                        correlation_id=correlation_id,
                        details={
                            "system": candidate.system,
                            "local_id": candidate.local_id,
                            "review_ids": list(result.review_ids),
                        },
                    )
                ]
                if result.review_ids
                else []
            )
            append_audit(
                conn,
                [
                    *opened,
                    AuditEntry(
                        actor=actor,
                        action=f"masterdata.customer.{result.outcome.value}",
                        entity=f"customer/{result.global_id}",
                        correlation_id=correlation_id,
                        details={
                            "system": candidate.system,
                            "local_id": candidate.local_id,
                            "global_id": result.global_id,
                            "evidence": [e.as_dict() for e in result.evidence],
                            "review_ids": list(result.review_ids),
                        },
                    ),
                ],
                now,
            )
            return result

    def _ingest(
        self, conn: Connection, now: datetime, candidate: CustomerCandidate, actor: str
    ) -> IngestResult:
        known = xref.lookup(conn, Kind.CUSTOMER, candidate.system, candidate.local_id)
        if known is not None:
            self._store_source(conn, now, candidate, known)
            self._refresh(conn, now, known)
            return IngestResult(known, IngestOutcome.KNOWN)
        keys = self.matcher.keys(candidate)
        by_global: dict[str, list[PairEvidence]] = {}
        for other in self._neighbours(conn, keys):
            if other[0].key == candidate.key:
                continue
            evidence = self.matcher.compare(candidate, other[0], keys)
            if evidence.outcome is not Outcome.NEW:
                by_global.setdefault(xref.resolve(conn, other[1]), []).append(evidence)
        auto = sorted(
            gid
            for gid, pairs in by_global.items()
            if any(p.outcome is Outcome.AUTO_MATCH for p in pairs)
        )
        if len(auto) == 1 and self._clash(conn, keys, auto[0]) is None:
            global_id = auto[0]
            xref.link(conn, now, global_id, candidate.system, candidate.local_id, actor)
            outcome = IngestOutcome.AUTO_MATCH
        else:
            global_id, _ = xref.ensure(
                conn, now, Kind.CUSTOMER, candidate.system, candidate.local_id, actor
            )
            outcome = IngestOutcome.REVIEW if by_global else IngestOutcome.NEW
        self._store_source(conn, now, candidate, global_id)
        review_ids = [
            self._queue(conn, now, candidate, global_id, other_gid, evidence)
            for other_gid, pairs in by_global.items()
            if other_gid != global_id
            for evidence in pairs
        ]
        self._refresh(conn, now, global_id)
        found = tuple(e for pairs in by_global.values() for e in pairs)
        return IngestResult(global_id, outcome, found, tuple(r for r in review_ids if r))

    def _clash(self, conn: Connection, keys: MatchKeys, global_id: str) -> str | None:
        """A conflict with any record already filed under ``global_id`` (not only the matched)."""
        rows = conn.execute(
            select(md_customer_sources).where(md_customer_sources.c.global_id == global_id)
        ).all()
        for row in rows:
            why = conflict(keys, self.matcher.keys(_candidate(row)))
            if why is not None:
                return why
        return None

    def _neighbours(self, conn: Connection, keys: MatchKeys) -> list[tuple[CustomerCandidate, str]]:
        """Stored source records sharing a block key of a useful size with ``keys``: the records
        ``q2c customers match`` (and ``MatchIndex``) would compare it with."""
        self._index_unblocked(conn)
        rules = self.matcher.config.blocking
        blocks = sorted({b[:_BLOCK_LENGTH] for b in block_keys(keys, rules)})
        if not blocks:
            return []
        b = md_customer_blocks.c
        members: dict[str, set[str]] = {}
        for block in blocks:
            # at most max_block_size rows read per block: the cost does not grow with the store
            rows = conn.execute(
                select(b.system, b.local_id).where(b.block == block).limit(rules.max_block_size)
            ).all()
            if len(rows) < rules.max_block_size:
                for system, local_id in rows:
                    members.setdefault(system, set()).add(local_id)
        if not members:
            return []
        s = md_customer_sources.c
        rows = conn.execute(
            select(md_customer_sources).where(
                or_(
                    *(
                        and_(s.system == system, s.local_id.in_(sorted(ids)))
                        for system, ids in sorted(members.items())
                    )
                )
            )
        ).all()
        return [(_candidate(row), str(row.global_id)) for row in rows]

    def _index_unblocked(self, conn: Connection) -> None:
        """Source records filed before block keys were kept get theirs (once, on first use)."""
        if conn.execute(select(md_customer_blocks.c.block).limit(1)).first() is not None:
            return
        for row in conn.execute(select(md_customer_sources)).all():
            self._store_blocks(conn, _candidate(row))

    def _store_blocks(self, conn: Connection, candidate: CustomerCandidate) -> None:
        b = md_customer_blocks.c
        conn.execute(
            delete(md_customer_blocks).where(
                b.system == candidate.system, b.local_id == candidate.local_id
            )
        )
        blocks = sorted(
            {
                k[:_BLOCK_LENGTH]
                for k in block_keys(self.matcher.keys(candidate), self.matcher.config.blocking)
            }
        )
        if blocks:
            conn.execute(
                insert(md_customer_blocks),
                [
                    {"block": k, "system": candidate.system, "local_id": candidate.local_id}
                    for k in blocks
                ],
            )

    def _store_source(
        self, conn: Connection, now: datetime, candidate: CustomerCandidate, global_id: str
    ) -> None:
        keys = self.matcher.keys(candidate)
        values = {
            "global_id": global_id,
            "name_key": keys.name_key[:500],
            "country": keys.country,
            "postal_code": keys.postal_code,
            "domain": keys.domain,
            "tax_keys": json.dumps(sorted(keys.tax_keys)),
            "record": _record_json(candidate),
            "source_updated_at": candidate.updated_at,
            "recorded_at": now,
        }
        c = md_customer_sources.c
        updated = conn.execute(
            update(md_customer_sources)
            .where(c.system == candidate.system, c.local_id == candidate.local_id)
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(
                insert(md_customer_sources).values(
                    system=candidate.system, local_id=candidate.local_id, **values
                )
            )
        self._store_blocks(conn, candidate)

    def _queue(
        self,
        conn: Connection,
        now: datetime,
        candidate: CustomerCandidate,
        global_id: str,
        other_gid: str,
        evidence: PairEvidence,
    ) -> int | None:
        c = md_match_reviews.c
        existing = conn.execute(
            select(c.id).where(
                c.candidate_system == candidate.system,
                c.candidate_local_id == candidate.local_id,
                c.existing_system == evidence.right[0],
                c.existing_local_id == evidence.right[1],
            )
        ).scalar_one_or_none()
        if existing is not None:
            return int(existing)
        return int(
            conn.execute(
                insert(md_match_reviews)
                .values(
                    candidate_system=candidate.system,
                    candidate_local_id=candidate.local_id,
                    candidate_global_id=global_id,
                    existing_system=evidence.right[0],
                    existing_local_id=evidence.right[1],
                    existing_global_id=other_gid,
                    evidence=json.dumps(evidence.as_dict(), sort_keys=True),
                    status=ReviewStatus.OPEN.value,
                    created_at=now,
                )
                .returning(c.id)
            ).scalar_one()
        )

    def _refresh(self, conn: Connection, now: datetime, global_id: str) -> GoldenRecord:
        rows = conn.execute(
            select(md_customer_sources).where(md_customer_sources.c.global_id == global_id)
        ).all()
        golden = self.survivorship.golden([_candidate(r) for r in rows], global_id=global_id)
        values = {
            "record": golden.customer.model_dump_json(),
            "provenance": json.dumps(
                {name: p.as_dict() for name, p in golden.provenance.items()}, sort_keys=True
            ),
            "updated_at": now,
        }
        updated = conn.execute(
            update(md_golden_customers)
            .where(md_golden_customers.c.global_id == global_id)
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(insert(md_golden_customers).values(global_id=global_id, **values))
        return golden

    # --- reading ---

    def golden(self, global_id: str) -> GoldenRecord | None:
        """The golden record of a customer (resolved past merges), None if it has no sources."""
        with self.engine.connect() as conn:
            survivor = xref.resolve(conn, global_id)
            row = conn.execute(
                select(md_golden_customers).where(md_golden_customers.c.global_id == survivor)
            ).one_or_none()
        if row is None:
            return None
        provenance = {
            name: Provenance(**value) for name, value in json.loads(row.provenance).items()
        }
        return GoldenRecord(Customer.model_validate_json(row.record), provenance)

    def reviews(self, status: ReviewStatus | None = ReviewStatus.OPEN) -> list[MatchReview]:
        query = select(md_match_reviews).order_by(md_match_reviews.c.id)
        if status is not None:
            query = query.where(md_match_reviews.c.status == status.value)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_review(row) for row in rows]

    # --- steward decisions and merges ---

    def decide(
        self,
        review_id: int,
        *,
        same: bool,
        actor: str,
        note: str | None = None,
        correlation_id: str | None = None,
    ) -> MergeResult | None:
        """Record a steward's decision; "same" merges the candidate into the existing customer."""
        with self.engine.begin() as conn:
            now = self.clock.now()
            row = conn.execute(
                select(md_match_reviews).where(md_match_reviews.c.id == review_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise DataError(f"match review {review_id} does not exist")
            if row.status != ReviewStatus.OPEN.value:
                raise ConflictError(
                    f"match review {review_id} was already decided ({row.status}) by "
                    f"{row.decided_by}"
                )
            status = ReviewStatus.SAME if same else ReviewStatus.DIFFERENT
            conn.execute(
                update(md_match_reviews)
                .where(md_match_reviews.c.id == review_id)
                .values(status=status.value, decided_by=actor, decided_at=now, decision_note=note)
            )
            append_audit(
                conn,
                [
                    AuditEntry(
                        actor=actor,
                        action="masterdata.match_review.decided",
                        entity=f"customer/{row.existing_global_id}",
                        correlation_id=correlation_id,
                        details={
                            "review_id": review_id,
                            "decision": status.value,
                            "candidate": [row.candidate_system, row.candidate_local_id],
                            "existing": [row.existing_system, row.existing_local_id],
                            "note": note,
                        },
                    )
                ],
                now,
            )
            if not same:
                return None
            return self._merge(
                conn,
                now,
                row.existing_global_id,
                row.candidate_global_id,
                actor=actor,
                reason=f"match review {review_id}: same customer",
                correlation_id=correlation_id,
            )

    def tasks(self) -> list[StewardTask]:
        """Open steward tasks (one per account with open reviews), oldest first."""
        by_candidate: dict[tuple[str, str], list[MatchReview]] = {}
        for review in self.reviews(ReviewStatus.OPEN):
            by_candidate.setdefault(review.candidate, []).append(review)
        with self.engine.connect() as conn:
            return [self._task(conn, key, reviews) for key, reviews in by_candidate.items()]

    def task(self, system: str, local_id: str) -> StewardTask | None:
        """The open steward task of one account, None when it has none."""
        c = md_match_reviews.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(md_match_reviews)
                .where(
                    c.candidate_system == system,
                    c.candidate_local_id == local_id,
                    c.status == ReviewStatus.OPEN.value,
                )
                .order_by(c.id)
            ).all()
            if not rows:
                return None
            return self._task(conn, (system, local_id), [_review(r) for r in rows])

    def _task(
        self, conn: Connection, key: tuple[str, str], reviews: list[MatchReview]
    ) -> StewardTask:
        own = xref.lookup(conn, Kind.CUSTOMER, key[0], key[1]) or reviews[0].candidate_global_id
        record = conn.execute(
            select(md_customer_sources.c.record).where(
                md_customer_sources.c.system == key[0], md_customer_sources.c.local_id == key[1]
            )
        ).scalar_one_or_none()
        name = json.loads(record)["customer"]["name"] if record else ""
        resolved = tuple(
            replace(r, existing_global_id=xref.resolve(conn, r.existing_global_id)) for r in reviews
        )
        opened = min(self._created(conn, r.id) for r in reviews)
        return StewardTask(key[0], key[1], own, name, opened, resolved)

    @staticmethod
    def _created(conn: Connection, review_id: int) -> datetime:
        at: datetime = conn.execute(
            select(md_match_reviews.c.created_at).where(md_match_reviews.c.id == review_id)
        ).scalar_one()
        return at

    def decide_task(
        self,
        system: str,
        local_id: str,
        *,
        same_as: str | None,
        actor: str,
        note: str | None = None,
        correlation_id: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> TaskDecision:
        """A steward's decision on an account's task: ``same_as`` one of the offered customers
        (the account merges into it), or None: a customer of its own. Every open review of the
        account is closed, the decision audited, and ``also(conn)`` runs in the same commit."""
        c = md_match_reviews.c
        with self.engine.begin() as conn:
            now = self.clock.now()
            rows = conn.execute(
                select(md_match_reviews)
                .where(
                    c.candidate_system == system,
                    c.candidate_local_id == local_id,
                    c.status == ReviewStatus.OPEN.value,
                )
                .order_by(c.id)
                .with_for_update()
            ).all()
            if not rows:
                raise ConflictError(
                    f"customer account {system}:{local_id} has no open steward task "
                    "(already decided, or never doubtful)"
                )
            own = xref.lookup(conn, Kind.CUSTOMER, system, local_id)
            if own is None:
                raise DataError(f"customer account {system}:{local_id} has no global id")
            existing = {r.id: xref.resolve(conn, r.existing_global_id) for r in rows}
            survivor: str | None = None
            if same_as is not None:
                try:
                    survivor = xref.resolve(conn, same_as.strip())
                except DataError:
                    survivor = None
                if survivor is None or survivor not in existing.values():
                    offered = ", ".join(sorted(set(existing.values())))
                    raise DataError(
                        f"customer account {system}:{local_id}: --same-as {same_as!r} is not one "
                        f"of the customers it was matched with; expected one of {offered}"
                    )
            for row in rows:
                same = existing[row.id] == survivor
                conn.execute(
                    update(md_match_reviews)
                    .where(c.id == row.id)
                    .values(
                        status=(ReviewStatus.SAME if same else ReviewStatus.DIFFERENT).value,
                        decided_by=actor,
                        decided_at=now,
                        decision_note=note,
                    )
                )
            append_audit(
                conn,
                [
                    AuditEntry(
                        actor=actor,
                        action="masterdata.steward_task.decided",
                        entity=f"customer/{survivor or own}",
                        correlation_id=correlation_id,
                        details={
                            "system": system,
                            "local_id": local_id,
                            "decision": "same" if survivor else "new",
                            "same_as": survivor,
                            "review_ids": [int(r.id) for r in rows],
                            "note": note,
                        },
                    )
                ],
                now,
            )
            merged = None
            if survivor is not None:
                merged = self._merge(
                    conn,
                    now,
                    survivor,
                    own,
                    actor=actor,
                    reason=f"steward task of {system}:{local_id}: same customer",
                    correlation_id=correlation_id,
                )
            if also is not None:
                also(conn)
            return TaskDecision(system, local_id, survivor or own, survivor, merged)

    def crm_account_merged(
        self,
        system: str,
        loser: str,
        survivor: str,
        *,
        actor: str,
        correlation_id: str | None = None,
    ) -> AccountMergeResult:
        """A source system merged record ``loser`` into ``survivor`` (the loser is gone): the
        loser's customer merges into the survivor's (cross-references, source records), or
        passes to the survivor when the hub did not know it; the loser's link is retired and
        its source record dropped; audited, one transaction. Safe to repeat."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INGEST_LOCK})
            now = self.clock.now()
            lost = xref.lookup(conn, Kind.CUSTOMER, system, loser)
            kept = xref.lookup(conn, Kind.CUSTOMER, system, survivor)
            merged: MergeResult | None = None
            if lost is not None and kept is None:
                xref.link(conn, now, lost, system, survivor, actor)
                kept = lost
            elif lost is not None and kept is not None and lost != kept:
                merged = self._merge(
                    conn,
                    now,
                    kept,
                    lost,
                    actor=actor,
                    reason=f"{system} merged account {loser} into {survivor}",
                    correlation_id=correlation_id,
                )
            retired = xref.retire(conn, now, Kind.CUSTOMER, system, loser, actor) is not None
            s = md_customer_sources.c
            conn.execute(delete(md_customer_sources).where(s.system == system, s.local_id == loser))
            b = md_customer_blocks.c
            conn.execute(delete(md_customer_blocks).where(b.system == system, b.local_id == loser))
            if (
                kept is not None
                and conn.execute(select(s.system).where(s.global_id == kept).limit(1)).first()
            ):
                self._refresh(conn, now, kept)
            append_audit(
                conn,
                [
                    AuditEntry(
                        actor=actor,
                        action="masterdata.customer.account_merged",
                        entity=f"customer/{kept or lost or '-'}",
                        correlation_id=correlation_id,
                        details={
                            "system": system,
                            "merged_account": loser,
                            "survivor_account": survivor,
                            "merged_customer": merged.merged if merged else None,
                            "survivor_customer": kept,
                            "moved": [list(m) for m in merged.moved] if merged else [],
                            "retired": retired,
                        },
                    )
                ],
                now,
            )
            return AccountMergeResult(kept, merged, retired)

    def merge(
        self,
        survivor: str,
        merged: str,
        *,
        actor: str,
        reason: str,
        correlation_id: str | None = None,
    ) -> MergeResult:
        """Merge two customers: cross-references, source records and hierarchy; audited."""
        with self.engine.begin() as conn:
            return self._merge(
                conn,
                self.clock.now(),
                survivor,
                merged,
                actor=actor,
                reason=reason,
                correlation_id=correlation_id,
            )

    def _merge(
        self,
        conn: Connection,
        now: datetime,
        survivor: str,
        merged: str,
        *,
        actor: str,
        reason: str,
        correlation_id: str | None,
    ) -> MergeResult:
        result = xref.merge(
            conn, now, survivor, merged, actor=actor, reason=reason, correlation_id=correlation_id
        )
        if result.already_merged:
            return result
        conn.execute(
            update(md_customer_sources)
            .where(md_customer_sources.c.global_id == result.merged)
            .values(global_id=result.survivor)
        )
        conn.execute(
            delete(md_golden_customers).where(md_golden_customers.c.global_id == result.merged)
        )
        self._refresh(conn, now, result.survivor)
        return result


def _review(row: Any) -> MatchReview:
    return MatchReview(
        id=int(row.id),
        candidate=(row.candidate_system, row.candidate_local_id),
        candidate_global_id=row.candidate_global_id,
        existing=(row.existing_system, row.existing_local_id),
        existing_global_id=row.existing_global_id,
        evidence=json.loads(row.evidence),
        status=ReviewStatus(row.status),
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
    )
