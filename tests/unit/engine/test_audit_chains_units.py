"""Chain names and signed bodies: "main" entries sign exactly what they signed before chains."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from quote2cash.engine.audit import (
    CHAIN_MAX,
    GENESIS,
    MAIN_CHAIN,
    AuditEntry,
    _check_chain,
    _digest,
    worker_chain,
)
from quote2cash.engine.audit_key import AuditKey

KEY = AuditKey(b"unit-test-audit-key-0123456789")
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ENTRY = AuditEntry("maria", "replay.approved", "r1", "c1")


def _pre_chain_digest(prev: str, seq: int, details: str) -> str:
    """The body exactly as the 0009-0012 code signed it, spelled out independently."""
    body = json.dumps(
        {
            "key_id": KEY.key_id,
            "seq": seq,
            "at": "2026-12-06T12:00:00.000000+00:00",
            "actor": "maria",
            "action": "replay.approved",
            "entity": "r1",
            "correlation_id": "c1",
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(KEY.secret, (prev + body).encode(), hashlib.sha256).hexdigest()


def test_main_entries_sign_the_pre_chain_body() -> None:
    assert _digest(KEY, GENESIS, 1, AT, ENTRY, "{}") == _pre_chain_digest(GENESIS, 1, "{}")
    assert _digest(KEY, GENESIS, 1, AT, ENTRY, "{}", MAIN_CHAIN) == _pre_chain_digest(
        GENESIS, 1, "{}"
    )


def test_a_partition_entry_signs_its_chain_name() -> None:
    main = _digest(KEY, GENESIS, 1, AT, ENTRY, "{}")
    a = _digest(KEY, GENESIS, 1, AT, ENTRY, "{}", "worker:a")
    b = _digest(KEY, GENESIS, 1, AT, ENTRY, "{}", "worker:b")
    assert len({main, a, b}) == 3


def test_worker_chain_is_named_after_the_worker_and_bounded() -> None:
    assert worker_chain("host-1-4242") == "worker:host-1-4242"
    long_id = "w" * 500
    name = worker_chain(long_id)
    assert len(name) <= CHAIN_MAX and name.startswith("worker:")
    assert name == worker_chain(long_id) and name != worker_chain("v" * 500)


@pytest.mark.parametrize("name", ["", "x" * (CHAIN_MAX + 1)])
def test_chain_names_out_of_bounds_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="audit chain name"):
        _check_chain(name)
