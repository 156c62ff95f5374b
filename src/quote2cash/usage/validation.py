"""Vectorised validation of a chunk of usage records against the subscriptions' terms (DuckDB).

Each record gets its key (hash of source and id), its content hash, what it resolves to
(subscription, meter, unit, billing period) and, when it fails, the first rule it breaks as
``field`` and ``reason``; the reason names the record id, the field and what was expected.
The terms are loaded into DuckDB once per batch, never looked up per record.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Literal, TypeVar

import duckdb
import pyarrow as pa

# Table.group_by's engine (with pyarrow.dataset, ~60-120 ms): loaded with the module, like
# pyarrow itself, not lazily while the first chunk is checked
import pyarrow.acero
import pyarrow.compute as pc

from quote2cash.usage.duck import connection
from quote2cash.usage.reading import FIELDS
from quote2cash.usage.terms import SubscriptionTerms, cycle_boundary, period_index

LatePolicy = Literal["adjust", "reject"]
T = TypeVar("T")
MAX_ID: Final = 255
MAX_SCALE: Final = 12
FUTURE_SLACK_HOURS: Final = 24
TEST_CLOCK_FUTURE: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""The future limit of a subscription billing runs on a test clock: none in practice. Its time
is the test clock's, which only billing knows; the hub's snapshot of the subscription lags a
clock that was moved on (a renewal the hub has not heard of yet), so a bound from it refused
usage of a period billing had already opened. Test clocks exist only in test mode."""


def _naive(value: object) -> object:
    """An aware time as naive UTC wall clock (what the checks compute in)."""
    return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value


def reference_tables(con: duckdb.DuckDBPyConnection, terms: Sequence[SubscriptionTerms]) -> None:
    """The terms as five small DuckDB tables: refs, meters, reference meters, customer meters,
    subscriptions. ``refs`` has one row per reference: the subscription it names, or none
    when it names several (``n``); ``refmeters`` then says, per meter alias, which of those
    has it (``n`` of them), ``cands`` lists them with their service: a reference is
    resolved when it names one subscription, or several of which exactly one has the
    record's meter, or exactly one has it and is in service at the record's time (two
    subscriptions of one contract, one after the other: usage goes to the one of its time).

    The tables and the fast path's lookups are built once for the same terms and reused by
    every later chunk (each chunk's connection registers them); other terms rebuild them."""
    con.execute(
        "CREATE OR REPLACE TEMP MACRO quote(x) AS '''' || "
        "CASE WHEN length(x) > 200 THEN left(x, 200) || '...' ELSE x END || ''''"
    )
    reference = _reference(terms)
    for name, table in reference.tables.items():
        con.register(name, table)
    with _REFERENCE_LOCK:
        _REGISTERED[con] = reference


@dataclass(frozen=True)
class _Reference:
    """The reference tables of one list of terms, and the fast path's lookups over them."""

    terms: tuple[SubscriptionTerms, ...]
    tables: dict[str, pa.Table]
    fast: _FastTerms | None


_REFERENCE_LOCK: Final = threading.Lock()
_LAST_REFERENCE: list[_Reference] = []
_REGISTERED: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, _Reference] = (
    weakref.WeakKeyDictionary()
)


def _reference(terms: Sequence[SubscriptionTerms]) -> _Reference:
    """The reference data of ``terms``: the last one built when the terms are equal."""
    key = tuple(terms)
    with _REFERENCE_LOCK:
        if _LAST_REFERENCE and _LAST_REFERENCE[0].terms == key:
            return _LAST_REFERENCE[0]
    tables = _reference_data(key)
    reference = _Reference(key, tables, _fast_terms(tables))
    with _REFERENCE_LOCK:
        _LAST_REFERENCE[:] = [reference]
    return reference


