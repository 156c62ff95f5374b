"""Vectorised validation of a chunk of usage records against the subscriptions' terms (DuckDB).

Each record gets its key (hash of source and id), its content hash, what it resolves to
(subscription, meter, unit, billing period) and, when it fails, the first rule it breaks as
``field`` and ``reason``; the reason names the record id, the field and what was expected.
The terms are loaded into DuckDB once per batch, never looked up per record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from quote2cash.usage.duck import connection
from quote2cash.usage.terms import SubscriptionTerms

LatePolicy = Literal["adjust", "reject"]
MAX_ID: Final = 255
MAX_SCALE: Final = 12
FUTURE_SLACK_HOURS: Final = 24


def _naive(value: object) -> object:
    """An aware time as naive UTC wall clock (what the checks compute in)."""
    return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value


def reference_tables(con: duckdb.DuckDBPyConnection, terms: Sequence[SubscriptionTerms]) -> None:
    """The terms as four small DuckDB tables: refs, meters, customer meters, subscriptions."""
    con.execute(
        "CREATE OR REPLACE TEMP MACRO quote(x) AS '''' || "
        "CASE WHEN length(x) > 200 THEN left(x, 200) || '...' ELSE x END || ''''"
    )
    refs: dict[str, list[object]] = {"ref": [], "sub": []}
    meters: dict[str, list[object]] = {"sub": [], "alias": [], "meter": [], "item_unit": []}
    by_customer: dict[tuple[str, str], list[str]] = {}
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
            refs["ref"].append(ref)
            refs["sub"].append(t.subscription)
        for item in t.items:
            for alias in item.aliases:
                meters["sub"].append(t.subscription)
                meters["alias"].append(alias)
                meters["meter"].append(item.meter)
                meters["item_unit"].append(item.unit)
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
        subs["future_limit"].append(open_end if t.on_test_clock else None)
        subs["known_meters"].append(", ".join(i.meter for i in t.items) or "none")
    ts = pa.timestamp("us")
    con.register(
        "refs", pa.table(refs, schema=pa.schema([("ref", pa.string()), ("sub", pa.string())]))
    )
    con.register(
        "meters",
        pa.table(meters, schema=pa.schema([(k, pa.string()) for k in meters])),
    )
    customers = {
        "customer": [c for c, _ in by_customer],
        "alias": [a for _, a in by_customer],
        "sub": [s[0] for s in by_customer.values()],
        "n": [len(set(s)) for s in by_customer.values()],
    }
    con.register(
        "custmeters",
        pa.table(
            customers,
            schema=pa.schema(
                [
                    ("customer", pa.string()),
                    ("alias", pa.string()),
                    ("sub", pa.string()),
                    ("n", pa.int64()),
                ]
            ),
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
    con.register("subs", pa.table(subs, schema=schema))


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
      ELSE WHO || ': field ''subscription'' is ' || quote(sref) || ': expected a contract '
        || 'number, hub id or billing subscription id the hub knows' END
    WHEN field = 'customer' THEN CASE WHEN cust_n > 1
      THEN WHO || ': field ''customer'' is ' || quote(cref) || ': it has ' || cust_n
        || ' subscriptions with meter ' || quote(mname) || ': expected a ''subscription'''
      ELSE WHO || ': field ''customer'' is ' || quote(cref) || ': expected a customer with a '
        || 'subscription metering ' || quote(coalesce(mname, '')) END
    WHEN field = 'meter' THEN CASE WHEN mname IS NULL
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
), p AS (
  SELECT r.*,
    TRY_CAST(qraw AS DECIMAL(38, 12)) AS q,
    TIME_HERE AS ts,
    coalesce(refs.sub, CASE WHEN cm.n = 1 THEN cm.sub END) AS sub,
    cm.n AS cust_n
  FROM r
  LEFT JOIN refs ON refs.ref = r.sref
  LEFT JOIN custmeters cm ON r.sref IS NULL AND cm.customer = r.cref AND cm.alias = r.mname
), j AS (
  SELECT p.*, m.meter, m.item_unit, s.service_start, s.service_end, s.anchor, s.mc, s.cd,
    s.closed_before, s.open_start, s.open_end, s.future_limit, s.known_meters,
    CASE WHEN s.mc > 0 THEN
      ((year(p.ts) - year(s.anchor)) * 12 + month(p.ts) - month(s.anchor)) // s.mc * s.mc
    END AS mstep,
    CASE WHEN s.mc = 0 THEN
      (epoch(p.ts) - epoch(s.anchor)) // (s.cd * 86400) * s.cd
    END AS dstep
  FROM p
  LEFT JOIN meters m ON m.sub = p.sub AND m.alias = p.mname
  LEFT JOIN subs s ON s.sub = p.sub
), per AS (
  SELECT j.*,
    CASE WHEN mc > 0 THEN
      CASE WHEN anchor + to_months(CAST(mstep AS INTEGER)) > ts
        THEN anchor + to_months(CAST(mstep - mc AS INTEGER))
        ELSE anchor + to_months(CAST(mstep AS INTEGER)) END
    ELSE anchor + to_days(CAST(dstep AS INTEGER)) END AS ps0
  FROM j
), per2 AS (
  SELECT per.*,
    CASE WHEN mc > 0 THEN ps0 + to_months(CAST(mc AS INTEGER))
    ELSE ps0 + to_days(CAST(cd AS INTEGER)) END AS pe0
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


def check_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    *,
    source: str,
    policy: LatePolicy,
    now: datetime,
    lookup: Callable[[pa.Array], pa.Array],
    corrections: bool = False,
) -> pa.Table:
    """Each record of the chunk checked and decided: ``outcome`` is accepted, duplicate,
    corrected, quarantined or conflict[_batch]; ``lookup`` gives each key's stored content
    hash from history (null: never accepted). The reference tables must be registered."""
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
    known = pc.is_valid(keys)
    stored = pc.if_else(known, lookup(pc.fill_null(keys, 0)), pa.nulls(len(keys), pa.uint64()))
    later, first_content = repeats(keys, contents)
    extra = {
        "key": keys,
        "content": contents,
        "stored": stored,
        "later": later,
        "first_content": first_content,
    }
    for name, column in extra.items():
        chunk = chunk.append_column(name, column)
    con.register("chunk", chunk)
    limit = (now + timedelta(hours=FUTURE_SLACK_HOURS)).astimezone(UTC).replace(tzinfo=None)
    try:
        return con.sql(
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


def new_connection() -> duckdb.DuckDBPyConnection:
    return connection()
