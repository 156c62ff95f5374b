"""The declared schema of the hub's store. Alembic migrations must produce exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from quote2cash.store.types import UtcDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# BigInteger autoincrement primary keys need INTEGER on SQLite to be rowid aliases.
BigId = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("pos", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("time", UtcDateTime(), nullable=False),
    Column("correlation_id", String(100), nullable=False),
    Column("causation_id", String(200), nullable=True),
    Column("sequence", BigInteger, nullable=False),
    Column("schema_version", Integer, nullable=False, server_default=text("1")),
    Column("data", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("traceparent", String(55), nullable=True),
    UniqueConstraint("source", "event_id"),
    UniqueConstraint("subject", "sequence"),
    Index("ix_events_correlation_id", "correlation_id"),
    Index("ix_events_time", "time"),
    Index("ix_events_type_time", "type", "time"),
)
"""What was taken in: written once at intake, never touched by dispatch (migration 0017). Only an
operator's correction (``data``) or a replay's new trace (``traceparent``) changes a row."""

event_state = Table(
    "event_state",
    metadata,
    Column("pos", BigId, primary_key=True, autoincrement=False),
    Column("subject", String(300), nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("category", String(32), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("processed_at", UtcDateTime(), nullable=True),
    # Pending work only: the dispatcher's load reads a claimed subject's pending prefix, never
    # its processed history. A row leaving 'pending' writes no entry here (the predicate).
    Index(
        "ix_event_state_pending_subject_pos",
        "subject",
        "pos",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)
"""Where each event stands in dispatch, one narrow row per event (same ``pos``), written in the
intake's transaction. Completing an event rewrites this row and its primary key entry only,
not the wide ``events`` row and its six indexes (migration 0017)."""

EVENTS_WITH_STATE = events.join(event_state, event_state.c.pos == events.c.pos)
"""An event with its dispatch state: readers select ``events`` and ``STATE_COLUMNS`` from it."""
STATE_COLUMNS = (
    event_state.c.status,
    event_state.c.attempts,
    event_state.c.category,
    event_state.c.last_error,
    event_state.c.processed_at,
)

subjects = Table(
    "subjects",
    metadata,
    Column("subject", String(300), primary_key=True),
    Column("last_sequence", BigInteger, nullable=False, server_default=text("0")),
    Column("pending", BigInteger, nullable=False, server_default=text("0")),
    Column("held_by", BigInteger, nullable=True),
    Column("ready_at", UtcDateTime(), nullable=True),
    Column("waiting_on", String(100), nullable=True),
    Column("lease_owner", String(120), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
    Column("claimed_at", BigInteger, nullable=False, server_default=text("0")),
    Index(
        "ix_subjects_ready",
        "claimed_at",
        sqlite_where=text("pending > 0 AND held_by IS NULL"),
        postgresql_where=text("pending > 0 AND held_by IS NULL"),
    ),
    Index(
        "ix_subjects_leased",
        "lease_until",
        sqlite_where=text("lease_owner IS NOT NULL"),
        postgresql_where=text("lease_owner IS NOT NULL"),
    ),
    Index(
        "ix_subjects_held_by",
        "held_by",
        sqlite_where=text("held_by IS NOT NULL"),
        postgresql_where=text("held_by IS NOT NULL"),
    ),
)

# No foreign key to ``events`` (migration 0026): only the recorder writes step rows, for events
# it loaded as pending, and PostgreSQL's check cost a row lock per step.
steps = Table(
    "steps",
    metadata,
    Column("event_pos", BigInteger, primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("idempotency_key", String(80), nullable=False),
    Column("system", String(50), nullable=True),
    Column("result", Text, nullable=False),
    Column("completed_at", UtcDateTime(), nullable=False),
)

failures = Table(
    "failures",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_pos", BigInteger, ForeignKey("events.pos"), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("category", String(32), nullable=True),
    Column("system", String(50), nullable=True),
    Column("error", Text, nullable=False),
    Column("retry_at", UtcDateTime(), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_failures_at", "at"),
)

systems = Table(
    "systems",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text, nullable=True),
    Column("changed_by", String(100), nullable=True),
    Column("changed_at", UtcDateTime(), nullable=True),
)

maintenance_windows = Table(
    "maintenance_windows",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("system", String(50), nullable=False, index=True),
    Column("starts_at", UtcDateTime(), nullable=False),
    Column("ends_at", UtcDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100), nullable=False),
)

operators = Table(
    "operators",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("roles", Text, nullable=False, server_default=text("''")),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("must_change_password", Boolean, nullable=False, server_default=text("false")),
    Column("email", String(320), nullable=True),
    Column("disabled_at", UtcDateTime(), nullable=True),
    Index("ix_operators_email", "email", unique=True),
)

# --- identity: sign-in throttling and console sessions (migration 0007) ---------------------

auth_throttle = Table(
    "auth_throttle",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_started_at", UtcDateTime(), nullable=False),
    Column("lockouts", Integer, nullable=False, server_default=text("0")),
    Column("locked_until", UtcDateTime(), nullable=True),
)

operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("operator", String(100), nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)

replay_requests = Table(
    "replay_requests",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("selector", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("finance_sensitive", Boolean, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decision_note", Text, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    # ``id`` orders entries across chains for readers; each chain numbers its own ``seq`` from 1.
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("chain", String(200), nullable=False, server_default=text("'main'")),
    Column("seq", BigInteger, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("entity", String(300), nullable=True),
    Column("correlation_id", String(100), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("key_id", String(16), nullable=True),
    UniqueConstraint("chain", "seq"),
    Index("ix_audit_log_correlation_id", "correlation_id"),
    Index("ix_audit_log_entity", "entity"),
)

# One head row per chain: writers of different chains never lock the same row.
audit_head = Table(
    "audit_head",
    metadata,
    Column("chain", String(200), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("store_id", String(32), nullable=True),
)

# The head of each partition chain as last anchored into "main" (a cache; the signed anchor
# entries in "main" are the evidence).
audit_anchors = Table(
    "audit_anchors",
    metadata,
    Column("chain", String(200), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# --- master data (masterdata/): cross-references, hierarchy, golden customers, steward queue ---

md_global_ids = Table(
    "md_global_ids",
    metadata,
    Column("global_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("merged_into", String(64), ForeignKey("md_global_ids.global_id"), nullable=True),
    Column("merged_at", UtcDateTime(), nullable=True),
    Index("ix_md_global_ids_merged_into", "merged_into"),
)

md_xrefs = Table(
    "md_xrefs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("global_id", String(64), ForeignKey("md_global_ids.global_id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("system", String(50), nullable=False),
    Column("local_id", String(255), nullable=False),
    Column("valid_from", UtcDateTime(), nullable=False),
    Column("valid_to", UtcDateTime(), nullable=True),
    Column("changed_by", String(100), nullable=False),
    Index("ix_md_xrefs_global_id", "global_id"),
    Index("ix_md_xrefs_lookup", "kind", "system", "local_id"),
    Index(
        "ix_md_xrefs_current",
        "kind",
        "system",
        "local_id",
        unique=True,
        sqlite_where=text("valid_to IS NULL"),
        postgresql_where=text("valid_to IS NULL"),
    ),
)

md_customer_parents = Table(
    "md_customer_parents",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("child_id", String(64), ForeignKey("md_global_ids.global_id"), nullable=False),
    Column("parent_id", String(64), ForeignKey("md_global_ids.global_id"), nullable=True),
    Column("valid_from", UtcDateTime(), nullable=False),
    Column("valid_to", UtcDateTime(), nullable=True),
    Column("changed_by", String(100), nullable=False),
    Index("ix_md_customer_parents_child_id", "child_id"),
    Index("ix_md_customer_parents_parent_id", "parent_id"),
    Index(
        "ix_md_customer_parents_current",
        "child_id",
        unique=True,
        sqlite_where=text("valid_to IS NULL"),
        postgresql_where=text("valid_to IS NULL"),
    ),
)

md_customer_sources = Table(
    "md_customer_sources",
    metadata,
    Column("system", String(50), primary_key=True),
    Column("local_id", String(255), primary_key=True),
    Column("global_id", String(64), ForeignKey("md_global_ids.global_id"), nullable=False),
    Column("name_key", String(500), nullable=False),
    Column("country", String(2), nullable=True),
    Column("postal_code", String(32), nullable=True),
    Column("domain", String(255), nullable=True),
    Column("tax_keys", Text, nullable=False),
    Column("record", Text, nullable=False),
    Column("source_updated_at", UtcDateTime(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_md_customer_sources_global_id", "global_id"),
    Index("ix_md_customer_sources_country", "country"),
    Index("ix_md_customer_sources_domain", "domain"),
)

md_customer_blocks = Table(
    "md_customer_blocks",
    metadata,
    Column("block", String(300), primary_key=True),
    Column("system", String(50), primary_key=True),
    Column("local_id", String(255), primary_key=True),
    Index("ix_md_customer_blocks_record", "system", "local_id"),
)
"""Each golden-record source record under every match block key it has (``blocking.block_keys``):
the candidates an incremental match compares, as the batch run would."""

md_sync_state = Table(
    "md_sync_state",
    metadata,
    Column("global_id", String(64), ForeignKey("md_global_ids.global_id"), primary_key=True),
    Column("system", String(50), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("local_id", String(255), nullable=False),
    Column("synced_at", UtcDateTime(), nullable=False),
)
"""What the hub last wrote of a customer to a system (SHA-256 of the canonical record), so an
unchanged customer is not written again."""

md_golden_customers = Table(
    "md_golden_customers",
    metadata,
    Column("global_id", String(64), ForeignKey("md_global_ids.global_id"), primary_key=True),
    Column("record", Text, nullable=False),
    Column("provenance", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

md_match_reviews = Table(
    "md_match_reviews",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("candidate_system", String(50), nullable=False),
    Column("candidate_local_id", String(255), nullable=False),
    Column("candidate_global_id", String(64), nullable=False),
    Column("existing_system", String(50), nullable=False),
    Column("existing_local_id", String(255), nullable=False),
    Column("existing_global_id", String(64), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decision_note", Text, nullable=True),
    UniqueConstraint(
        "candidate_system",
        "candidate_local_id",
        "existing_system",
        "existing_local_id",
        name="uq_md_match_reviews_pair",
    ),
    Index("ix_md_match_reviews_status", "status"),
)

# --- intake --------------------------------------------------------------------------------

intake_cursors = Table(
    "intake_cursors",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# --- API (api/): bearer tokens, stored only as SHA-256 hashes ------------------------------

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("owner", String(100), nullable=False),
    Column("roles", Text, nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revoked_by", String(100), nullable=True),
    UniqueConstraint("token_hash"),
    Index(
        "ix_api_tokens_active_name",
        "name",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)

# --- engine: parked events (an event waiting on a key another event releases) ---------------

parked_events = Table(
    "parked_events",
    metadata,
    Column("event_pos", BigInteger, ForeignKey("events.pos"), primary_key=True),
    Column("subject", String(300), nullable=False),
    Column("park_key", String(300), nullable=False),
    Column("reason", Text, nullable=False),
    Column("category", String(32), nullable=False),
    Column("parked_at", UtcDateTime(), nullable=False),
    Column("deadline", UtcDateTime(), nullable=False),
    Column("expired", Boolean, nullable=False, server_default=text("false")),
    Index("ix_parked_events_park_key", "park_key"),
    Index(
        "ix_parked_events_deadline",
        "deadline",
        sqlite_where=text("expired = false"),
        postgresql_where=text("expired = false"),
    ),
)
"""One row per event parked on a key; kept, ``expired``, once its deadline sent it to the
exception queue."""

park_keys = Table(
    "park_keys",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("released_at", UtcDateTime(), nullable=True),
    Column("released_by", String(200), nullable=True),
)
"""A key's row is locked by whoever parks on it or releases it, so a release is never missed."""

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("body", LargeBinary(), nullable=False),
    Column("headers", Text(), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decision_note", Text(), nullable=True),
    Column("event_id", String(200), nullable=True),
    UniqueConstraint("source", "body_sha256"),
    Index("ix_quarantine_status_id", "status", "id"),
)
"""Signed webhook deliveries the hub could not understand: kept whole (raw body, the headers
that re-verify it, never a secret) until an operator releases or discards them."""

