"""Salesforce-style record ids: 15 case-sensitive characters plus a 3-character case checksum."""

from __future__ import annotations

import itertools
import string

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = string.ascii_uppercase + "012345"
_ID_CHARS = frozenset(string.ascii_letters + string.digits)
_POD = "5g"


def checksum(id15: str) -> str:
    """The 3-character suffix Salesforce appends so ids survive case-insensitive systems."""
    suffix = ""
    for block in range(3):
        bits = 0
        for position, char in enumerate(id15[block * 5 : block * 5 + 5]):
            if char.isupper():
                bits |= 1 << position
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def to_18(record_id: str) -> str | None:
    """The 18-character form of a 15- or 18-character id, or None if it is not id-shaped."""
    if len(record_id) not in (15, 18) or not set(record_id) <= _ID_CHARS:
        return None
    id15 = record_id[:15]
    full = id15 + checksum(id15)
    if len(record_id) == 18 and record_id[15:].upper() != full[15:]:
        return None
    return full


class IdFactory:
    """Hands out unique ids per key prefix; the counter is shared so ids sort by creation."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def new(self, key_prefix: str) -> str:
        value = next(self._counter)
        digits = ""
        while value:
            value, rest = divmod(value, 62)
            digits = _BASE62[rest] + digits
        body = key_prefix + _POD + "0" * (10 - len(digits)) + digits
        return body + checksum(body)
