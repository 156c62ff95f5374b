"""Cross-reference lookups by a system's local id that use the (kind, system, local_id) index:
the pairs of kind and system in use are read at most once a minute per store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Connection, Engine, Select, and_, or_, select

from quote2cash.store.schema import md_xrefs

PAIRS_MAX_AGE: Final = 60.0
_pairs: dict[int, tuple[float, list[tuple[str, str]]]] = {}
_lock = threading.Lock()


def kinds_and_systems(conn: Connection, engine: Engine) -> list[tuple[str, str]]:
    """The (kind, system) pairs the table holds, cached for ``PAIRS_MAX_AGE`` seconds."""
    now = time.monotonic()
    with _lock:
        cached = _pairs.get(id(engine))
    if cached is not None and now - cached[0] < PAIRS_MAX_AGE:
        return cached[1]
    pairs = [
        (str(k), str(s))
        for k, s in conn.execute(select(md_xrefs.c.kind, md_xrefs.c.system).distinct())
    ]
    with _lock:
        _pairs[id(engine)] = (now, pairs)
    return pairs


def global_ids_of(conn: Connection, engine: Engine, idents: Iterable[str]) -> Select[Any]:
    """Global ids that ``idents`` name, as a global id or as any system's local id."""
    wanted = list(idents)
    by_local = (
        and_(md_xrefs.c.kind == kind, md_xrefs.c.system == system, md_xrefs.c.local_id.in_(wanted))
        for kind, system in kinds_and_systems(conn, engine)
    )
    return select(md_xrefs.c.global_id).where(or_(md_xrefs.c.global_id.in_(wanted), *by_local))
