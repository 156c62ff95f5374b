"""The engine's error taxonomy: every failure leaving a handler or connector is one of these.

Transient errors are retried with backoff; permanent errors go to the exception queue with a
category and a human-readable reason. Raw HTTP or driver exceptions never cross a connector.
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """Why a permanent failure needs a person: what kind of fix it wants."""

    DATA = "data"
    MAPPING = "mapping"
    AUTH = "auth"
    CONFLICT = "conflict"
    APPROVAL_REQUIRED = "approval_required"
    OWNERSHIP = "ownership"
    """A system changed a field another system owns: not propagated, someone should know."""


class IntegrationError(Exception):
    """Base of the taxonomy; ``system`` names the external system involved, if any."""

    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.system = system

    def __str__(self) -> str:
        return f"[{self.system}] {self.message}" if self.system else self.message


class TransientError(IntegrationError):
    """May succeed if tried again later (timeouts, connection errors, 429, 5xx).

    ``retry_after`` (seconds) is the earliest the target asked to be called again; ``throttled``
    says the system refused for load (429, or 503 with Retry-After): the budget waits everywhere.
    """

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(message, system=system)
        self.retry_after = retry_after
        self.throttled = throttled


class PermanentError(IntegrationError):
    """Will fail the same way until a person fixes data, mapping, credentials or approves."""

    def __init__(
        self, message: str, *, category: Category | str, system: str | None = None
    ) -> None:
        super().__init__(message, system=system)
        self.category = Category(category)


class DataError(PermanentError):
    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message, category=Category.DATA, system=system)


class MappingError(PermanentError):
    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message, category=Category.MAPPING, system=system)


class AuthError(PermanentError):
    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message, category=Category.AUTH, system=system)


class ConflictError(PermanentError):
    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message, category=Category.CONFLICT, system=system)


class ApprovalRequiredError(PermanentError):
    def __init__(self, message: str, *, system: str | None = None) -> None:
        super().__init__(message, category=Category.APPROVAL_REQUIRED, system=system)


class SystemUnavailable(Exception):
    """A target system is paused (maintenance window) or its breaker is open: hold, don't fail.

    Not an attempt: the event waits in order and resumes when the system is available again.
    """

    def __init__(self, system: str, reason: str, *, until: float | None = None) -> None:
        super().__init__(f"{system} unavailable: {reason}")
        self.system = system
        self.reason = reason
        self.until = until