def _reference_data(terms: Sequence[SubscriptionTerms]) -> dict[str, pa.Table]:
    """The five reference tables of ``terms`` (see ``reference_tables``)."""
    tables: dict[str, pa.Table] = {}
    named: dict[str, list[str]] = {}
    meters: dict[str, list[object]] = {
        "sub": [],
        "alias": [],
        "meter": [],
        "item_unit": [],
        "n": [],
    }
    by_customer: dict[tuple[str, str], list[str]] = {}
    named_items: dict[tuple[str, str], list[tuple[str, str]]] = {}
    subs: dict[str, list[object]] = {
        k: []
        for k in (
            "sub",
            "service_start",
            "service_end",
            "anchor",
            "mc",
            "cd",
            "closed_before",
            "open_start",
            "open_end",
            "future_limit",
            "known_meters",
        )
    }
    for t in terms:
        for ref in t.references:
            subs_named = named.setdefault(ref, [])
            if t.subscription not in subs_named:
                subs_named.append(t.subscription)
        for item in t.items:
            for alias in item.aliases:
                found = named_items.setdefault((t.subscription, alias), [])
                if (item.meter, item.unit) not in found:
                    found.append((item.meter, item.unit))
                if t.customer:
                    by_customer.setdefault((t.customer, alias), []).append(t.subscription)
        open_start, open_end = t.period_of(t.closed_before) if t.closed_before else (None, None)
        subs["sub"].append(t.subscription)
        subs["service_start"].append(t.service_start)
        subs["service_end"].append(t.service_end)
        subs["anchor"].append(t.cycle_anchor)
        subs["mc"].append(t.cycle_months)
        subs["cd"].append(t.cycle_days or (0 if t.cycle_months else 30))
        subs["closed_before"].append(t.closed_before)
        subs["open_start"].append(open_start)
        subs["open_end"].append(open_end)
        subs["future_limit"].append(TEST_CLOCK_FUTURE if t.on_test_clock else None)
        subs["known_meters"].append(", ".join(i.meter for i in t.items) or "none")
    for (owner, named_as), found in named_items.items():
        # one row per subscription and alias: ``n`` items it names (more than one: ambiguous)
        meters["sub"].append(owner)
        meters["alias"].append(named_as)
        meters["meter"].append(found[0][0])
        meters["item_unit"].append(found[0][1])
        meters["n"].append(len(found))
    ts = pa.timestamp("us")
    refs = {
        "ref": list(named),
        "sub": [s[0] if len(s) == 1 else None for s in named.values()],
        "n": [len(s) for s in named.values()],
    }
    tables["refs"] = pa.table(
        refs,
        schema=pa.schema([("ref", pa.string()), ("sub", pa.string()), ("n", pa.int64())]),
    )
    shared = {ref: set(s) for ref, s in named.items() if len(s) > 1}
    by_ref: dict[tuple[str, str], list[str]] = {}
    for owner, named_as in named_items if shared else ():
        for ref, among in shared.items():
            if owner in among and owner not in by_ref.setdefault((ref, named_as), []):
                by_ref[(ref, named_as)].append(owner)
    service = {t.subscription: (t.service_start, t.service_end) for t in terms}
    span = pa.struct([("sub", pa.string()), ("s", ts), ("e", ts)])
    tables["refmeters"] = pa.table(
        {
            "ref": [r for r, _ in by_ref],
            "alias": [a for _, a in by_ref],
            "sub": [s[0] for s in by_ref.values()],
            "n": [len(s) for s in by_ref.values()],
            "cands": [
                [
                    {"sub": c, "s": _naive(service[c][0]), "e": _naive(service[c][1])}
                    for c in sorted(s)
                ]
                for s in by_ref.values()
            ],
        },
        schema=pa.schema(
            [
                ("ref", pa.string()),
                ("alias", pa.string()),
                ("sub", pa.string()),
                ("n", pa.int64()),
                ("cands", pa.list_(span)),
            ]
        ),
    )
    tables["meters"] = pa.table(
        meters,
        schema=pa.schema(
            [
                *((k, pa.string()) for k in ("sub", "alias", "meter", "item_unit")),
                ("n", pa.int64()),
            ]
        ),
    )
    customers = {
        "customer": [c for c, _ in by_customer],
        "alias": [a for _, a in by_customer],
        "sub": [s[0] for s in by_customer.values()],
        "n": [len(set(s)) for s in by_customer.values()],
    }
    tables["custmeters"] = pa.table(
        customers,
        schema=pa.schema(
            [
                ("customer", pa.string()),
                ("alias", pa.string()),
                ("sub", pa.string()),
                ("n", pa.int64()),
            ]
        ),
    )
    schema = pa.schema(
        [
            ("sub", pa.string()),
            ("service_start", ts),
            ("service_end", ts),
            ("anchor", ts),
            ("mc", pa.int64()),
            ("cd", pa.int64()),
            ("closed_before", ts),
            ("open_start", ts),
            ("open_end", ts),
            ("future_limit", ts),
            ("known_meters", pa.string()),
        ]
    )
    for column in ("service_start", "service_end", "anchor", "closed_before"):
        subs[column] = [_naive(v) for v in subs[column]]
    for column in ("open_start", "open_end", "future_limit"):
        subs[column] = [_naive(v) for v in subs[column]]
    tables["subs"] = pa.table(subs, schema=schema)
    return tables


CONTENT_SQL: Final = """hash(concat_ws(chr(31), coalesce(trim(subscription), ''),
  coalesce(trim(customer), ''), coalesce(trim(meter), ''), coalesce(trim(quantity), ''),
  coalesce(trim(unit), ''), coalesce(trim("timestamp"), ''), coalesce(trim(properties), '')))"""
"""A record's content hash over its fields as sent (trimmed): the same record sent again hashes
the same; a different spelling of a value (``1.0`` for ``1``) is a change, decided as one."""

KEY_SQL: Final = """CASE WHEN nullif(trim(id), '') IS NOT NULL
  THEN hash($source || chr(31) || trim(id)) END"""
"""A record's key: the hash of its source and id (what deduplication is by)."""

TIME_SQL: Final = r"""CASE
  WHEN traw IS NULL THEN NULL
  WHEN suffix(traw, 'Z') OR suffix(traw, 'z') OR suffix(traw, '+00:00')
    THEN TRY_CAST(traw AS TIMESTAMP)
  WHEN regexp_full_match(traw, '[0-9]{1,11}') THEN make_timestamp(CAST(traw AS BIGINT) * 1000000)
  WHEN regexp_matches(traw, '[T ][0-9]{2}:[0-9]{2}.*[+-][0-9]{2}(:?[0-9]{2})?$')
    THEN CAST(TRY_CAST(traw AS TIMESTAMPTZ) AS TIMESTAMP)
END"""
"""Times as UTC wall clock (naive TIMESTAMP: its arithmetic needs no time zone library); a
time without a zone is refused rather than guessed."""

