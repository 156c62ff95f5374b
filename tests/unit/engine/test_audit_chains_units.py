"""Chain names and signed bodies: "main" entries sign exactly what they signed before chains."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quote2cash.engine.audit import (
    CHAIN_MAX,
    GENESIS,
    MAIN_CHAIN,
    AuditEntry,
    _check_chain,
    _digest,
    canonical_texts,
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


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))  # a signed body is UTF-8
_MAYBE = st.none() | _TEXT


@settings(max_examples=300, deadline=None)
@given(
    _TEXT,
    _TEXT,
    _MAYBE,
    _MAYBE,
    _TEXT,
    st.integers(1, 2**62),
    st.sampled_from([MAIN_CHAIN]) | _TEXT,
)
def test_the_digest_is_hmac_sha256_over_json_dumps_of_the_body(
    actor: str, action: str, entity: str | None, cid: str | None, details: str, seq: int, chain: str
) -> None:
    """The writer's and the verifier's digest (msgspec body, precomputed HMAC states) against
    the formula spelled out with ``json`` and ``hmac`` alone, for any text in any field."""
    body: dict[str, object] = {
        "key_id": KEY.key_id,
        "seq": seq,
        "at": "2026-12-06T12:00:00.000000+00:00",
        "actor": actor,
        "action": action,
        "entity": entity,
        "correlation_id": cid,
        "details": details,
    }
    if chain != MAIN_CHAIN:
        body["chain"] = chain
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hmac.new(KEY.secret, (GENESIS + text).encode(), hashlib.sha256).hexdigest()
    entry = AuditEntry(actor, action, entity, cid)
    assert _digest(KEY, GENESIS, seq, AT, entry, details, chain) == expected


@pytest.mark.parametrize("secret", [b"k" * 16, b"k" * 64, b"k" * 65, bytes(range(200))])
def test_signing_from_precomputed_key_states_is_hmac_sha256(secret: bytes) -> None:
    key = AuditKey(secret)
    for message in (b"", b"m", b"x" * 1000):
        assert key.sign_bytes(message) == hmac.new(secret, message, hashlib.sha256).hexdigest()
    assert key.sign("é") == hmac.new(secret, "é".encode(), hashlib.sha256).hexdigest()


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=())),
        st.none() | st.text(st.characters(blacklist_categories=())),
        max_size=6,
    )
)
def test_canonical_texts_writes_json_dumps_text(details: dict[str, str | None]) -> None:
    """A step entry's details (strings, lone surrogates too) as ``canonical_json`` writes them."""
    expected = json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    assert canonical_texts(details) == expected
