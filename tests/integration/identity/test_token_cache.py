"""A verified token is answered from this process's cache without a store round trip, on SQLite
and PostgreSQL, and the cache weakens nothing beyond its documented bound: a revocation, a
disabled owner or a lost role made in this process (any runtime on the store) takes effect at
once, expiry is exact, and a change made by another process or a lockout takes effect within
``Q2C_TOKEN_CACHE_SECONDS``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, update

from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import NotAuthenticated, throttle
from quote2cash.identity.accounts import change_roles, disable_operator
from quote2cash.identity.tokens import authenticate_token, cached_operator, revoke_token
from quote2cash.settings import get_settings
from quote2cash.store.db import open_engine
from quote2cash.store.schema import api_tokens, operators
from support.identity import first_admin, new_operator, token_of

TTL = timedelta(seconds=get_settings().token_cache_seconds)


@contextmanager
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements ``runtime``'s engine sends while the block runs."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(runtime.engine, "before_cursor_execute", note)


def refused(runtime: Runtime, token: str, client: str = "test") -> str:
    with pytest.raises(NotAuthenticated) as caught:
        authenticate_token(runtime, token, client=client)
    return str(caught.value)


def test_a_verified_token_is_answered_without_a_store_round_trip(runtime: Runtime) -> None:
    assert timedelta(0) < TTL
    dana = new_operator(runtime, first_admin(runtime), "dana", "operator")
    token = token_of(runtime, dana)
    assert cached_operator(runtime, token, client="test") is None
    with statements(runtime) as first:
        checked = authenticate_token(runtime, token, client="test")
    assert first, "the first use is checked in the store"
    with statements(runtime) as again:
        assert authenticate_token(runtime, token, client="test") == checked
        assert cached_operator(runtime, token, client="test") == checked
    assert again == []
    assert checked.roles == {"viewer", "operator"} and checked.token_name == "dana-token"


def test_changes_made_in_this_process_take_effect_at_once(
    runtime: Runtime, db_url: str, clock: ManualClock
) -> None:
    admin = first_admin(runtime)
    dana = new_operator(runtime, admin, "dana", "operator")
    lea = new_operator(runtime, admin, "lea", "operator")
    rui = new_operator(runtime, admin, "rui", "operator")
    revoked, of_leaver = token_of(runtime, dana), token_of(runtime, lea)
    demoted = token_of(runtime, rui)
    other = token_of(runtime, dana, "dana-other")
    for token in (revoked, of_leaver, demoted, other):
        authenticate_token(runtime, token, client="test")
    revoke_token(runtime, "dana-token", by=dana)
    assert "unknown, revoked or expired" in refused(runtime, revoked)
    disable_operator(runtime, "lea", by=admin)
    assert "unknown, revoked or expired" in refused(runtime, of_leaver)
    change_roles(runtime, "rui", ["viewer"], by=admin)
    assert authenticate_token(runtime, demoted, client="test").roles == {"viewer"}
    # Another runtime on the same store in this process (a CLI command, a second app) too.
    second = Runtime.open(db_url, clock=clock, sqlite_synchronous="NORMAL")
    try:
        assert authenticate_token(runtime, other, client="test").name == "dana"
        revoke_token(second, "dana-other", by=dana)
        assert "unknown, revoked or expired" in refused(runtime, other)
    finally:
        second.close()


def test_expiry_is_exact_for_a_cached_token(runtime: Runtime, clock: ManualClock) -> None:
    dana = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    brief = token_of(runtime, dana, "brief", ttl=TTL / 2)
    authenticate_token(runtime, brief, client="test")
    clock.advance((TTL / 2).total_seconds())
    assert cached_operator(runtime, brief, client="test") is None
    assert "unknown, revoked or expired" in refused(runtime, brief)


def test_another_process_s_changes_take_effect_within_the_cache_ttl(
    runtime: Runtime, db_url: str, clock: ManualClock
) -> None:
    """Another hub process revokes, disables or locks out through the store only: this process
    sees it once its entry is older than the TTL (the documented bound), not later."""
    admin = first_admin(runtime)
    dana = new_operator(runtime, admin, "dana", "operator")
    revoked = token_of(runtime, dana)
    of_leaver = token_of(runtime, new_operator(runtime, admin, "olga", "viewer"))
    locked = token_of(runtime, dana, "dana-ci")
    for token in (revoked, of_leaver):
        authenticate_token(runtime, token, client="test")
    authenticate_token(runtime, locked, client="10.9.9.9")
    elsewhere = open_engine(db_url)
    try:
        with elsewhere.begin() as conn:
            conn.execute(
                update(api_tokens)
                .where(api_tokens.c.name == "dana-token")
                .values(revoked_at=clock.now(), revoked_by="dana")
            )
            conn.execute(
                update(operators).where(operators.c.name == "olga").values(disabled_at=clock.now())
            )
    finally:
        elsewhere.dispose()
    for _ in range(throttle.MAX_FAILURES):
        throttle.record_failure(runtime, [throttle.token_client_key("10.9.9.9")])
    clock.advance(TTL.total_seconds() / 2)
    assert authenticate_token(runtime, revoked, client="test").name == "dana"  # within the bound
    clock.advance(TTL.total_seconds() / 2)
    assert "unknown, revoked or expired" in refused(runtime, revoked)
    assert "unknown, revoked or expired" in refused(runtime, of_leaver)
    assert "too many failed attempts" in refused(runtime, locked, client="10.9.9.9")


def test_a_guess_is_never_cached_and_still_counts_towards_a_lockout(runtime: Runtime) -> None:
    dana = new_operator(runtime, first_admin(runtime), "dana", "viewer")
    valid = token_of(runtime, dana)
    authenticate_token(runtime, valid, client="10.1.1.1")
    for n in range(throttle.MAX_FAILURES):
        guess = f"q2c_guess{n}"
        assert "unknown, revoked or expired" in refused(runtime, guess, client="10.1.1.1")
        assert cached_operator(runtime, guess, client="10.1.1.1") is None
    with statements(runtime) as sent:
        assert "too many failed attempts" in refused(runtime, valid, client="10.1.1.1")
    assert sent, "a locked-out client's cached token is checked in the store"
    assert authenticate_token(runtime, valid, client="10.2.2.2").name == "dana"
