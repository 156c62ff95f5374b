"""The demo's people, created and signed in as real operators are: the first admin adds an
operator and a finance approver; each changes the one-time password and signs in."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import Operator
from quote2cash.identity.accounts import add_operator, create_first_admin, set_password
from quote2cash.identity.signin import sign_in

CLIENT = "q2c demo"


@dataclass(frozen=True)
class DemoTeam:
    admin: Operator
    operator: Operator
    approver: Operator


def first_sign_in(runtime: Runtime, name: str, one_time_password: str) -> Operator:
    """Replace the one-time password with a fresh one and sign in with it."""
    password = secrets.token_urlsafe(18)
    set_password(runtime, name, one_time_password, password, client=CLIENT)
    return sign_in(runtime, name, password, client=CLIENT)


def sign_in_team(
    runtime: Runtime,
    *,
    operator: str = "alice",
    approver: str = "bob",
    approver_roles: Sequence[str] = ("operator", "finance_approver"),
) -> DemoTeam:
    admin = first_sign_in(runtime, "admin", create_first_admin(runtime, "admin"))
    ops = first_sign_in(runtime, operator, add_operator(runtime, operator, ["operator"], by=admin))
    checker = first_sign_in(
        runtime, approver, add_operator(runtime, approver, approver_roles, by=admin)
    )
    return DemoTeam(admin, ops, checker)
