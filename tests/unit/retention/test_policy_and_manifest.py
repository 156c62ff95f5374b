"""Retention rules and the archive manifest, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from quote2cash.retention.folder import archive_dir_for
from quote2cash.retention.manifest import ManifestError, read_manifest
from quote2cash.retention.policy import RetentionPolicy, event_class
from quote2cash.settings import Settings

NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("type_", "cls"),
    [
        ("billing.invoice.finalized", "finance"),
        ("billing.payment.succeeded", "finance"),
        ("billing.refund.created", "finance"),
        ("erp.credit_memo.posted", "finance"),
        ("crm.opportunity.closed_won", "other"),
        ("billing.subscription.activated", "other"),
    ],
)
def test_event_class_follows_the_finance_sensitive_rule_of_replay(type_: str, cls: str) -> None:
    assert event_class(type_) == cls


def test_cutoffs_per_class_and_before_only_narrows() -> None:
    policy = RetentionPolicy(finance_days=3650, other_days=90)
    assert policy.cutoffs(NOW) == {
        "finance": NOW - timedelta(days=3650),
        "other": NOW - timedelta(days=90),
    }
    later = NOW - timedelta(days=10)
    earlier = NOW - timedelta(days=400)
    assert policy.cutoffs(NOW, later)["other"] == NOW - timedelta(days=90)
    assert policy.cutoffs(NOW, earlier)["other"] == earlier
    assert RetentionPolicy(0, 0).cutoffs(NOW, earlier) == {"finance": None, "other": None}


def test_kept_types_are_never_archivable() -> None:
    policy = RetentionPolicy()
    types = ["crm.opportunity.closed_won", "billing.invoice.paid", "crm.account.updated"]
    assert policy.archivable_types(types) == {
        "finance": ["billing.invoice.paid"],
        "other": ["crm.account.updated"],
    }


def test_settings_accept_none_for_forever_and_refuse_negative_days() -> None:
    assert Settings(retention_finance_days="none").retention_finance_days == 0  # type: ignore[arg-type]
    assert Settings().retention_finance_days == 3650 and Settings().retention_other_days == 90
    assert Settings().archive_interval_seconds == 86400
    with pytest.raises(ValidationError, match="retention_other_days"):
        Settings(retention_other_days=-1)


def test_default_folder_is_beside_a_sqlite_store() -> None:
    assert archive_dir_for("sqlite:////srv/q2c/hub.sqlite") == Path("/srv/q2c/hub-archive")
    assert archive_dir_for("postgresql://h/db") == Path(".q2c/archive")
    assert archive_dir_for("postgresql://h/db", "/data/arch") == Path("/data/arch")


def test_a_manifest_that_is_not_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.manifest.json"
    path.write_text('{"format": "q2c-archive/1", "run_id": "r"}')
    with pytest.raises(ManifestError, match=r"x\.manifest\.json: not a q2c archive manifest"):
        read_manifest(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(ManifestError, match="format 'other'"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="cannot be read"):
        read_manifest(tmp_path / "missing.manifest.json")
