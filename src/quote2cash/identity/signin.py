"""Sign-in with a name and password: one generic refusal for every failure, the same cost for
an unknown name as for a known one, failures logged (name and client, never the password) and
throttled per name and per client (``throttle``)."""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import update

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator, SignInRefused, throttle
from quote2cash.identity.passwords import (
    MAX_LENGTH,
    hash_password,
    needs_rehash,
    verify,
    verify_nothing,
)
from quote2cash.identity.records import OperatorAccount, load_password_hash
from quote2cash.store.schema import operators

log = logging.getLogger(__name__)

REFUSED: Final = "sign-in refused: wrong name or password, or too many failed attempts"
NAME_IN_LOG: Final = 100


class PasswordChangeRequired(SignInRefused):
    """The password was right but is a one-time password: it must be changed before use."""


def check_password(runtime: Runtime, name: str, password: str, *, client: str) -> OperatorAccount:
    """The account if ``password`` is ``name``'s and neither is throttled; else SignInRefused."""
    shown = name[:NAME_IN_LOG]
    keys = [throttle.name_key(name), throttle.client_key(client)]
    if throttle.locked(runtime, keys):
        log.warning(
            "sign-in refused for operator %r from client %r: locked out after repeated failures",
            shown,
            client,
        )
        raise SignInRefused(REFUSED)
    with runtime.engine.connect() as conn:
        found = load_password_hash(conn, name)
    reason = ""
    if found is None:
        reason = "unknown operator"
    elif found[0].disabled:
        reason = "operator disabled"
    elif found[1] is None:
        reason = "operator has no password (an admin resets it)"
    elif len(password) > MAX_LENGTH:
        reason = "password too long"
    if reason or found is None or found[1] is None:
        verify_nothing(password[:MAX_LENGTH])
    elif not verify(found[1], password):
        reason = "wrong password"
    if reason or found is None:
        throttle.record_failure(runtime, keys)
        log.warning("sign-in failed for operator %r from client %r: %s", shown, client, reason)
        raise SignInRefused(REFUSED)
    account, stored = found
    throttle.clear(runtime, throttle.name_key(name))
    if stored is not None and needs_rehash(stored):
        with runtime.engine.begin() as conn:
            conn.execute(
                update(operators)
                .where(operators.c.name == name)
                .values(password_hash=hash_password(password))
            )
    return account


def sign_in(runtime: Runtime, name: str, password: str, *, client: str) -> Operator:
    """The operator ``name`` if the password is right; SignInRefused otherwise, and
    PasswordChangeRequired while the password is still a one-time password."""
    account = check_password(runtime, name, password, client=client)
    if account.must_change_password:
        log.info("operator %r signed in with a one-time password; a change is required", name)
        raise PasswordChangeRequired(
            f"operator {name!r} signed in with a one-time password; set a new password first "
            f"(q2c operators password {name})"
        )
    log.info("operator %r signed in from client %r", name, client)
    return Operator(account.name, account.roles, via="password")