_REASON_SQL: Final = r"""CASE
    WHEN outcome = 'conflict' THEN WHO || ': field ''id'' was accepted before with other '
      || 'values: send it with corrections (--corrections or "correction": true) to amend it'
    WHEN outcome = 'conflict_batch' THEN WHO || ': field ''id'' appears more than once in '
      || 'this batch with different values: expected one record per id'
    WHEN outcome <> 'quarantined' THEN NULL
    WHEN field = 'row' THEN WHO || ': field ''row'' is malformed: ' || malformed
    WHEN field = 'id' THEN CASE WHEN rid IS NULL
      THEN WHO || ': field ''id'' is missing: expected a record id unique within its source'
      ELSE WHO || ': field ''id'' is ' || length(rid) || ' characters: expected at most '
        || $max_id END
    WHEN field = 'subscription' THEN CASE WHEN sref IS NULL
      THEN WHO || ': field ''subscription'' is missing: expected a contract number, hub id or '
        || 'billing subscription id (or a ''customer'')'
      WHEN ref_n > 1 THEN WHO || ': field ''subscription'' is ' || quote(sref) || ': it names '
        || ref_n || ' subscriptions' || CASE WHEN refmeter_n > 1
          THEN ', ' || refmeter_n || ' of them with meter ' || quote(mname)
            || coalesce(', ' || live_n || ' in service at ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ'),
              '')
          ELSE ', none of them with meter ' || quote(coalesce(mname, '')) END
        || ': expected the hub id or billing subscription id of one subscription'
      ELSE WHO || ': field ''subscription'' is ' || quote(sref) || ': expected a contract '
        || 'number, hub id or billing subscription id the hub knows' END
    WHEN field = 'customer' THEN CASE WHEN cust_n > 1
      THEN WHO || ': field ''customer'' is ' || quote(cref) || ': it has ' || cust_n
        || ' subscriptions with meter ' || quote(mname) || ': expected a ''subscription'''
      ELSE WHO || ': field ''customer'' is ' || quote(cref) || ': expected a customer with a '
        || 'subscription metering ' || quote(coalesce(mname, '')) END
    WHEN field = 'meter' THEN CASE WHEN meter_n > 1
      THEN WHO || ': field ''meter'' is ' || quote(mname) || ': it names ' || meter_n
        || ' of subscription ' || quote(sub) || 's metered items: expected one of '
        || coalesce(known_meters, 'none')
      WHEN mname IS NULL
      THEN WHO || ': field ''meter'' is missing: expected one of the subscription''s meters ('
        || coalesce(known_meters, 'none') || ')'
      ELSE WHO || ': field ''meter'' is ' || quote(mname) || ': not on subscription '
        || quote(sub) || 's items: expected one of ' || coalesce(known_meters, 'none') END
    WHEN field = 'quantity' THEN CASE
      WHEN q IS NULL THEN WHO || ': field ''quantity'' is ' || coalesce(quote(qraw), 'missing')
        || ': expected a decimal number'
      WHEN q < 0 THEN WHO || ': field ''quantity'' is ' || qraw || ': expected zero or more'
      ELSE WHO || ': field ''quantity'' is ' || qraw || ': expected at most '
        || $max_scale || ' decimal places' END
    WHEN field = 'unit'
      THEN WHO || ': field ''unit'' is ' || quote(uraw) || ': expected ' || quote(item_unit)
    WHEN field = 'timestamp' THEN CASE
      WHEN ts IS NULL THEN WHO || ': field ''timestamp'' is ' || coalesce(quote(traw), 'missing')
        || ': expected an ISO 8601 time with a zone (2026-01-31T12:00:00Z) or epoch seconds'
      WHEN ts < service_start OR (service_end IS NOT NULL AND ts >= service_end)
        THEN WHO || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
          || ': outside the subscription''s service (from '
          || strftime(service_start, '%Y-%m-%dT%H:%M:%SZ')
          || coalesce(' to ' || strftime(service_end, '%Y-%m-%dT%H:%M:%SZ'), '') || ')'
      WHEN ts > greatest($now, coalesce(future_limit, $now))
        THEN WHO || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
          || ': expected a time that is not in the future'
      ELSE WHO || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
        || ': in the closed billing period ' || strftime(ps0, '%Y-%m-%d') || ' to '
        || strftime(pe0, '%Y-%m-%d') || ' (late usage policy: reject)' END
    WHEN field = 'properties'
      THEN WHO || ': field ''properties'' is not a JSON object: expected {"name": value, ...}'
  END"""

_CHECK_TEMPLATE: Final = """
WITH r AS (
  SELECT line, malformed, key, content, stored, later, first_content,
    nullif(trim(id), '') AS rid,
    nullif(trim(subscription), '') AS sref,
    nullif(trim(customer), '') AS cref,
    nullif(trim(meter), '') AS mname,
    nullif(trim(quantity), '') AS qraw,
    nullif(trim(unit), '') AS uraw,
    nullif(trim("timestamp"), '') AS traw,
    nullif(trim(properties), '') AS praw,
    correction IS NOT NULL AND lower(trim(correction)) IN ('true', '1', 'yes') AS wants_correction
  FROM chunk
), p0 AS (
  SELECT r.*,
    TRY_CAST(qraw AS DECIMAL(38, 12)) AS q,
    TIME_HERE AS ts,
    refs.sub AS ref_sub, refs.n AS ref_n, rm.sub AS refmeter_sub, rm.n AS refmeter_n,
    rm.cands AS refmeter_cands, cm.sub AS cust_sub, cm.n AS cust_n
  FROM r
  LEFT JOIN refs ON refs.ref = r.sref
  LEFT JOIN refmeters rm ON refs.n > 1 AND rm.ref = r.sref AND rm.alias = r.mname
  LEFT JOIN custmeters cm ON r.sref IS NULL AND cm.customer = r.cref AND cm.alias = r.mname
), p1 AS (
  SELECT p0.*,
    CASE WHEN refmeter_n > 1 AND ts IS NOT NULL THEN list_transform(list_filter(refmeter_cands,
      lambda c: ts >= c.s AND (c.e IS NULL OR ts < c.e)), lambda c: c.sub) END AS live
  FROM p0
), p AS (
  SELECT p1.*, len(live) AS live_n,
    coalesce(ref_sub, CASE WHEN refmeter_n = 1 THEN refmeter_sub END,
      CASE WHEN len(live) = 1 THEN live[1] END, CASE WHEN cust_n = 1 THEN cust_sub END) AS sub
  FROM p1
), j AS (
  SELECT p.*, m.meter, m.item_unit, m.n AS meter_n, s.service_start, s.service_end, s.anchor,
    s.mc, s.cd, s.closed_before, s.open_start, s.open_end, s.future_limit, s.known_meters,
    CASE WHEN s.mc > 0 THEN CAST(floor(((year(p.ts) - year(s.anchor)) * 12
        + month(p.ts) - month(s.anchor)) / s.mc) AS BIGINT)
    ELSE (epoch_us(p.ts) - epoch_us(s.anchor)
        - ((epoch_us(p.ts) - epoch_us(s.anchor)) % (s.cd * 86400000000)
          + s.cd * 86400000000) % (s.cd * 86400000000)) // (s.cd * 86400000000)
    END AS k0
  FROM p
  LEFT JOIN meters m ON m.sub = p.sub AND m.alias = p.mname
  LEFT JOIN subs s ON s.sub = p.sub
), per AS (
  SELECT j.*,
    CASE WHEN mc > 0 AND anchor + to_months(CAST(k0 * mc AS INTEGER)) > ts THEN k0 - 1
    ELSE k0 END AS k
  FROM j
), per2 AS (
  SELECT per.*,
    CASE WHEN mc > 0 THEN anchor + to_months(CAST(k * mc AS INTEGER))
    ELSE anchor + to_days(CAST(k * cd AS INTEGER)) END AS ps0,
    CASE WHEN mc > 0 THEN anchor + to_months(CAST((k + 1) * mc AS INTEGER))
    ELSE anchor + to_days(CAST((k + 1) * cd AS INTEGER)) END AS pe0
  FROM per
), checked AS (
  SELECT per2.*,
    closed_before IS NOT NULL AND pe0 <= closed_before AS in_closed,
    CASE
      WHEN malformed IS NOT NULL THEN 'row'
      WHEN rid IS NULL THEN 'id'
      WHEN length(rid) > $max_id THEN 'id'
      WHEN sref IS NULL AND cref IS NULL THEN 'subscription'
      WHEN sref IS NOT NULL AND sub IS NULL THEN 'subscription'
      WHEN sref IS NULL AND cust_n > 1 THEN 'customer'
      WHEN mname IS NULL THEN 'meter'
      WHEN sref IS NULL AND sub IS NULL THEN 'customer'
      WHEN meter_n > 1 THEN 'meter'
      WHEN meter IS NULL THEN 'meter'
      WHEN q IS NULL THEN 'quantity'
      WHEN q < 0 THEN 'quantity'
      WHEN contains(qraw, '.') AND regexp_matches(qraw, '\\.[0-9]{13,}') THEN 'quantity'
      WHEN uraw IS NOT NULL AND lower(uraw) <> lower(item_unit) THEN 'unit'
      WHEN ts IS NULL THEN 'timestamp'
      WHEN ts < service_start OR (service_end IS NOT NULL AND ts >= service_end) THEN 'timestamp'
      WHEN ts > greatest($now, coalesce(future_limit, $now)) THEN 'timestamp'
      WHEN closed_before IS NOT NULL AND pe0 <= closed_before AND $policy = 'reject'
        THEN 'timestamp'
      WHEN praw IS NOT NULL AND NOT coalesce(json_valid(praw) AND json_type(praw) = 'OBJECT', false)
        THEN 'properties'
    END AS field
  FROM per2
), decided AS (
  SELECT c.*,
    CASE
      WHEN c.key IS NULL THEN 'quarantined'
      WHEN c.later AND c.content = c.first_content THEN 'duplicate'
      WHEN c.later THEN 'conflict_batch'
      WHEN c.stored IS NOT NULL AND c.stored = c.content THEN 'duplicate'
      WHEN c.field IS NOT NULL THEN 'quarantined'
      WHEN c.stored IS NOT NULL AND NOT ($corrections OR c.wants_correction) THEN 'conflict'
      WHEN c.stored IS NOT NULL THEN 'corrected'
      ELSE 'accepted'
    END AS outcome
  FROM checked c
)
SELECT line, rid, key, content, outcome, sub, meter, coalesce(item_unit, uraw) AS unit, q, ts,
  CASE WHEN in_closed AND $policy = 'adjust' THEN open_start ELSE ps0 END AS period_start,
  CASE WHEN in_closed AND $policy = 'adjust' THEN open_end ELSE pe0 END AS period_end,
  in_closed AND $policy = 'adjust' AS adjusted, praw,
  CASE WHEN outcome LIKE 'conflict%' THEN 'id' ELSE field END AS field,
  REASON_HERE AS reason,
  CASE WHEN outcome IN ('quarantined', 'conflict', 'conflict_batch') THEN
    json_object('id', rid, 'subscription', sref, 'customer', cref, 'meter', mname,
      'quantity', qraw, 'unit', uraw, 'timestamp', traw, 'properties', praw) END AS raw
FROM decided
"""
_WHO: Final = "('record ' || coalesce(quote(rid), 'at line ' || line))"
_CHECK_SQL: Final = (
    _CHECK_TEMPLATE.replace("TIME_HERE", TIME_SQL)
    .replace("REASON_HERE", _REASON_SQL)
    .replace("WHO", _WHO)
)


