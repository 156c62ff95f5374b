"""Password hashing with argon2id, and the one-time passwords admins hand out.

A hash is never compared by hand: argon2 verifies in constant time, and checking an unknown
name costs the same as a known one (``verify_nothing``).
"""

from __future__ import annotations

import secrets
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 1024

_hasher = PasswordHasher()
_DUMMY: Final = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored_hash: str, password: str) -> bool:
    """True if ``password`` matches; a corrupt stored hash never matches."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def verify_nothing(password: str) -> None:
    """Spend the time a real check would, so an unknown name cannot be told apart by timing."""
    verify(_DUMMY, password)


def one_time_password() -> str:
    return secrets.token_urlsafe(15)


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable as a new password, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None