# --- retention: archive runs (Parquet files of processed events, restorable) ----------------

archive_runs = Table(
    "archive_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=False),
    Column("via", String(32), nullable=False),
    Column("file", Text(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("events", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("pos_min", BigInteger, nullable=False),
    Column("pos_max", BigInteger, nullable=False),
    Column("finance_cutoff", UtcDateTime(), nullable=True),
    Column("other_cutoff", UtcDateTime(), nullable=True),
    Column("restored_at", UtcDateTime(), nullable=True),
    Column("restored_events", Integer, nullable=True),
)
"""One row per archive run, committed with the deletion of its events: which file holds them,
its SHA-256 (and its manifest's), so a file edited afterwards is refused on restore."""

# --- GetInvoiceStatus's read model (migration 0015; readmodels/invoice_status.py keeps it) ---

invoice_status = Table(
    "invoice_status",
    metadata,
    Column("billing_id", String(200), primary_key=True),
    Column("data_pos", BigInteger, nullable=True),
    Column("subject", String(300), nullable=True),
    Column("number", String(200), nullable=True),
    Column("status", String(64), nullable=True),
    Column("currency", String(16), nullable=True),
    Column("total", BigInteger, nullable=True),
    Column("amount_paid", BigInteger, nullable=True),
    Column("amount_remaining", BigInteger, nullable=True),
    Column("due_date", BigInteger, nullable=True),
    Column("paid_at", BigInteger, nullable=True),
    Column("as_of", UtcDateTime(), nullable=True),
    Column("posted_in_erp", Boolean, nullable=False, server_default=text("false")),
    Column("payment_applied_in_erp", Boolean, nullable=False, server_default=text("false")),
    Column("crm_id", String(200), nullable=True),
    Column("refund_pos", BigInteger, nullable=True),
    Column("refund_time", UtcDateTime(), nullable=True),
    Column("refund_amount", String(64), nullable=True),
    Column("refund_currency", String(16), nullable=True),
    Column("refund_reversed", Boolean, nullable=False, server_default=text("false")),
    Index("ix_invoice_status_refund_pos", "refund_pos"),
)
"""One row per billing invoice: the newest logged billing event about it (``data_pos``, its
Stripe amounts in minor units as logged), what the steps on its events recorded, and the newest
refund read for it. A row with ``data_pos`` NULL holds only a refund heard before the invoice."""

invoice_keys = Table(
    "invoice_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("billing_id", String(200), nullable=False),
)
"""Ids GetInvoiceStatus accepts that the log names (billing id, invoice number, the CRM's ids
from its publishing answers) -> billing id; ERP and global ids resolve through ``md_xrefs``."""


# --- API budgets shared by every hub process (engine/budgets_postgres.py) -------------------

budget_buckets = Table(
    "budget_buckets",
    metadata,
    Column("name", String(120), primary_key=True),
    Column("tokens", Float(precision=53), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("blocked_until", UtcDateTime(), nullable=True),
    Column("day_started", UtcDateTime(), nullable=True),
    Column("day_used", BigInteger, nullable=False, server_default=text("0")),
)
"""One token bucket per ``system:budget``: tokens at ``updated_at``, a Retry-After hold, the day."""

budget_slots = Table(
    "budget_slots",
    metadata,
    Column("budget", String(120), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("holder", String(200), nullable=True),
    Column("expires_at", UtcDateTime(), nullable=True),
)
"""A budget's concurrency slots; a slot whose lease expired is free (its holder died)."""
# --- the business-event outbox (migration 0023; bus/ publishes it to NATS JetStream) -------

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("type", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("correlation_id", String(100), nullable=False),
    Column("causation_id", String(200), nullable=False),
    Column("time", UtcDateTime(), nullable=False),
    Column("data", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("published_at", UtcDateTime(), nullable=True),
    UniqueConstraint("message_id"),
    Index(
        "ix_outbox_unpublished_id",
        "id",
        sqlite_where=text("published_at IS NULL"),
        postgresql_where=text("published_at IS NULL"),
    ),
)
"""Business events written in the commit that makes them true; the publisher sends the rows not
yet published in id order and marks them. ``message_id`` (unique) is JetStream's Nats-Msg-Id."""

outbox_lease = Table(
    "outbox_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(120), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
)
"""Which bus publisher sends a stream's outbox now: one per deployment, however many hub
processes run one; another takes over when the lease lapses (at once if the owner's pid on the
same host is gone). Also the lease ``serve.schedule``: which ``q2c serve`` process runs the
scheduled jobs and pollers (migration 0025)."""

hub_state = Table(
    "hub_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("recorded_by", String(120), nullable=False),
)
"""What one serve process's scheduled job produced, by name (``reconciliation``: the last
report as JSON), so every serve process answers the same (migration 0025)."""
# --- usage postings (migration 0022; usage/postings.py keeps it) ----------------------------

usage_postings = Table(
    "usage_postings",
    metadata,
    Column("identifier", String(300), primary_key=True),
    Column("aggregate_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subscription", String(200), nullable=False),
    Column("billing_subscription", String(200), nullable=False),
    Column("meter", String(200), nullable=False),
    Column("period_start", UtcDateTime(), nullable=False),
    Column("period_end", UtcDateTime(), nullable=False),
    Column("aggregate_quantity", String(64), nullable=False),
    Column("quantity", String(64), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("counted_at", UtcDateTime(), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("meter_id", String(200), nullable=True),
    Column("customer", String(200), nullable=True),
    Column("duplicate", Boolean, nullable=False, server_default=text("false")),
    Column("event_id", String(64), nullable=False),
    Column("posted_at", UtcDateTime(), nullable=False),
    Column("batch_ids", Text, nullable=False, server_default=text("'[]'")),
    UniqueConstraint("aggregate_id", "version"),
    Index(
        "ix_usage_postings_subscription_meter_period_start", "subscription", "meter", "period_start"
    ),
    Index("ix_usage_postings_billing_subscription_meter", "billing_subscription", "meter"),
)
"""One row per aggregate version handed to billing (``posted``, ``adjusted`` into a later open
period, or ``rejected`` by the late-usage policy), written with the step that posted it:
``quantity`` is the delta sent (Decimal text), ``identifier`` billing's meter event identifier."""
# --- usage intake (migration 0021; usage/ keeps them) ----------------------------------------

usage_batches = Table(
    "usage_batches",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False),
    Column("source", String(100), nullable=False),
    Column("origin", String(500), nullable=True),
    Column("part", Integer, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("submitted_by", String(100), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("correlation_id", String(100), nullable=False),
    Column("records", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("duplicate", Integer, nullable=False),
    Column("quarantined", Integer, nullable=False),
    Column("corrected", Integer, nullable=False),
    Column("ledger_file", String(200), nullable=True),
    UniqueConstraint("batch_id"),
)
"""One receipt per usage batch, committed with everything the batch changed: the ledger file of
its accepted records (Parquet, written before the commit), its counts, who sent it."""

usage_quarantine = Table(
    "usage_quarantine",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False),
    Column("source", String(100), nullable=False),
    Column("record_id", String(255), nullable=True),
    Column("line", BigInteger, nullable=True),
    Column("field", String(40), nullable=False),
    Column("reason", Text(), nullable=False),
    Column("raw", Text(), nullable=False),
    Column("corrected", Text(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("resubmitted_batch", String(40), nullable=True),
    Index("ix_usage_quarantine_status_id", "status", "id"),
)
"""Usage records that failed validation or conflict with history: the record as sent, why
(field and reason), and what a person corrected before resubmitting it."""

usage_aggregates = Table(
    "usage_aggregates",
    metadata,
    Column("aggregate_id", String(80), primary_key=True),
    Column("agg_key", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subscription", String(300), nullable=False),
    Column("meter", String(255), nullable=False),
    Column("period_start", UtcDateTime(), nullable=False),
    Column("period_end", UtcDateTime(), nullable=False),
    Column("unit", String(50), nullable=False),
    Column("quantity", String(64), nullable=False),
    Column("record_count", BigInteger, nullable=False),
    Column("batch_ids", Text(), nullable=False),
    Column("last_batch_seq", BigInteger, nullable=False),
    Column("handed_at", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("agg_key", "version"),
    Index("ix_usage_aggregates_sub_meter_period", "subscription", "meter", "period_start"),
)
"""Usage per subscription meter and billing period, one row per version: a version handed to
posting is frozen, and a later record makes the next version (cumulative quantity)."""