def repeats(keys: pa.Array, contents: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Per record: is it a later occurrence of a key earlier in the chunk, and the content of
    that key's first occurrence (a stable sort by key, then runs of equal keys)."""
    n = len(keys)
    if n == 0:
        return pa.array([], pa.bool_()), pa.array([], pa.uint64())
    if keys.null_count == 0 and len(pc.unique(keys)) == n:  # no repeats (the common case)
        return _all_false(n), contents
    order = pc.sort_indices(keys)
    ordered = pc.take(keys, order)
    same = pc.fill_null(pc.equal(ordered.slice(1), ordered.slice(0, n - 1)), False)
    later_sorted = pa.concat_arrays([pa.array([False]), same])
    starts = pc.indices_nonzero(pc.invert(later_sorted))
    run = pc.subtract(pc.cumulative_sum(pc.cast(pc.invert(later_sorted), pa.int64())), 1)
    first = pc.take(pc.take(contents, order), pc.take(starts, run))
    positions = order.cast(pa.int64())
    later = pc.scatter(later_sorted, positions, max_index=n - 1)
    first_content = pc.scatter(first, positions, max_index=n - 1)
    return later, first_content


def _stored_hashes(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    source: str,
    lookup: Callable[[pa.Array], pa.Array],
    *,
    plain: bool,
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Each record's key and content hash (``KEY_SQL``, ``CONTENT_SQL``; their plain forms
    when ``plain``: right only for records the fast path takes, see ``_plain_hashes``) and
    the content hash history holds for its key (null: none, or no key)."""
    if plain:
        keys, contents = _plain_hashes(con, chunk, source)
    else:
        con.register("raw_chunk", chunk)
        try:
            hashed = con.sql(
                f"SELECT {KEY_SQL} AS key, {CONTENT_SQL} AS content FROM raw_chunk",
                params={"source": source},
            ).to_arrow_table()
        finally:
            con.unregister("raw_chunk")
        keys = hashed.column("key").combine_chunks().cast(pa.uint64())
        contents = hashed.column("content").combine_chunks().cast(pa.uint64())
    if keys.null_count:
        stored = pc.if_else(
            pc.is_valid(keys), lookup(pc.fill_null(keys, 0)), pa.nulls(len(keys), pa.uint64())
        )
    else:
        stored = lookup(keys)
    return keys, contents, stored


def _hashed_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    source: str,
    lookup: Callable[[pa.Array], pa.Array],
) -> tuple[pa.Array, pa.Array, pa.Array, bool]:
    """``_stored_hashes`` in the plain form, the history lookup in a thread of its own, and
    whether no key is there twice."""
    keys, contents = _plain_hashes(con, chunk, source)
    looking = _InThread(lookup, keys)
    try:
        distinct = len(pc.unique(keys)) == len(keys)
    finally:
        looking.join()
    return keys, contents, looking.result(), distinct


def _none_repeated(keys: pa.Array, others: pa.Array) -> bool:
    """No key of ``keys`` (nulls aside) twice among them or among ``others``."""
    present = keys.drop_null()
    if len(pc.unique(present)) != len(present):
        return False
    return not pc.any(pc.is_in(others, value_set=present)).as_py()


def _plain_hashes(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, source: str
) -> tuple[pa.Array, pa.Array]:
    """``KEY_SQL`` and ``CONTENT_SQL`` of records whose text needs no trimming and whose
    subscription, meter, quantity and time are present (the fast path's): DuckDB's ``hash``
    of the same text, the text put together by Arrow (cheaper than DuckDB's ``concat_ws``
    over six columns). For any other record the values are not its hashes."""
    sep = chr(31)
    fields = ("subscription", "customer", "meter", "quantity", "unit", "timestamp")
    texts = pa.table(
        {
            "k": pc.binary_join_element_wise(source, chunk.column("id"), sep),
            "c": pc.binary_join_element_wise(
                *(chunk.column(name) for name in fields),
                "",  # ``properties``, none on a fast record
                sep,
                null_handling="replace",
                null_replacement="",
            ),
        }
    )
    con.register("plain_texts", texts)
    try:
        hashed = con.sql("SELECT hash(k) AS k, hash(c) AS c FROM plain_texts").to_arrow_table()
    finally:
        con.unregister("plain_texts")
    return (
        hashed.column("k").combine_chunks().cast(pa.uint64()),
        hashed.column("c").combine_chunks().cast(pa.uint64()),
    )


class _InThread(Generic[T]):
    """A call run in a thread of its own; ``result`` waits for it and returns its value or
    raises its error. Worth it for Arrow and DuckDB work, which releases the GIL."""

    def __init__(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> None:
        self._value: list[T] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._value.append(call(*args, **kwargs))
            except BaseException as exc:  # handed to the caller of ``result``
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name="q2c-usage-check", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> T:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._value[0]


def check_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    *,
    source: str,
    policy: LatePolicy,
    now: datetime,
    lookup: Callable[[pa.Array], pa.Array],
    corrections: bool = False,
    fast: bool = True,
) -> pa.Table:
    """Each record of the chunk checked and decided: ``outcome`` is accepted, duplicate,
    corrected, quarantined or conflict[_batch]; ``lookup`` gives each key's stored content
    hash from history (null: never accepted). The reference tables must be registered.

    Plain valid records that are new or exact repeats are decided by the fast path (Arrow
    kernels, see ``_fast_rows``); the rest by the checking query. ``fast=False`` sends every
    record through the query (the definition the fast path is tested against)."""
    n = chunk.num_rows
    limit = (now + timedelta(hours=FUTURE_SLACK_HOURS)).astimezone(UTC).replace(tzinfo=None)
    if fast:
        # the plain form's hashes of every record and their history, in a thread (DuckDB and
        # Arrow release the GIL) while the fast path checks the records
        with contextlib.closing(con.cursor()) as cursor:
            hashing = _InThread(_hashed_chunk, cursor, chunk, source, lookup)
            try:
                plain, values = _fast_rows(con, chunk, policy=policy, limit=limit)
            finally:
                hashing.join()
        keys, contents, stored, distinct = hashing.result()
        plain = _flat(plain)
        other = pc.invert(plain)
        if pc.any(other).as_py():  # the rest: hashed over their trimmed fields, as defined
            part = _stored_hashes(con, chunk.filter(other), source, lookup, plain=False)
            distinct = distinct and _none_repeated(part[0], keys.filter(plain))
            keys, contents, stored = (
                pc.replace_with_mask(whole, other, mine)
                for whole, mine in zip((keys, contents, stored), part, strict=True)
            )
    else:
        plain, values = _all_false(n), {}
        keys, contents, stored = _stored_hashes(con, chunk, source, lookup, plain=False)
        distinct = False
    if distinct:  # no key twice in the chunk (the common case)
        later, first_content = _all_false(n), contents
    else:
        later, first_content = repeats(keys, contents)
    extra = {
        "key": keys,
        "content": contents,
        "stored": stored,
        "later": later,
        "first_content": first_content,
    }
    duplicate = _true(
        pc.if_else(later, pc.equal(contents, first_content), pc.equal(stored, contents))
    )
    new = _true(pc.and_(pc.invert(later), pc.is_null(stored)))
    plain = _true(pc.and_(plain, pc.or_(duplicate, new)))
    if isinstance(plain, pa.ChunkedArray):
        plain = plain.combine_chunks()
    slow = pc.invert(plain)
    checked = None
    if not values or pc.any(slow).as_py():
        rest = chunk if not values else chunk.filter(slow)
        for name, column in extra.items():
            rest = rest.append_column(name, column if not values else column.filter(slow))
        con.register("chunk", rest)
        try:
            checked = con.sql(
                _CHECK_SQL,
                params={
                    "policy": policy,
                    "now": limit,
                    "max_id": MAX_ID,
                    "max_scale": MAX_SCALE,
                    "corrections": corrections,
                },
            ).to_arrow_table()
        finally:
            con.unregister("chunk")
        if not values:
            return checked
        if checked.num_rows != rest.num_rows:
            # not expected (every reference table has one row per key, so the query one row per
            # record); should it happen, the rows cannot be merged back one for one, so the
            # query decides the whole chunk
            return check_chunk(
                con,
                chunk,
                source=source,
                policy=policy,
                now=now,
                lookup=lookup,
                corrections=corrections,
                fast=False,
            )
    schema = checked.schema if checked is not None else _decided_schema(con)
    columns: dict[str, pa.Array] = {
        "line": chunk.column("line"),
        "rid": values["rid"],
        "key": keys,
        "content": contents,
        "outcome": _coded(pc.cast(duplicate, pa.int32()), ["accepted", "duplicate"]),
        **{k: values[k] for k in ("sub", "meter", "unit", "q", "ts")},
        **{k: values[k] for k in ("period_start", "period_end", "adjusted")},
        **dict.fromkeys(("praw", "field", "reason", "raw"), pa.nulls(n, pa.string())),
    }
    same = ("line", "key", "content")  # the query gives the chunk's own values back
    mixed = checked is not None and checked.num_rows > 0
    # where a record of the query sits in ``checked`` (null for fast records)
    slot = pc.if_else(
        slow,
        pc.subtract(pc.cumulative_sum(pc.cast(slow, pa.int64())), 1),
        pa.scalar(None, pa.int64()),
    )

    def merged(name: str, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        theirs = checked.column(name).combine_chunks() if mixed and checked is not None else None
        if theirs is not None and name in ("praw", "field", "reason", "raw"):
            return pc.take(theirs, slot)  # null for every fast record
        if isinstance(column, pa.DictionaryArray):
            # a few distinct values: decoded once, the query's values appended to the dictionary
            if theirs is not None:
                dictionary = pa.concat_arrays([column.dictionary, theirs.cast(pa.string())])
                at = pc.if_else(slow, pc.add(slot, len(column.dictionary)), column.indices)
                column = pa.DictionaryArray.from_arrays(pc.cast(at, pa.int64()), dictionary)
            return column.cast(schema.field(name).type)
        column = column.cast(schema.field(name).type)
        if theirs is not None and name not in same:
            column = pc.replace_with_mask(column, slow, theirs)
        return column

    # every other column in a thread (Arrow releases the GIL): the two halves side by side
    names = list(columns)
    half = _InThread(lambda: {name: merged(name, columns[name]) for name in names[::2]})
    try:
        mine = {name: merged(name, columns[name]) for name in names[1::2]}
    finally:
        half.join()
    columns = {**half.result(), **mine}
    columns = {name: columns[name] for name in names}
    return pa.table(columns, schema=schema)


def _coded(indices: pa.Array | pa.ChunkedArray, values: Sequence[str] | pa.Array) -> pa.Array:
    """Text given as indices into a few values (decoded when the table is put together)."""
    if isinstance(indices, pa.ChunkedArray):
        indices = indices.combine_chunks()
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def _decided_schema(con: duckdb.DuckDBPyConnection) -> pa.Schema:
    """The checking query's output schema (run on no rows)."""
    empty = pa.table(
        {
            **{name: pa.array([], pa.string()) for name in FIELDS},
            "line": pa.array([], pa.int64()),
            "malformed": pa.array([], pa.string()),
            **{name: pa.array([], pa.uint64()) for name in ("key", "content", "stored")},
            "later": pa.array([], pa.bool_()),
            "first_content": pa.array([], pa.uint64()),
        }
    )
    con.register("chunk", empty)
    try:
        return (
            con.sql(
                _CHECK_SQL,
                params={
                    "policy": "adjust",
                    "now": datetime(2000, 1, 1, tzinfo=UTC).replace(tzinfo=None),
                    "max_id": MAX_ID,
                    "max_scale": MAX_SCALE,
                    "corrections": False,
                },
            )
            .to_arrow_table()
            .schema
        )
    finally:
        con.unregister("chunk")


def new_connection() -> duckdb.DuckDBPyConnection:
    return connection()


# --- the fast path: plain valid records decided with Arrow kernels ---------------------------

_EDGE_SAFE: Final = r"^[!-~](?s:.*[!-~])?$"
"""Text that starts and ends with a printable ASCII character other than a space: DuckDB's
``trim`` leaves it as it is (whatever characters trim removes, none of them is such)."""
_FAST_QUANTITY: Final = r"^[0-9]{1,24}(\.[0-9]{1,12})?$"
_FAST_TIME: Final = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
)
_FAST_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def _edge_safe(text: str | None) -> bool:
    return bool(text) and "!" <= text[0] <= "~" and "!" <= text[-1] <= "~"  # type: ignore[index]


def _all_false(n: int) -> pa.Array:
    return pa.repeat(pa.scalar(False), n)


def _only(column: pa.Array | pa.ChunkedArray, mask: pa.Array) -> pa.Array:
    """``column`` (text) with null wherever ``mask`` is false, without copying the text: the
    mask's bits become the validity (``mask`` implies a value; both unsliced)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if column.offset or mask.offset or mask.null_count:
        return pc.if_else(mask, column, pa.scalar(None, column.type))
    _, offsets, data = column.buffers()
    return pa.Array.from_buffers(column.type, len(column), [mask.buffers()[1], offsets, data])


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _true(mask: pa.Array) -> pa.Array:
    """A boolean mask with nulls as false."""
    return pc.fill_null(mask, False)


@dataclass(frozen=True)
class _FastTerms:
    """The fast path's lookups over the reference tables: the references and (subscription,
    meter alias) pairs that name exactly one row, as arrays for ``index_in``; subscriptions
    by code (their position in ``subs``)."""

    names: pa.Array
    rows: list[dict[str, Any]]
    refs: pa.Array
    ref_codes: pa.Array
    aliases: pa.Array
    pairs: pa.Array
    pair_meters: pa.Array
    pair_units: pa.Array


def _tables_of(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The reference tables registered in ``con`` (when not by ``reference_tables``)."""
    return {name: con.table(name).to_arrow_table() for name in ("refs", "meters", "subs")}


