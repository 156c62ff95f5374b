"""The verified-token cache keeps its bounds: an entry never outlives the TTL nor its token's
expiry, an invalidation wins over a store read that overlapped it, a locked-out client is sent
to the store, and the cache holds a bounded number of tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quote2cash.identity import Operator
from quote2cash.identity.token_cache import TokenCache

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DANA = Operator("dana", frozenset({"viewer"}), via="token", token_name="dash")


def kept(cache: TokenCache, digest: str = "d1", expires: timedelta = timedelta(days=1)) -> None:
    cache.keep(digest, DANA, T0 + expires, T0, cache.generation)


def test_an_entry_lives_at_most_the_ttl_and_never_past_its_tokens_expiry() -> None:
    cache = TokenCache(timedelta(seconds=5))
    kept(cache)
    assert cache.operator("d1", "c", T0) == DANA
    assert cache.operator("d1", "c", T0 + timedelta(seconds=4.9)) == DANA
    assert cache.operator("d1", "c", T0 + timedelta(seconds=5)) is None
    kept(cache, expires=timedelta(seconds=2))
    assert cache.operator("d1", "c", T0 + timedelta(seconds=1.9)) == DANA
    assert cache.operator("d1", "c", T0 + timedelta(seconds=2)) is None
    kept(cache)
    assert cache.operator("d1", "c", T0 - timedelta(seconds=1)) is None  # clock went back
    assert cache.operator("other", "c", T0) is None


def test_an_invalidation_wins_over_a_store_read_that_overlapped_it() -> None:
    cache = TokenCache(timedelta(seconds=5))
    kept(cache)
    before_read = cache.generation
    cache.forget()  # e.g. a revocation committed while the read was in flight
    assert cache.operator("d1", "c", T0) is None
    cache.keep("d1", DANA, T0 + timedelta(days=1), T0, before_read)
    assert cache.operator("d1", "c", T0) is None
    kept(cache)
    assert cache.operator("d1", "c", T0) == DANA


def test_a_locked_out_client_is_sent_to_the_store_until_its_lockout_ends() -> None:
    cache = TokenCache(timedelta(minutes=30))
    kept(cache)
    cache.locked_out("10.0.0.9", T0 + timedelta(minutes=5))
    assert cache.operator("d1", "10.0.0.9", T0 + timedelta(minutes=4)) is None
    assert cache.operator("d1", "10.0.0.1", T0 + timedelta(minutes=4)) == DANA
    assert cache.operator("d1", "10.0.0.9", T0 + timedelta(minutes=5)) == DANA
    cache.locked_out("10.0.0.9", T0 + timedelta(minutes=20))
    cache.cleared("10.0.0.9")  # the store found it not locked (an admin cleared it)
    assert cache.operator("d1", "10.0.0.9", T0 + timedelta(minutes=6)) == DANA


def test_the_cache_is_bounded_and_off_with_a_zero_ttl() -> None:
    cache = TokenCache(timedelta(seconds=5), size=3)
    for n in range(5):
        kept(cache, f"d{n}")
    assert [cache.operator(f"d{n}", "c", T0) is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    off = TokenCache(timedelta(0))
    kept(off)
    assert off.operator("d1", "c", T0) is None
