"""Vectorised validation of a chunk of usage records against the subscriptions' terms (DuckDB).

Each record gets its key (hash of source and id), its content hash, what it resolves to
(subscription, meter, unit, billing period) and, when it fails, the first rule it breaks as
``field`` and ``reason``; the reason names the record id, the field and what was expected.
The terms are loaded into DuckDB once per batch, never looked up per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

import duckdb
import pyarrow as pa

from quote2cash.usage.duck import connection
from quote2cash.usage.terms import SubscriptionTerms

LatePolicy = Literal["adjust", "reject"]
MAX_ID: Final = 255
MAX_SCALE: Final = 12
FUTURE_SLACK_HOURS: Final = 24


def reference_tables(con: duckdb.DuckDBPyConnection, terms: Sequence[SubscriptionTerms]) -> None:
    """The terms as four small DuckDB tables: refs, meters, customer meters, subscriptions."""
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
        subs["known_meters"].append(", ".join(i.meter for i in t.items) or "none")
    ts = pa.timestamp("us", tz="UTC")
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
            ("known_meters", pa.string()),
        ]
    )
    con.register("subs", pa.table(subs, schema=schema))


_CHECK_SQL: Final = """
WITH r AS (
  SELECT line, malformed,
    nullif(trim(id), '') AS rid,
    nullif(trim(subscription), '') AS sref,
    nullif(trim(customer), '') AS cref,
    nullif(trim(meter), '') AS mname,
    nullif(trim(quantity), '') AS qraw,
    nullif(trim(unit), '') AS uraw,
    nullif(trim("timestamp"), '') AS traw,
    nullif(trim(properties), '') AS praw,
    lower(coalesce(trim(correction), '')) IN ('true', '1', 'yes') AS wants_correction
  FROM chunk
), p AS (
  SELECT r.*,
    TRY_CAST(qraw AS DECIMAL(38, 12)) AS q,
    CASE
      WHEN regexp_full_match(traw, '[0-9]{1,11}') THEN to_timestamp(CAST(traw AS BIGINT))
      WHEN regexp_matches(traw, '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$')
        THEN TRY_CAST(traw AS TIMESTAMPTZ)
    END AS ts,
    coalesce(refs.sub, CASE WHEN cm.n = 1 THEN cm.sub END) AS sub,
    cm.n AS cust_n
  FROM r
  LEFT JOIN refs ON refs.ref = r.sref
  LEFT JOIN custmeters cm ON r.sref IS NULL AND cm.customer = r.cref AND cm.alias = r.mname
), j AS (
  SELECT p.*, m.meter, m.item_unit, s.service_start, s.service_end, s.anchor, s.mc, s.cd,
    s.closed_before, s.open_start, s.open_end, s.known_meters,
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
), v AS (
  SELECT per2.*,
    closed_before IS NOT NULL AND pe0 <= closed_before AS in_closed,
    'record ' || coalesce('''' || rid || '''', 'at line ' || line) AS who
  FROM per2
), checked AS (
  SELECT v.*,
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
      WHEN regexp_matches(qraw, '\\.[0-9]{13,}') THEN 'quantity'
      WHEN q < 0 THEN 'quantity'
      WHEN uraw IS NOT NULL AND lower(uraw) <> lower(item_unit) THEN 'unit'
      WHEN ts IS NULL THEN 'timestamp'
      WHEN ts < service_start OR (service_end IS NOT NULL AND ts >= service_end) THEN 'timestamp'
      WHEN ts > $now + to_hours(CAST($slack AS INTEGER)) THEN 'timestamp'
      WHEN in_closed AND $policy = 'reject' THEN 'timestamp'
      WHEN praw IS NOT NULL AND NOT coalesce(json_valid(praw) AND json_type(praw) = 'OBJECT', false)
        THEN 'properties'
    END AS field
  FROM v
)
SELECT line, rid, sref, cref, mname, qraw, uraw, traw, praw, malformed, wants_correction,
  sub, meter, coalesce(item_unit, uraw) AS unit, q, ts,
  CASE WHEN in_closed AND $policy = 'adjust' THEN open_start ELSE ps0 END AS period_start,
  CASE WHEN in_closed AND $policy = 'adjust' THEN open_end ELSE pe0 END AS period_end,
  in_closed AND $policy = 'adjust' AS adjusted,
  CASE WHEN rid IS NOT NULL THEN hash($source || chr(31) || rid) END AS key,
  hash(concat_ws(chr(31), coalesce(sref, ''), coalesce(cref, ''), coalesce(mname, ''),
    coalesce(CAST(q AS VARCHAR), qraw, ''), coalesce(uraw, ''),
    coalesce(strftime(ts, '%Y-%m-%dT%H:%M:%S.%f'), traw, ''), coalesce(praw, ''))) AS content,
  field,
  CASE field
    WHEN 'row' THEN who || ': field ''row'' is malformed: ' || malformed
    WHEN 'id' THEN CASE WHEN rid IS NULL
      THEN who || ': field ''id'' is missing: expected a record id unique within its source'
      ELSE who || ': field ''id'' is ' || length(rid) || ' characters: expected at most '
        || $max_id END
    WHEN 'subscription' THEN CASE WHEN sref IS NULL
      THEN who || ': field ''subscription'' is missing: expected a contract number, hub id or '
        || 'billing subscription id (or a ''customer'')'
      ELSE who || ': field ''subscription'' is ''' || sref || ''': expected a contract number, '
        || 'hub id or billing subscription id the hub knows' END
    WHEN 'customer' THEN CASE WHEN cust_n > 1
      THEN who || ': field ''customer'' is ''' || cref || ''': it has ' || cust_n
        || ' subscriptions with meter ''' || mname || ''': expected a ''subscription'' reference'
      ELSE who || ': field ''customer'' is ''' || cref || ''': expected a customer with a '
        || 'subscription metering ''' || mname || '''' END
    WHEN 'meter' THEN CASE WHEN mname IS NULL
      THEN who || ': field ''meter'' is missing: expected one of the subscription''s meters ('
        || coalesce(known_meters, 'none') || ')'
      ELSE who || ': field ''meter'' is ''' || mname || ''': not on subscription ''' || sub
        || '''s items: expected one of ' || coalesce(known_meters, 'none') END
    WHEN 'quantity' THEN CASE
      WHEN q IS NULL
        THEN who || ': field ''quantity'' is ' || coalesce('''' || qraw || '''', 'missing')
        || ': expected a decimal number'
      WHEN q < 0 THEN who || ': field ''quantity'' is ' || qraw || ': expected zero or more'
      ELSE who || ': field ''quantity'' is ' || qraw || ': expected at most '
        || $max_scale || ' decimal places' END
    WHEN 'unit'
      THEN who || ': field ''unit'' is ''' || uraw || ''': expected ''' || item_unit || ''''
    WHEN 'timestamp' THEN CASE
      WHEN ts IS NULL
        THEN who || ': field ''timestamp'' is ' || coalesce('''' || traw || '''', 'missing')
        || ': expected an ISO 8601 time with a zone (2026-01-31T12:00:00Z) or epoch seconds'
      WHEN ts < service_start OR (service_end IS NOT NULL AND ts >= service_end)
        THEN who || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
          || ': outside the subscription''s service (from '
          || strftime(service_start, '%Y-%m-%dT%H:%M:%SZ')
          || coalesce(' to ' || strftime(service_end, '%Y-%m-%dT%H:%M:%SZ'), '') || ')'
      WHEN ts > $now + to_hours(CAST($slack AS INTEGER))
        THEN who || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
          || ': expected a time that is not in the future'
      ELSE who || ': field ''timestamp'' is ' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ')
        || ': in the closed billing period ' || strftime(ps0, '%Y-%m-%d') || ' to '
        || strftime(pe0, '%Y-%m-%d') || ' (late usage policy: reject)' END
    WHEN 'properties'
      THEN who || ': field ''properties'' is not a JSON object: expected {"name": value, ...}'
  END AS reason,
  row_number() OVER (PARTITION BY key ORDER BY line) AS rn,
  first_value(content) OVER (PARTITION BY key ORDER BY line) AS first_content
FROM checked
"""


def check_chunk(
    con: duckdb.DuckDBPyConnection,
    chunk: pa.Table,
    *,
    source: str,
    policy: LatePolicy,
    now: datetime,
) -> pa.Table:
    """The chunk checked against the registered reference tables (see ``reference_tables``)."""
    con.register("chunk", chunk)
    try:
        return con.sql(
            _CHECK_SQL,
            params={
                "source": source,
                "policy": policy,
                "now": now,
                "slack": FUTURE_SLACK_HOURS,
                "max_id": MAX_ID,
                "max_scale": MAX_SCALE,
            },
        ).to_arrow_table()
    finally:
        con.unregister("chunk")


def new_connection() -> duckdb.DuckDBPyConnection:
    return connection()