def _fast_terms(tables: dict[str, pa.Table]) -> _FastTerms | None:
    """The fast path's lookups, or none when it cannot decide any record by these terms."""
    refs = [(r["ref"], r["sub"]) for r in tables["refs"].to_pylist() if r["sub"] is not None]
    meters = [
        (m["sub"], m["alias"], m["meter"], m["item_unit"])
        for m in tables["meters"].to_pylist()
        if m["n"] == 1
    ]
    subs = tables["subs"]
    names = subs.column("sub").to_pylist()
    if len(set(names)) != len(names):
        return None
    code_of = {name: i for i, name in enumerate(names)}
    ref_count: dict[str, int] = {}
    for ref, _ in refs:
        ref_count[ref] = ref_count.get(ref, 0) + 1
    fast_refs = [
        (r, code_of[s]) for r, s in refs if ref_count[r] == 1 and _edge_safe(r) and s in code_of
    ]
    aliases = sorted({a for _, a, _, _ in meters if _edge_safe(a)})
    alias_code = {a: i for i, a in enumerate(aliases)}
    pair_count: dict[tuple[str, str], int] = {}
    for s, a, _, _ in meters:
        pair_count[(s, a)] = pair_count.get((s, a), 0) + 1
    pairs = [
        (code_of[s] * len(aliases) + alias_code[a], m, u)
        for s, a, m, u in meters
        if pair_count[(s, a)] == 1 and a in alias_code and s in code_of and _edge_safe(u)
    ]
    if not fast_refs or not pairs:
        return None
    return _FastTerms(
        names=subs.column("sub").combine_chunks(),
        rows=subs.to_pylist(),
        refs=pa.array([r for r, _ in fast_refs], pa.string()),
        ref_codes=pa.array([c for _, c in fast_refs], pa.int64()),
        aliases=pa.array(aliases, pa.string()),
        pairs=pa.array([p for p, _, _ in pairs], pa.int64()),
        pair_meters=pa.array([m for _, m, _ in pairs], pa.string()),
        pair_units=pa.array([u for _, _, u in pairs], pa.string()),
    )


