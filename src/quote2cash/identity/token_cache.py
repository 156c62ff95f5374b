"""API tokens this process verified a moment ago, so a request's bearer check needs no store
round trip (and no thread hop) while its token is in use.

Bounds (DESIGN §6a): an entry lives at most ``Q2C_TOKEN_CACHE_SECONDS`` (default 5 s; 0: off)
and never past its token's own expiry. A revocation, a disabled owner or a role change made in
this process empties every cache here at once; one made by another hub process takes effect
here within that TTL. Only tokens the store vouched for are kept (a guess never is), a client
this process saw locked out for failures is sent to the store, and a store read that overlaps
an invalidation is not kept.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine

from quote2cash.identity import Operator
from quote2cash.settings import get_settings

MAX_ENTRIES: Final = 1024


@dataclass(frozen=True)
class _Verified:
    operator: Operator
    expires_at: datetime
    checked_at: datetime


class TokenCache:
    """Verified token digests to their operator, and the clients this process saw locked out."""

    def __init__(self, ttl: timedelta, size: int = MAX_ENTRIES) -> None:
        self.ttl, self.size = ttl, size
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._locks: dict[str, datetime] = {}
        self._generation = 0
        self._mutex = threading.Lock()

    @property
    def generation(self) -> int:
        """Changes on every invalidation: take it before a store read, hand it to ``keep``."""
        return self._generation

    def operator(self, digest: str, client: str, now: datetime) -> Operator | None:
        """The operator of a token verified less than the TTL ago and not yet expired; None if
        it must be checked in the store (unknown here, stale, or its client is locked out)."""
        with self._mutex:
            until = self._locks.get(client)
            if until is not None and now < until:
                return None
            found = self._entries.get(digest)
            if found is None:
                return None
            if not found.checked_at <= now < min(found.checked_at + self.ttl, found.expires_at):
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return found.operator

    def keep(
        self, digest: str, operator: Operator, expires_at: datetime, now: datetime, generation: int
    ) -> None:
        """Remember a token the store just vouched for, unless an invalidation came meanwhile."""
        if self.ttl <= timedelta(0):
            return
        with self._mutex:
            if generation != self._generation:
                return
            self._entries[digest] = _Verified(operator, expires_at, now)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def locked_out(self, client: str, until: datetime) -> None:
        """This process locked ``client`` out until then: its cached tokens go to the store."""
        with self._mutex:
            self._locks[client] = max(until, self._locks.get(client, until))
            if len(self._locks) > self.size:
                self._locks.pop(next(iter(self._locks)))

    def cleared(self, client: str) -> None:
        """The store found ``client`` not locked out."""
        with self._mutex:
            self._locks.pop(client, None)

    def forget(self) -> None:
        """Drop every verified token (the lockouts stay: they only send clients to the store)."""
        with self._mutex:
            self._entries.clear()
            self._generation += 1


_CACHES: weakref.WeakKeyDictionary[Engine, TokenCache] = weakref.WeakKeyDictionary()
_CACHES_MUTEX = threading.Lock()


def cache_for(engine: Engine) -> TokenCache:
    """This process's cache of tokens of the store behind ``engine``."""
    with _CACHES_MUTEX:
        cache = _CACHES.get(engine)
        if cache is None:
            ttl = timedelta(seconds=get_settings().token_cache_seconds)
            cache = _CACHES[engine] = TokenCache(ttl)
        return cache


def forget_verified_tokens() -> None:
    """After a revocation, a disabled owner or a role change: every cache in this process (any
    runtime on that store) checks each token in the store again."""
    with _CACHES_MUTEX:
        caches = list(_CACHES.values())
    for cache in caches:
        cache.forget()
