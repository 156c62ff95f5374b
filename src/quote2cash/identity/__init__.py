"""Who is acting: the authenticated operator and the errors identity checks raise.

Pure types with no engine imports, so every part (engine, API, console, CLI) can depend on
them; the checks live in `accounts`, `signin`, `tokens` and `sessions`.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "operator", "finance_approver", "admin")


class IdentityError(Exception):
    """Base of identity failures; the message is safe to show (it never holds a secret)."""


class NotAuthenticated(IdentityError):
    """No valid credential was presented (HTTP 401)."""


class NotAllowed(IdentityError):
    """The authenticated operator lacks the role the action needs (HTTP 403)."""


class SignInRefused(NotAuthenticated):
    """Wrong name or password, or too many failures; the message is deliberately generic."""


@dataclass(frozen=True)
class Operator:
    """An authenticated operator as one credential presents them.

    `roles` are what this credential carries: a token carries at most its owner's roles.
    """

    name: str
    roles: frozenset[str]
    via: str
    token_name: str | None = None

    def holds(self, role: str) -> bool:
        """Any role implies "viewer"; every other role only if this credential carries it."""
        if role == "viewer":
            return bool(self.roles)
        return role in self.roles

    def require(self, role: str, doing: str) -> None:
        """Raise NotAllowed naming who tried what and the role it needs, unless held."""
        if not self.holds(role):
            raise NotAllowed(f"operator {self.name!r} may not {doing}: it needs the role {role!r}")


__all__ = [
    "ROLES",
    "IdentityError",
    "NotAllowed",
    "NotAuthenticated",
    "Operator",
    "SignInRefused",
]