def _bytes_at(column: pa.Array | pa.ChunkedArray, positions: Sequence[int]) -> list[pa.Array]:
    """Per text value, its byte at each of ``positions`` (negative: from its end), as uint8,
    read from the values' buffers without copies. Where the value is null or not long
    enough the byte is some other one: the caller checks the length."""
    if isinstance(column, pa.ChunkedArray):
        parts = [_bytes_at(c, positions) for c in column.chunks]
        if not parts:
            return [pa.array([], pa.uint8()) for _ in positions]
        return [pa.concat_arrays([p[i] for p in parts]) for i in range(len(positions))]
    n = len(column)
    if column.type != pa.string():
        column = column.cast(pa.string())
    _, offsets_buffer, data = column.buffers()
    if data is None or data.size == 0:
        return [pa.repeat(pa.scalar(0, pa.uint8()), n) for _ in positions]
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, offsets_buffer], offset=column.offset)
    data_bytes = pa.Array.from_buffers(pa.uint8(), data.size, [None, data])
    out = []
    for at in positions:
        if at >= 0:
            where = pc.min_element_wise(pc.add(offsets.slice(0, n), at), data.size - 1)
        else:
            where = pc.max_element_wise(pc.add(offsets.slice(1, n), at), 0)
        out.append(pc.take(data_bytes, where))
    return out


