"""Runtime configuration: environment variables with the ``Q2C_`` prefix, validated at load."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the hub keeps its state and how its workers behave."""

    model_config = SettingsConfigDict(env_prefix="Q2C_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///q2c.sqlite",
        description="SQLAlchemy URL of the store: a SQLite file (default) or postgresql://...",
    )
    bus_url: str = Field(
        default="embedded",
        description="'embedded' or nats://host:port: the NATS server of the business-event "
        "stream (q2c serve then runs its publisher) and the default of audit checkpoints",
    )
    bus_stream: str = Field(
        default="Q2C_BUSINESS_EVENTS",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream stream of the business events (created if missing)",
    )
    bus_subject_prefix: str = Field(
        default="q2c",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="business events go to <prefix>.<entity>.<verb> (q2c.invoice.posted)",
    )
    bus_duplicate_window_seconds: float = Field(
        default=600.0,
        ge=1,
        le=86400,
        description="JetStream drops a re-publish of a message id seen this recently",
    )
    bus_batch_size: int = Field(
        default=256, ge=1, le=4000, description="outbox rows the publisher sends per batch"
    )
    bus_keep_published_days: float = Field(
        default=7.0, ge=0, description="published business events stay in the outbox this long"
    )
    bus_poll_seconds: float = Field(
        default=0.2, gt=0, le=60, description="the publisher looks for new outbox rows this often"
    )
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")
    config_dir: str | None = Field(
        default=None,
        description="folder of catalog.yaml, entities.yaml, tax.yaml...; unset: packaged defaults",
    )
    debug: bool = Field(default=False, description="CLI errors show their traceback")
    token_ttl_days: int = Field(default=30, ge=1, description="API tokens expire after this")
    token_max_ttl_days: int = Field(
        default=365, ge=1, description="the longest lifetime a new API token may be given"
    )
    worker_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="how much lower a worker's CPU priority is than the web's on a shared host "
        "(Linux nice): a `q2c worker` process takes it whole, `q2c serve --workers` for its "
        "worker's store threads (0: the same priority)",
    )
    worker_idle_class: bool | None = Field(
        default=None,
        description="a `q2c worker` process runs in Linux's idle scheduling class (SCHED_IDLE): "
        "any other runnable thread on its cores, the web's first, goes before it; unset: on for "
        "`q2c serve`'s worker child (it shares serve's host), off for a `q2c worker` of its own",
    )
    token_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="a verified API token is trusted this long in a process without a store "
        "read (0: never); revocations in the same process take effect at once",
    )
    event_loop: str = Field(
        default="auto",
        pattern="^(auto|uvloop|asyncio)$",
        description="q2c serve's event loop: uvloop (auto: where installed) or asyncio's own",
    )
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")
    audit_key: SecretStr | None = Field(
        default=None, description="secret that signs the audit chain (else Q2C_AUDIT_KEY_FILE)"
    )
    audit_key_file: str | None = Field(
        default=None, description="0600 file holding the audit key in hex (q2c init makes one)"
    )
    audit_checkpoint_url: str | None = Field(
        default=None, description="nats://... for audit checkpoints (default: bus_url if NATS)"
    )
    audit_checkpoint_stream: str = Field(
        default="Q2C_AUDIT_CHECKPOINTS",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="JetStream stream of the audit checkpoints",
    )
    audit_checkpoint_file: str | None = Field(
        default=None, description="append-only file of audit checkpoints when NATS is not used"
    )
    audit_checkpoint_seconds: float = Field(
        default=5.0,
        ge=0,
        description="workers checkpoint the audit head this often (0: every batch)",
    )
    serve_lease_seconds: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        description="q2c serve's scheduled jobs run in one process at a time, under a store lease "
        "this long: a dead leader's jobs resume in another serve process within it",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="the Stripe webhook endpoint's signing secret (whsec_...) for every q2c "
        "serve process; overrides systems.yaml's billing webhook_secret",
    )
    reconcile_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="q2c serve reconciles CRM/billing/ERP this often (0: never)",
    )
    erp_batch_size: int = Field(
        default=8,
        ge=1,
        le=200,
        description=(
            "ERP invoice postings ready at once are posted together, up to this many per batch "
            "(1: one at a time)"
        ),
    )
    erp_batch_window_ms: float = Field(
        default=20.0,
        ge=0,
        le=1000,
        description="how long a batch of ERP invoice postings waits for more before it is sent",
    )
    metrics_enabled: bool = Field(
        default=True, description="record per-process Prometheus metrics (false: near-zero cost)"
    )
    metrics_public: bool = Field(
        default=False,
        description="serve /metrics without a token (for a scraper on a private network)",
    )
    metrics_cache_seconds: float = Field(
        default=10.0, ge=0, description="/metrics reads the store's KPIs at most this often"
    )
    traces_per_second: float = Field(
        default=10.0,
        ge=0,
        description="new traces recorded a second at most, when tracing is on and "
        "OTEL_TRACES_SAMPLER is unset (spans follow their parent's decision)",
    )
    retry_max_attempts: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="tries of an event whose handler fails transiently before it is dead-lettered",
    )
    retry_base_seconds: float = Field(
        default=1.0, gt=0, description="backoff ceiling after the first failure (doubling)"
    )
    retry_cap_seconds: float = Field(
        default=600.0, gt=0, description="the longest backoff between two tries"
    )

    retention_finance_days: int = Field(
        default=3650,
        ge=0,
        description="finance-sensitive events (invoice, credit memo, payment, refund) stay in "
        "the store this many days after their event time, the audit period (0/none: forever)",
    )
    retention_other_days: int = Field(
        default=90, ge=0, description="other processed events stay this many days (0/none: forever)"
    )
    retention_keep_types: str = Field(
        default="crm.opportunity.closed_won",
        description="comma-separated event types never archived (later events look them up)",
    )
    archive_dir: str | None = Field(
        default=None,
        description="folder of the Parquet archives (default: beside the SQLite file, "
        "else .q2c/archive)",
    )
    archive_interval_seconds: float = Field(
        default=86400.0, ge=0, description="q2c serve archives expired events this often (0: never)"
    )
    archive_max_events: int = Field(
        default=200_000, ge=1, description="events one archive run (one file) takes at most"
    )
    usage_dir: str | None = Field(
        default=None,
        description="folder of the usage ledger (Parquet) and its key index (default: beside "
        "the SQLite file, else .q2c/usage)",
    )
    usage_late_policy: Literal["adjust", "reject"] = Field(
        default="adjust",
        description="usage dated in a closed or already invoiced billing period: adjust (count "
        "it in the next open period / invoice) or reject (quarantine it at intake; refuse it at "
        "posting, reported by reconciliation)",
    )
    usage_chunk_rows: int = Field(
        default=1_000_000, ge=1, description="records one usage batch of a file holds at most"
    )
    usage_watch_dir: str | None = Field(
        default=None, description="q2c serve ingests usage files dropped here (none: off)"
    )

    @field_validator("retention_finance_days", "retention_other_days", mode="before")
    @classmethod
    def _none_keeps_forever(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("none", "forever", ""):
            return 0
        return value

    @model_validator(mode="after")
    def _retry_cap_covers_base(self) -> Settings:
        if self.retry_cap_seconds < self.retry_base_seconds:
            raise ValueError(
                f"Q2C_RETRY_CAP_SECONDS={self.retry_cap_seconds:g} is below "
                f"Q2C_RETRY_BASE_SECONDS={self.retry_base_seconds:g}: expected cap >= base"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
