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
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, or_, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from quote2cash.canonical import Customer
from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.masterdata import xref
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
from quote2cash.store.schema import md_customer_sources, md_golden_customers, md_match_reviews

_INGEST_LOCK = 0x51_32_43_4D  # "Q2CM"


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
            append_audit(
                conn,
                [
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
                    )
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
        for other in self._neighbours(conn, keys.country, keys.domain, keys.tax_keys):
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
            filed = MatchKeys(
                name_key=row.name_key,
                country=row.country,
                postal_code=row.postal_code,
                domain=row.domain,
                tax_keys=frozenset(json.loads(row.tax_keys)),
            )
            why = conflict(keys, filed)
            if why is not None:
                return why
        return None

    def _neighbours(
        self, conn: Connection, country: str | None, domain: str | None, tax_keys: frozenset[str]
    ) -> list[tuple[CustomerCandidate, str]]:
        """Stored source records that could match: same or unknown country, domain or tax id."""
        c = md_customer_sources.c
        conditions: list[ColumnElement[bool]] = [c.country.is_(None)]
        conditions.append(c.country == country if country is not None else c.country.isnot(None))
        if domain:
            conditions.append(c.domain == domain)
        conditions += [c.tax_keys.like(f'%"{key}"%') for key in sorted(tax_keys)]
        rows = conn.execute(select(md_customer_sources).where(or_(*conditions))).all()
        return [(_candidate(row), str(row.global_id)) for row in rows]

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