def _edge_safe_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``_edge_safe`` of each value (null stays null): it starts and ends with a printable
    ASCII character other than a space."""
    first, last = _bytes_at(column, (0, -1))
    safe = pc.greater_equal(pc.binary_length(column), 1)
    for byte in (first, last):
        safe = pc.and_(
            safe, pc.and_(pc.greater_equal(byte, ord("!")), pc.less_equal(byte, ord("~")))
        )
    return safe


def _fast_rows(
    con: duckdb.DuckDBPyConnection, chunk: pa.Table, *, policy: LatePolicy, limit: datetime
) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Which records the fast path can decide, and their resolved values (garbage elsewhere).

    A record takes the fast path only when every check passes and each of its values is in a
    plain form whose meaning is beyond doubt: no spaces to trim, a subscription reference and
    a meter alias that map to exactly one row of the terms, the item's unit or none, a plain
    decimal quantity (at most 12 decimal places), a time ``YYYY-MM-DDTHH:MM:SSZ`` within the
    subscription's service and not in the future, no properties, no correction flag.
    Everything else, every failing record included, goes through the checking query
    (``_CHECK_SQL``); the billing periods of fast records are the terms' own
    (``terms.cycle_boundary``), computed once per subscription and period.
    """
    n = chunk.num_rows
    registered = _REGISTERED.get(con)
    terms = registered.fast if registered is not None else _fast_terms(_tables_of(con))
    if n == 0 or terms is None:
        return _all_false(n), {}

    column = chunk.column
    fast = pc.is_null(column("malformed"))
    for name in ("properties", "correction"):
        if column(name).null_count != n:
            fast = pc.and_(fast, pc.is_null(column(name)))
    rid = column("id")
    fast = pc.and_(fast, _edge_safe_column(rid))
    fast = pc.and_(fast, pc.less_equal(pc.binary_length(rid), MAX_ID))
    customer = column("customer")
    if customer.null_count != n:
        fast = pc.and_(fast, pc.or_kleene(pc.is_null(customer), _edge_safe_column(customer)))
    ref_index = pc.index_in(column("subscription"), terms.refs)
    sub_code = pc.take(terms.ref_codes, ref_index)
    meter_alias = pc.index_in(column("meter"), terms.aliases)
    pair = pc.add(pc.multiply(sub_code, len(terms.aliases)), pc.cast(meter_alias, pa.int64()))
    meter_row = pc.index_in(pair, terms.pairs)
    fast = pc.and_(fast, pc.is_valid(meter_row))
    unit = column("unit")
    if unit.null_count != n:
        item_unit = pc.take(terms.pair_units, meter_row)
        fast = pc.and_(fast, pc.or_kleene(pc.is_null(unit), pc.equal(unit, item_unit)))
    quantity, stamp = column("quantity"), column("timestamp")
    q_length = pc.binary_length(quantity)
    dotted = pc.any(pc.match_substring(quantity, ".")).as_py()
    if dotted:
        fast = pc.and_(fast, pc.match_substring_regex(quantity, _FAST_QUANTITY))
    else:  # whole numbers only: digits, at most 24 (``_FAST_QUANTITY`` without a fraction)
        fast = pc.and_(fast, pc.and_(pc.ascii_is_decimal(quantity), pc.less_equal(q_length, 24)))
    # a time of the plain form's length, first digit, "T" and "Z"; Arrow's ISO 8601 parser
    # checks the rest (digits, dashes, colons, ranges, the day of the month) below
    t_length = pc.binary_length(stamp)
    first, tee, zulu = _bytes_at(stamp, (0, 10, 19))
    fast = pc.and_(fast, pc.equal(t_length, 20))
    fast = pc.and_(fast, pc.and_(pc.greater_equal(first, ord("1")), pc.less_equal(first, ord("9"))))
    fast = pc.and_(fast, pc.and_(pc.equal(tee, ord("T")), pc.equal(zulu, ord("Z"))))
    fast = _true(fast)
    longest = None if dotted else pc.max(pc.filter(q_length, fast)).as_py()
    if longest is not None and longest <= 18:  # whole numbers within int64: cast through it
        q = pc.cast(pc.cast(_only(quantity, fast), pa.int64()), pa.decimal128(38, 12))
    else:
        q = pc.cast(_only(quantity, fast), pa.decimal128(38, 12))
    try:  # Arrow's ISO 8601 parser; it refuses a malformed or impossible time as a whole
        ts = pc.cast(pc.cast(_only(stamp, fast), pa.timestamp("us", "UTC")), pa.timestamp("us"))
    except pa.ArrowInvalid:
        fast = _true(pc.and_(fast, pc.match_substring_regex(stamp, _FAST_TIME)))
        stamps = _only(stamp, fast)
        ts = pc.strptime(stamps, format=_FAST_TIME_FORMAT, unit="us", error_is_null=True)
        # an impossible day parses as a day of the next month: such a record is not plain
        day = pc.cast(pc.utf8_slice_codeunits(stamps, 8, 10), pa.int64())
        fast = _true(pc.and_(fast, pc.equal(pc.day(ts), day)))
    code = pc.if_else(fast, sub_code, 0)
    seconds = pc.divide(pc.cast(ts, pa.int64()), 1_000_000)  # whole seconds (the format's)
    fast = _true(pc.and_(fast, pc.and_(pc.greater_equal(seconds, 0), pc.less(seconds, 1 << 32))))
    if not pc.any(fast).as_py():
        return fast, {}
    segments = _segments(terms, pc.filter(code, fast), pc.filter(ts, fast), policy, limit)
    found = pc.search_sorted(
        segments.column("at"),
        pc.add(pc.shift_left(code, 32), pc.if_else(fast, seconds, 0)),
        side="right",
    )
    segment = pc.max_element_wise(pc.subtract(pc.cast(found, pa.int64()), 1), 0)
    fast = _true(pc.and_(fast, pc.take(segments.column("ok"), segment)))
    adjusted = pc.take(segments.column("adjusted"), segment)
    values = {
        "rid": rid,
        "sub": _coded(code, terms.names),
        "meter": _coded(meter_row, terms.pair_meters),
        "unit": _coded(meter_row, terms.pair_units),
        "q": q,
        "ts": ts,
        "period_start": pc.take(segments.column("period_start"), segment),
        "period_end": pc.take(segments.column("period_end"), segment),
        "adjusted": adjusted,
    }
    return fast, values


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC).replace(tzinfo=None)
_MAX_FAST_PERIODS: Final = 4000
_SECOND: Final = timedelta(seconds=1)


