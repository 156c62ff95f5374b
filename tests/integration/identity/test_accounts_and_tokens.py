"""Operators are accounts and decisions need an authenticated identity, on SQLite and
PostgreSQL: the impersonations of issue 11 are refused, credentials expire and are revoked, and
failed sign-ins are throttled and logged without secrets."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from quote2cash.engine.audit import verify_audit
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.runtime import Runtime
from quote2cash.identity import NotAllowed, NotAuthenticated, Operator, SignInRefused
from quote2cash.identity.accounts import (
    AccountError,
    add_operator,
    change_roles,
    create_first_admin,
    disable_operator,
    find_by_email,
    list_operators,
    set_password,
)
from quote2cash.identity.sessions import close_session, open_session, session_operator
from quote2cash.identity.signin import PasswordChangeRequired, sign_in
from quote2cash.identity.tokens import authenticate_token, issue_token, list_tokens, revoke_token
from quote2cash.store.schema import api_tokens, audit_log, operator_sessions, operators

ADMIN_PASSWORD = "admin's own long password"


def signed_in(runtime: Runtime, name: str, one_time: str, password: str) -> Operator:
    set_password(runtime, name, one_time, password, client="test")
    return sign_in(runtime, name, password, client="test")


@pytest.fixture
def admin(runtime: Runtime) -> Operator:
    return signed_in(runtime, "admin", create_first_admin(runtime), ADMIN_PASSWORD)


def test_first_admin_must_change_the_one_time_password(runtime: Runtime) -> None:
    one_time = create_first_admin(runtime)
    with pytest.raises(AccountError, match="an admin exists already"):
        create_first_admin(runtime, "second")
    with pytest.raises(PasswordChangeRequired, match="one-time password"):
        sign_in(runtime, "admin", one_time, client="test")
    with pytest.raises(SignInRefused):
        set_password(runtime, "admin", "not the one-time password", ADMIN_PASSWORD)
    with pytest.raises(AccountError, match="at least 12 characters"):
        set_password(runtime, "admin", one_time, "short")
    admin = signed_in(runtime, "admin", one_time, ADMIN_PASSWORD)
    assert admin == Operator("admin", frozenset({"admin"}), via="password")
    with pytest.raises(SignInRefused):
        sign_in(runtime, "admin", one_time, client="test")  # one time only
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(operators.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and ADMIN_PASSWORD not in stored


def test_only_an_admin_registers_operators_and_never_changes_their_own_roles(
    runtime: Runtime, admin: Operator
) -> None:
    olga = signed_in(
        runtime, "olga", add_operator(runtime, "olga", ["operator"], by=admin), "olga's password!"
    )
    # the impersonation of issue 11: an operator registers a finance approver of their own
    with pytest.raises(NotAllowed, match="needs the role 'admin'"):
        add_operator(runtime, "olga2", ["finance_approver"], by=olga)
    with pytest.raises(NotAllowed, match="needs the role 'admin'"):
        change_roles(runtime, "olga", ["operator", "finance_approver"], by=olga)
    with pytest.raises(NotAllowed, match="their own roles"):
        change_roles(runtime, "admin", ["admin", "finance_approver"], by=admin)
    with pytest.raises(NotAllowed, match="disable themselves"):
        disable_operator(runtime, "admin", by=admin)
    with pytest.raises(AccountError, match="unknown role"):
        add_operator(runtime, "zed", ["king"], by=admin)
    with pytest.raises(AccountError, match="exists already"):
        add_operator(runtime, "olga", ["viewer"], by=admin)
    with pytest.raises(AccountError, match="not valid"):
        add_operator(runtime, "bad name", ["viewer"], by=admin)
    add_operator(runtime, "fiona", ["finance_approver"], by=admin, email="Fiona@Example.com")
    found = find_by_email(runtime, "fiona@example.COM")
    assert found is not None and found.name == "fiona"
    with pytest.raises(AccountError, match="belongs to another operator"):
        add_operator(runtime, "fi2", ["viewer"], by=admin, email="fiona@example.com")
    change_roles(runtime, "olga", ["viewer"], by=admin)
    assert {a.name: sorted(a.roles) for a in list_operators(runtime)} == {
        "admin": ["admin"],
        "fiona": ["finance_approver"],
        "olga": ["viewer"],
    }
    with runtime.engine.connect() as conn:
        trail = [
            (r.actor, r.action, r.entity)
            for r in conn.execute(select(audit_log).order_by(audit_log.c.seq))
            if r.action.startswith("operator.")
        ]
    assert trail == [
        ("q2c init", "operator.added", "operator:admin"),
        ("admin", "operator.password_changed", "operator:admin"),
        ("admin", "operator.added", "operator:olga"),
        ("olga", "operator.password_changed", "operator:olga"),
        ("admin", "operator.added", "operator:fiona"),
        ("admin", "operator.roles_changed", "operator:olga"),
    ]
    assert verify_audit(runtime.engine).ok


def test_a_token_never_carries_a_role_its_owner_lacks(runtime: Runtime, admin: Operator) -> None:
    add_operator(runtime, "olga", ["operator", "finance_approver"], by=admin)
    olga = Operator("olga", frozenset({"operator", "finance_approver"}), via="password")
    with pytest.raises(NotAllowed, match="may not carry role"):
        issue_token(runtime, "olga", "too-much", ["admin"], by=olga)
    with pytest.raises(NotAllowed, match="operators issue their own tokens"):
        issue_token(runtime, "olga", "for-olga", ["viewer"], by=admin)
    token = issue_token(runtime, "olga", "olga-cli", ["operator", "finance_approver"], by=olga)
    via_token = authenticate_token(runtime, token, client="test")
    assert via_token.roles == {"viewer", "operator", "finance_approver"}
    # a token authenticates only what it carries: a viewer token cannot mint an operator one
    viewer_token = issue_token(runtime, "olga", "olga-ro", ["viewer"], by=via_token)
    read_only = authenticate_token(runtime, viewer_token, client="test")
    with pytest.raises(NotAllowed, match="may not carry role"):
        issue_token(runtime, "olga", "escalated", ["operator"], by=read_only)
    # the owner loses a role: the token stops carrying it at once
    change_roles(runtime, "olga", ["operator"], by=admin)
    assert authenticate_token(runtime, token, client="test").roles == {"viewer", "operator"}
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash)).scalars().all()
    assert token not in stored and all(len(h) == 64 for h in stored)


def test_expired_revoked_and_disabled_owners_tokens_are_refused(
    runtime: Runtime, clock: ManualClock, admin: Operator
) -> None:
    add_operator(runtime, "olga", ["operator"], by=admin)
    add_operator(runtime, "omar", ["operator"], by=admin)
    olga = Operator("olga", frozenset({"operator"}), via="password")
    omar = Operator("omar", frozenset({"operator"}), via="password")
    day = issue_token(runtime, "olga", "day", ["operator"], by=olga, ttl=timedelta(days=1))
    kept = issue_token(runtime, "olga", "kept", ["operator"], by=olga)
    gone = issue_token(runtime, "olga", "gone", ["operator"], by=olga)
    with pytest.raises(NotAllowed, match="revoke token 'gone' of operator 'olga'"):
        revoke_token(runtime, "gone", by=omar)
    revoke_token(runtime, "gone", by=olga)
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, gone, client="a")
    with pytest.raises(Exception, match="lifetime"):
        issue_token(runtime, "olga", "forever", ["operator"], by=olga, ttl=timedelta(days=3650))
    [default] = [t for t in list_tokens(runtime) if t.name == "kept"]
    assert default.expires_at - default.created_at == timedelta(days=30)
    clock.advance(86400)
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, day, client="b")
    assert authenticate_token(runtime, kept, client="c").name == "olga"
    disable_operator(runtime, "olga", by=admin)
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, kept, client="c")
    with pytest.raises(SignInRefused):
        sign_in(runtime, "olga", "whatever it was", client="c")


def test_sessions_are_stored_hashed_and_end_on_sign_out_expiry_or_disable(
    runtime: Runtime, clock: ManualClock, admin: Operator
) -> None:
    add_operator(runtime, "olga", ["operator"], by=admin)
    olga = Operator("olga", frozenset({"operator"}), via="password")
    first = open_session(runtime, olga, ttl=timedelta(hours=1))
    second = open_session(runtime, olga, ttl=timedelta(hours=8))
    assert first.id != second.id and first.csrf != second.csrf and first.csrf != first.id
    found = session_operator(runtime, first.id)
    assert found is not None
    who, session = found
    assert who == Operator("olga", frozenset({"operator"}), via="session")
    assert session.csrf_matches(first.csrf) and not session.csrf_matches(second.csrf)
    assert not session.csrf_matches(None)
    with runtime.engine.connect() as conn:
        stored = conn.execute(select(operator_sessions.c.id_hash)).scalars().all()
    assert first.id not in stored and second.id not in stored
    assert session_operator(runtime, "forged") is None
    change_roles(runtime, "olga", ["viewer"], by=admin)
    assert session_operator(runtime, second.id)[0].roles == {"viewer"}  # type: ignore[index]
    close_session(runtime, second.id)
    assert session_operator(runtime, second.id) is None
    third = open_session(runtime, olga)
    clock.advance(3600)
    assert session_operator(runtime, first.id) is None
    assert session_operator(runtime, third.id) is not None
    disable_operator(runtime, "olga", by=admin)
    assert session_operator(runtime, third.id) is None
    with pytest.raises(NotAuthenticated):
        open_session(runtime, olga)


def test_failed_sign_ins_are_throttled_per_name_and_per_client(
    runtime: Runtime, clock: ManualClock, admin: Operator
) -> None:
    for attempt in range(5):
        with pytest.raises(SignInRefused):
            sign_in(runtime, "admin", f"guess {attempt}", client="10.0.0.9")
    # locked out: even the right password from another client is refused, with the same words
    with pytest.raises(SignInRefused) as refused:
        sign_in(runtime, "admin", ADMIN_PASSWORD, client="10.0.0.1")
    assert "wrong name or password" in str(refused.value)
    clock.advance(5 * 60 + 1)
    assert sign_in(runtime, "admin", ADMIN_PASSWORD, client="10.0.0.1").name == "admin"
    # one client spraying many names is locked out as a client, for names it never tried
    for attempt in range(5):
        with pytest.raises(SignInRefused):
            sign_in(runtime, f"user{attempt}", "guess", client="10.0.0.66")
    with pytest.raises(SignInRefused):
        sign_in(runtime, "admin", ADMIN_PASSWORD, client="10.0.0.66")
    assert sign_in(runtime, "admin", ADMIN_PASSWORD, client="10.0.0.2").name == "admin"
    # failures spread over more than the window do not add up
    for _ in range(8):
        with pytest.raises(SignInRefused):
            sign_in(runtime, "admin", "slow guess", client="10.0.0.3")
        clock.advance(4 * 60)
        if _ % 4 == 3:
            assert sign_in(runtime, "admin", ADMIN_PASSWORD, client="10.0.0.4").name == "admin"


def test_failed_authentication_is_logged_without_any_secret(
    runtime: Runtime, admin: Operator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    one_time = add_operator(runtime, "olga", ["operator"], by=admin)
    olga = signed_in(runtime, "olga", one_time, "olga's secret phrase")
    token = issue_token(runtime, "olga", "olga-cli", ["operator"], by=olga)
    secrets_used = ["olga's secret phrase", one_time, ADMIN_PASSWORD, token, token[4:14]]
    for guess in ["Tr0ub4dor&3 guess", "olga's secret phrasf"]:
        secrets_used.append(guess)
        with pytest.raises(SignInRefused):
            sign_in(runtime, "olga", guess, client="10.1.1.1")
    with pytest.raises(SignInRefused):
        sign_in(runtime, "nobody", "nobody's password", client="10.1.1.1")
    secrets_used.append("nobody's password")
    forged = token[:-3] + "abc"
    secrets_used += [forged, forged[4:14]]
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, forged, client="10.1.1.2")
    revoke_token(runtime, "olga-cli", by=olga)
    with pytest.raises(NotAuthenticated):
        authenticate_token(runtime, token, client="10.1.1.2")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sign-in failed for operator 'olga' from client '10.1.1.1': wrong password" in logged
    assert "sign-in failed for operator 'nobody' from client '10.1.1.1': unknown operator" in logged
    assert "from client '10.1.1.2': unknown token" in logged
    assert "token 'olga-cli' is revoked" in logged
    for secret in secrets_used:
        assert secret not in logged
