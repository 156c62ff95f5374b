"""The cross-reference store: one global id per business object, mapped to each system's local ids.

Guarantees: a (kind, system, local id) has at most one current global id (a partial unique index,
so concurrent ``ensure_global_id`` calls create exactly one); nothing is deleted (a moved
reference is closed with ``valid_to`` and reopened, so history stays readable); a merged global
id resolves to its survivor forever; every merge and re-parent is an audit entry in the same
transaction as the change.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from quote2cash.engine.audit import AuditEntry, append_audit
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.errors import ConflictError, DataError
from quote2cash.store.schema import md_customer_parents, md_global_ids, md_xrefs

_SYSTEM = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_MAX_CHAIN = 64


class Kind(StrEnum):
    """The kinds of business object that carry a global id."""

    CUSTOMER = "customer"
    CONTACT = "contact"
    PRODUCT = "product"
    PRICE = "price"
    SUBSCRIPTION = "subscription"
    ORDER = "order"
    INVOICE = "invoice"
    PAYMENT = "payment"


PREFIXES: dict[Kind, str] = {
    Kind.CUSTOMER: "CUS",
    Kind.CONTACT: "CON",
    Kind.PRODUCT: "PRD",
    Kind.PRICE: "PRC",
    Kind.SUBSCRIPTION: "SUB",
    Kind.ORDER: "ORD",
    Kind.INVOICE: "INV",
    Kind.PAYMENT: "PAY",
}
"""Global ids read as ``CUS-<32 hex>``: upper case, so they never look like a Stripe or SF id."""


@dataclass(frozen=True)
class CrossReference:
    """One (global id -> system local id) link over the time it was in force."""

    global_id: str
    kind: str
    system: str
    local_id: str
    valid_from: datetime
    valid_to: datetime | None
    changed_by: str

    @property
    def current(self) -> bool:
        return self.valid_to is None


@dataclass(frozen=True)
class MergeResult:
    survivor: str
    merged: str
    moved: tuple[tuple[str, str], ...] = ()
    reparented_children: tuple[str, ...] = ()
    already_merged: bool = False


@dataclass(frozen=True)
class ParentLink:
    child: str
    parent: str | None
    valid_from: datetime
    valid_to: datetime | None
    changed_by: str


@dataclass
class _Ctx:
    conn: Connection
    now: datetime


def new_global_id(kind: Kind | str) -> str:
    return f"{PREFIXES[Kind(kind)]}-{uuid.uuid4().hex}"


def _check_key(kind: Kind | str, system: str, local_id: str) -> Kind:
    try:
        parsed = Kind(kind)
    except ValueError:
        expected = ", ".join(k.value for k in Kind)
        raise DataError(f"unknown kind {kind!r}: expected one of {expected}") from None
    if not _SYSTEM.match(system):
        raise DataError(f"system {system!r} must be a lowercase name such as 'crm', 'erp'")
    if not local_id or len(local_id) > 255:
        raise DataError(f"{kind} {system} id must be 1-255 characters, got {local_id!r}")
    return parsed


# --- connection-level operations: usable inside a caller's transaction ---


def lookup(conn: Connection, kind: Kind | str, system: str, local_id: str) -> str | None:
    """The current global id of ``(kind, system, local_id)``, resolved past merges."""
    found = conn.execute(
        select(md_xrefs.c.global_id).where(
            md_xrefs.c.kind == str(kind),
            md_xrefs.c.system == system,
            md_xrefs.c.local_id == local_id,
            md_xrefs.c.valid_to.is_(None),
        )
    ).scalar_one_or_none()
    return None if found is None else resolve(conn, found)


def resolve(conn: Connection, global_id: str) -> str:
    """Follow merges to the surviving global id; an unknown id is a DataError."""
    current = global_id
    for _ in range(_MAX_CHAIN):
        row = conn.execute(
            select(md_global_ids.c.merged_into).where(md_global_ids.c.global_id == current)
        ).one_or_none()
        if row is None:
            raise DataError(f"unknown global id {current!r}")
        if row.merged_into is None:
            return current
        current = str(row.merged_into)
    raise DataError(f"global id {global_id!r}: merge chain longer than {_MAX_CHAIN}")


def kind_of(conn: Connection, global_id: str) -> Kind:
    found = conn.execute(
        select(md_global_ids.c.kind).where(md_global_ids.c.global_id == global_id)
    ).scalar_one_or_none()
    if found is None:
        raise DataError(f"unknown global id {global_id!r}")
    return Kind(found)


def ensure(
    conn: Connection, now: datetime, kind: Kind | str, system: str, local_id: str, actor: str
) -> tuple[str, bool]:
    """The global id of ``(kind, system, local_id)``, creating exactly one if none exists.

    Returns ``(global_id, created)``. A concurrent creator wins the unique index; the loser's
    savepoint is rolled back and it reads the winner's id.
    """
    parsed = _check_key(kind, system, local_id)
    for _ in range(3):
        existing = lookup(conn, parsed, system, local_id)
        if existing is not None:
            return existing, False
        global_id = new_global_id(parsed)
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(md_global_ids).values(
                        global_id=global_id, kind=parsed.value, created_at=now
                    )
                )
                conn.execute(
                    insert(md_xrefs).values(
                        global_id=global_id,
                        kind=parsed.value,
                        system=system,
                        local_id=local_id,
                        valid_from=now,
                        changed_by=actor,
                    )
                )
        except IntegrityError:
            continue
        return global_id, True
    raise ConflictError(f"{parsed} {system}:{local_id}: could not create or read its global id")


def link(
    conn: Connection, now: datetime, global_id: str, system: str, local_id: str, actor: str
) -> bool:
    """Attach ``system``'s ``local_id`` to ``global_id``; True if a new link was written.

    Linking an id already linked to another global id is a ConflictError (merge them instead).
    """
    survivor = resolve(conn, global_id)
    kind = kind_of(conn, survivor)
    _check_key(kind, system, local_id)
    existing = lookup(conn, kind, system, local_id)
    if existing == survivor:
        return False
    if existing is not None:
        raise ConflictError(
            f"{kind} {system}:{local_id} is already linked to {existing}, not {survivor}; "
            "merge the two global ids instead"
        )
    try:
        with conn.begin_nested():
            conn.execute(
                insert(md_xrefs).values(
                    global_id=survivor,
                    kind=kind.value,
                    system=system,
                    local_id=local_id,
                    valid_from=now,
                    changed_by=actor,
                )
            )
    except IntegrityError:
        winner = lookup(conn, kind, system, local_id)
        if winner == survivor:
            return False
        raise ConflictError(
            f"{kind} {system}:{local_id} was linked to {winner} concurrently"
        ) from None
    return True


def retire(
    conn: Connection, now: datetime, kind: Kind | str, system: str, local_id: str, actor: str
) -> str | None:
    """Close the current link of a local id that no longer exists in its system (merged away);
    its history stays readable. Returns the global id it was linked to, None if none."""
    parsed = _check_key(kind, system, local_id)
    closed = conn.execute(
        update(md_xrefs)
        .where(
            md_xrefs.c.kind == parsed.value,
            md_xrefs.c.system == system,
            md_xrefs.c.local_id == local_id,
            md_xrefs.c.valid_to.is_(None),
        )
        .values(valid_to=now, changed_by=actor)
        .returning(md_xrefs.c.global_id)
    ).scalar_one_or_none()
    return None if closed is None else str(closed)


def current_refs(conn: Connection, global_id: str) -> list[CrossReference]:
    rows = conn.execute(
        select(md_xrefs)
        .where(md_xrefs.c.global_id == global_id, md_xrefs.c.valid_to.is_(None))
        .order_by(md_xrefs.c.valid_from, md_xrefs.c.id)
    ).all()
    return [_xref(row) for row in rows]


def _merged_ids(conn: Connection, survivor: str) -> list[str]:
    return [
        str(gid)
        for gid in conn.execute(
            select(md_global_ids.c.global_id).where(md_global_ids.c.merged_into == survivor)
        ).scalars()
    ]


def _xref(row: object) -> CrossReference:
    return CrossReference(
        global_id=row.global_id,  # type: ignore[attr-defined]
        kind=row.kind,  # type: ignore[attr-defined]
        system=row.system,  # type: ignore[attr-defined]
        local_id=row.local_id,  # type: ignore[attr-defined]
        valid_from=row.valid_from,  # type: ignore[attr-defined]
        valid_to=row.valid_to,  # type: ignore[attr-defined]
        changed_by=row.changed_by,  # type: ignore[attr-defined]
    )


def _lock(conn: Connection, ids: Iterable[str]) -> None:
    """Lock the global id rows in a fixed order so two merges cannot deadlock (PostgreSQL)."""
    for gid in sorted(set(ids)):
        conn.execute(
            select(md_global_ids.c.global_id)
            .where(md_global_ids.c.global_id == gid)
            .with_for_update()
        ).one_or_none()


def _lock_resolved(conn: Connection, first: str, second: str | None) -> tuple[str, str | None]:
    """Resolve two ids and lock their rows; re-resolve under the lock until stable, so a merge
    committed meanwhile by another transaction is seen (no stale survivor, no merge cycle)."""
    for _ in range(_MAX_CHAIN):
        a = resolve(conn, first)
        b = None if second is None else resolve(conn, second)
        _lock(conn, [a] if b is None else [a, b])
        if (resolve(conn, first), None if second is None else resolve(conn, second)) == (a, b):
            return a, b
    raise ConflictError(f"{first} / {second}: merged concurrently too often, try again")


def current_parent(conn: Connection, child: str) -> str | None:
    found = conn.execute(
        select(md_customer_parents.c.parent_id).where(
            md_customer_parents.c.child_id == child, md_customer_parents.c.valid_to.is_(None)
        )
    ).scalar_one_or_none()
    return None if found is None else str(found)


def current_children(conn: Connection, parent: str) -> list[str]:
    return [
        str(c)
        for c in conn.execute(
            select(md_customer_parents.c.child_id)
            .where(
                md_customer_parents.c.parent_id == parent,
                md_customer_parents.c.valid_to.is_(None),
            )
            .order_by(md_customer_parents.c.child_id)
        ).scalars()
    ]


def _set_parent(ctx: _Ctx, child: str, parent: str | None, actor: str) -> None:
    ctx.conn.execute(
        update(md_customer_parents)
        .where(md_customer_parents.c.child_id == child, md_customer_parents.c.valid_to.is_(None))
        .values(valid_to=ctx.now)
    )
    if parent is not None:
        ctx.conn.execute(
            insert(md_customer_parents).values(
                child_id=child, parent_id=parent, valid_from=ctx.now, changed_by=actor
            )
        )


def reparent(
    conn: Connection,
    now: datetime,
    child: str,
    parent: str | None,
    *,
    actor: str,
    reason: str,
    correlation_id: str | None = None,
) -> bool:
    """Make ``parent`` the parent account of ``child`` (None detaches it); audited.

    Both must be customers; a parent that is the child or one of its descendants is refused
    (ConflictError), so the hierarchy stays a forest. Returns False when nothing changed.
    """
    ctx = _Ctx(conn, now)
    child_id, parent_id = _lock_resolved(conn, child, parent)
    if parent_id is not None and parent_id == child_id:
        raise ConflictError(
            f"customer {child_id} cannot have parent {parent} (the same account after merges)"
        )
    for gid in filter(None, (child_id, parent_id)):
        if kind_of(conn, gid) is not Kind.CUSTOMER:
            raise DataError(f"{gid} is a {kind_of(conn, gid)}, only customers have parents")
    if parent_id is not None:
        ancestor: str | None = parent_id
        for _ in range(_MAX_CHAIN):
            if ancestor is None:
                break
            if ancestor == child_id:
                raise ConflictError(
                    f"customer {child_id} cannot have parent {parent_id}: {parent_id} is "
                    f"{'the same account' if parent_id == child_id else 'one of its descendants'}"
                )
            ancestor = current_parent(conn, ancestor)
    old = current_parent(conn, child_id)
    if old == parent_id:
        return False
    _set_parent(ctx, child_id, parent_id, actor)
    append_audit(
        conn,
        [
            AuditEntry(
                actor=actor,
                action="masterdata.customer.reparented",
                entity=f"customer/{child_id}",
                correlation_id=correlation_id,
                details={
                    "child": child_id,
                    "old_parent": old,
                    "new_parent": parent_id,
                    "reason": reason,
                },
            )
        ],
        now,
    )
    return True


def merge(
    conn: Connection,
    now: datetime,
    survivor: str,
    merged: str,
    *,
    actor: str,
    reason: str,
    correlation_id: str | None = None,
) -> MergeResult:
    """Merge ``merged`` into ``survivor``: every current reference moves to the survivor, the
    merged id resolves to it forever, its child accounts are re-parented to it; all audited.

    Merging ids that already resolve to the same survivor is a no-op (safe to retry).
    """
    survivor_id, resolved = _lock_resolved(conn, survivor, merged)
    merged_id = resolved or merged
    if survivor_id == merged_id:
        return MergeResult(survivor_id, merged, already_merged=True)
    kind = kind_of(conn, survivor_id)
    if kind_of(conn, merged_id) is not kind:
        raise ConflictError(
            f"cannot merge {merged_id} ({kind_of(conn, merged_id)}) into {survivor_id} ({kind})"
        )
    moving = current_refs(conn, merged_id)
    conn.execute(
        update(md_xrefs)
        .where(md_xrefs.c.global_id == merged_id, md_xrefs.c.valid_to.is_(None))
        .values(valid_to=now)
    )
    if moving:
        conn.execute(
            insert(md_xrefs),
            [
                {
                    "global_id": survivor_id,
                    "kind": ref.kind,
                    "system": ref.system,
                    "local_id": ref.local_id,
                    "valid_from": now,
                    "valid_to": None,
                    "changed_by": actor,
                }
                for ref in moving
            ],
        )
    conn.execute(
        update(md_global_ids)
        .where(md_global_ids.c.merged_into == merged_id)
        .values(merged_into=survivor_id)
    )
    conn.execute(
        update(md_global_ids)
        .where(md_global_ids.c.global_id == merged_id)
        .values(merged_into=survivor_id, merged_at=now)
    )
    ctx = _Ctx(conn, now)
    reparented: list[str] = []
    audit: list[AuditEntry] = []
    if kind is Kind.CUSTOMER:
        merged_parent = current_parent(conn, merged_id)
        if merged_parent is not None:
            _set_parent(ctx, merged_id, None, actor)
        for child in current_children(conn, merged_id):
            new_parent = None if child == survivor_id else survivor_id
            _set_parent(ctx, child, new_parent, actor)
            reparented.append(child)
            audit.append(
                AuditEntry(
                    actor=actor,
                    action="masterdata.customer.reparented",
                    entity=f"customer/{child}",
                    correlation_id=correlation_id,
                    details={
                        "child": child,
                        "old_parent": merged_id,
                        "new_parent": new_parent,
                        "reason": f"parent {merged_id} merged into {survivor_id}",
                    },
                )
            )
    audit.insert(
        0,
        AuditEntry(
            actor=actor,
            action="masterdata.xref.merged",
            entity=f"{kind}/{survivor_id}",
            correlation_id=correlation_id,
            details={
                "kind": kind.value,
                "survivor": survivor_id,
                "merged": merged_id,
                "moved": [[ref.system, ref.local_id] for ref in moving],
                "reparented_children": reparented,
                "reason": reason,
            },
        ),
    )
    append_audit(conn, audit, now)
    return MergeResult(
        survivor_id,
        merged_id,
        tuple((ref.system, ref.local_id) for ref in moving),
        tuple(reparented),
    )


# --- the store: each call is its own transaction ---


class XrefStore:
    """Cross-references over the hub's store; every method commits on its own."""

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()

    def ensure_global_id(
        self, kind: Kind | str, system: str, local_id: str, *, actor: str = "hub"
    ) -> str:
        """The existing global id of ``(kind, system, local_id)``, or exactly one new one."""
        with self.engine.begin() as conn:
            return ensure(conn, self.clock.now(), kind, system, local_id, actor)[0]

    def link(self, global_id: str, system: str, local_id: str, *, actor: str = "hub") -> bool:
        with self.engine.begin() as conn:
            return link(conn, self.clock.now(), global_id, system, local_id, actor)

    def global_id_for(self, kind: Kind | str, system: str, local_id: str) -> str | None:
        with self.engine.connect() as conn:
            return lookup(conn, kind, system, local_id)

    def resolve(self, global_id: str) -> str:
        with self.engine.connect() as conn:
            return resolve(conn, global_id)

    def system_ids(self, global_id: str) -> dict[str, tuple[str, ...]]:
        """Current local ids per system of the (resolved) global id, oldest link first."""
        with self.engine.connect() as conn:
            refs = current_refs(conn, resolve(conn, global_id))
        result: dict[str, tuple[str, ...]] = {}
        for ref in refs:
            result[ref.system] = (*result.get(ref.system, ()), ref.local_id)
        return result

    def local_id(self, global_id: str, system: str) -> str | None:
        """The primary (oldest current) local id in ``system``, if any."""
        ids = self.system_ids(global_id).get(system, ())
        return ids[0] if ids else None

    def history(self, global_id: str) -> list[CrossReference]:
        """Every link ever held by this global id or any id merged into it, oldest first."""
        with self.engine.connect() as conn:
            survivor = resolve(conn, global_id)
            ids = [survivor, *_merged_ids(conn, survivor)]
            rows = conn.execute(
                select(md_xrefs)
                .where(md_xrefs.c.global_id.in_(ids))
                .order_by(md_xrefs.c.valid_from, md_xrefs.c.id)
            ).all()
        return [_xref(row) for row in rows]

    def history_of(self, kind: Kind | str, system: str, local_id: str) -> list[CrossReference]:
        """Which global ids ``(kind, system, local_id)`` was linked to, and when."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(md_xrefs)
                .where(
                    and_(
                        md_xrefs.c.kind == str(kind),
                        md_xrefs.c.system == system,
                        md_xrefs.c.local_id == local_id,
                    )
                )
                .order_by(md_xrefs.c.valid_from, md_xrefs.c.id)
            ).all()
        return [_xref(row) for row in rows]

    def merged_ids(self, global_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return _merged_ids(conn, resolve(conn, global_id))

    def merge(
        self,
        survivor: str,
        merged: str,
        *,
        actor: str,
        reason: str,
        correlation_id: str | None = None,
    ) -> MergeResult:
        with self.engine.begin() as conn:
            return merge(
                conn,
                self.clock.now(),
                survivor,
                merged,
                actor=actor,
                reason=reason,
                correlation_id=correlation_id,
            )

    def reparent(
        self,
        child: str,
        parent: str | None,
        *,
        actor: str,
        reason: str,
        correlation_id: str | None = None,
    ) -> bool:
        with self.engine.begin() as conn:
            return reparent(
                conn,
                self.clock.now(),
                child,
                parent,
                actor=actor,
                reason=reason,
                correlation_id=correlation_id,
            )

    def parent_of(self, global_id: str) -> str | None:
        with self.engine.connect() as conn:
            return current_parent(conn, resolve(conn, global_id))

    def children_of(self, global_id: str) -> list[str]:
        with self.engine.connect() as conn:
            return current_children(conn, resolve(conn, global_id))

    def hierarchy_history(self, child: str) -> list[ParentLink]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(md_customer_parents)
                .where(md_customer_parents.c.child_id == resolve(conn, child))
                .order_by(md_customer_parents.c.valid_from, md_customer_parents.c.id)
            ).all()
        return [
            ParentLink(r.child_id, r.parent_id, r.valid_from, r.valid_to, r.changed_by)
            for r in rows
        ]