def _floor_s(at: datetime) -> int:
    return (at - _EPOCH) // _SECOND


def _ceil_s(at: datetime) -> int:
    return -((_EPOCH - at) // _SECOND)


def _segments(
    terms: _FastTerms,
    codes: pa.Array,
    times: pa.Array,
    policy: LatePolicy,
    limit: datetime,
) -> pa.Table:
    """The time line of each subscription in the chunk cut into segments, one row each, keyed
    ``at`` = code << 32 | the segment's first second (sorted): a record (in whole seconds) is
    in the last segment at or before its own key. Each segment says whether a record in it
    passes the time checks (``ok``: in service, from the cycle anchor, not in the future, not
    a closed period refused by policy) and its billing period, by the terms' one rule
    (``terms.cycle_boundary``, the same as ``SubscriptionTerms.period_of`` and the checking
    query); a late record's period is the open one when the policy adjusts."""
    present = sorted(pc.unique(codes).to_pylist())
    spans = (
        pa.table({"code": codes, "ts": times})
        .group_by("code")
        .aggregate([("ts", "min"), ("ts", "max")])
        .to_pylist()
    )
    span_of = {r["code"]: (r["ts_min"], r["ts_max"]) for r in spans}
    rows = terms.rows
    starts: dict[str, list[tuple[datetime, datetime]]] = {}
    for c in present:
        row = rows[c]
        mc, cd, anchor = row["mc"] or 0, row["cd"] or 0, row["anchor"]
        # only the periods the chunk's records can be valid in: within the subscription's
        # service, from the anchor, not in the future
        low, high = span_of[c]  # this subscription's records in the chunk
        first = max(low, row["service_start"], anchor)
        last = min(high, max(limit, row["future_limit"] or limit))
        if row["service_end"] is not None:
            last = min(last, row["service_end"])
        if first > last:
            continue
        k_first = period_index(anchor, mc, cd, first)
        k_last = period_index(anchor, mc, cd, last)
        if k_last - k_first > _MAX_FAST_PERIODS:
            continue  # a long span of short periods: the query decides these records
        bounds = [cycle_boundary(anchor, mc, cd, k) for k in range(k_first, k_last + 2)]
        starts[row["sub"]] = list(itertools.pairwise(bounds))
    out: dict[str, list[object]] = {
        "at": [],
        "ok": [],
        "adjusted": [],
        "period_start": [],
        "period_end": [],
    }

    def cut(code: int, second: int, ok: bool, adjusted: bool, period: tuple[Any, Any]) -> None:
        out["at"].append((code << 32) + second)
        out["ok"].append(ok)
        out["adjusted"].append(adjusted)
        out["period_start"].append(period[0])
        out["period_end"].append(period[1])

    for c in present:
        row = rows[c]
        cut(c, 0, False, False, (None, None))
        periods = starts.get(row["sub"], [])
        if not periods:
            continue
        lo = _ceil_s(max(row["service_start"], row["anchor"]))
        hi = _floor_s(max(limit, row["future_limit"] or limit)) + 1
        if row["service_end"] is not None:
            hi = min(hi, _ceil_s(row["service_end"]))
        begins = [_ceil_s(start) for start, _ in periods]
        for second in sorted({*begins, lo, hi}):
            if not 0 < second < 1 << 32:
                continue
            held = bisect.bisect_right(begins, second) - 1
            if held < 0:
                cut(c, second, False, False, (None, None))
                continue
            period = periods[held]
            ok = lo <= second < hi
            closed = row["closed_before"]
            in_closed = closed is not None and period[1] <= closed
            if in_closed and policy == "reject":
                cut(c, second, False, False, period)
            elif in_closed:
                cut(c, second, ok, True, (row["open_start"], row["open_end"]))
            else:
                cut(c, second, ok, False, period)
    ts = pa.timestamp("us")
    return pa.table(
        {
            "at": pa.array(out["at"], pa.int64()),
            "ok": pa.array(out["ok"], pa.bool_()),
            "adjusted": pa.array(out["adjusted"], pa.bool_()),
            "period_start": pa.array(out["period_start"], ts),
            "period_end": pa.array(out["period_end"], ts),
        }
    )
