"""Time-ordered identifiers (UUID version 7, RFC 9562) for the ids the hub mints.

Event ids and correlation ids are indexed (``events (source, event_id)``,
``ix_events_correlation_id``, ``ix_audit_log_correlation_id``). Random ids (version 4) land on a
random leaf of each B-tree, so once a store's indexes outgrow the database's cache every append
reads index pages from disk: over a million events of history that was most of the engine's
slowdown (docs/benchmarks.md, "Engine throughput"). A version 7 id starts with the Unix time in
milliseconds, so new ids go to the right-hand edge of those indexes, whose pages stay cached,
however long the history. The remaining 74 bits are random: ids stay unguessable enough for an
envelope id and unique across processes without coordination. They are ordinary UUID strings.
"""

from __future__ import annotations

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    """A UUID version 7: 48 bits of Unix milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION_7
        | ((rand >> 62) & _RAND_A) << 64
        | _VARIANT_RFC
        | (rand & _RAND_B)
    )
    return uuid.UUID(int=value)


def new_id() -> str:
    """A fresh time-ordered id as a string (``uuid7()``), for event and correlation ids."""
    return str(uuid7())
