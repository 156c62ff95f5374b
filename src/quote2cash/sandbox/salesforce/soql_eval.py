"""Runs parsed SOQL against the store: field resolution, filtering, ordering, shaping.

Names are resolved against the schema before any record is read, so an unknown
field fails with INVALID_FIELD even on an empty table, as Salesforce does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from .ids import to_18
from .schema import NUMERIC_TYPES, TEXT_TYPES, FieldDef, ObjectDef, Schema
from .soql import (
    Aggregate,
    BoolOp,
    Comparison,
    Condition,
    FieldPath,
    FieldsMacro,
    Literal,
    Negation,
    Query,
    error_at,
    parse,
)
from .store import Record, Store
from .values import to_wire

_SOQL_TYPE_NAMES = {
    "currency": "double",
    "percent": "double",
    "datetime": "dateTime",
    "reference": "id",
    "textarea": "string",
    "url": "string",
    "phone": "string",
    "email": "string",
    "picklist": "string",
}


@dataclass
class Resolved:
    """A field path bound to the schema: lookups to follow, then the field to read."""

    hops: list[FieldDef]
    field: FieldDef
    names: list[str]


@dataclass
class ChildQuery:
    """A child-relationship subquery bound to its child object and lookup field."""

    query: Query
    obj: ObjectDef
    relationship_name: str
    field: str
    fields: list[Resolved]


Predicate = Callable[[Record], bool]


def _month_start(day: date, months: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def date_range(name: str, n: int | None, today: date) -> tuple[date, date]:
    """The [start, end) days a SOQL date literal covers, in the org's time zone (UTC)."""
    count = n or 0
    week = today - timedelta(days=(today.weekday() + 1) % 7)
    month = _month_start(today)
    quarter = _month_start(today, -((today.month - 1) % 3))
    year = date(today.year, 1, 1)
    day = timedelta(days=1)
    ranges: dict[str, tuple[date, date]] = {
        "yesterday": (today - day, today),
        "today": (today, today + day),
        "tomorrow": (today + day, today + 2 * day),
        "last_week": (week - 7 * day, week),
        "this_week": (week, week + 7 * day),
        "next_week": (week + 7 * day, week + 14 * day),
        "last_month": (_month_start(today, -1), month),
        "this_month": (month, _month_start(today, 1)),
        "next_month": (_month_start(today, 1), _month_start(today, 2)),
        "last_90_days": (today - 90 * day, today + day),
        "next_90_days": (today + day, today + 91 * day),
        "this_quarter": (quarter, _month_start(quarter, 3)),
        "last_quarter": (_month_start(quarter, -3), quarter),
        "next_quarter": (_month_start(quarter, 3), _month_start(quarter, 6)),
        "this_year": (year, date(today.year + 1, 1, 1)),
        "last_year": (date(today.year - 1, 1, 1), year),
        "next_year": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "last_n_days": (today - count * day, today + day),
        "next_n_days": (today + day, today + (count + 1) * day),
        "n_days_ago": (today - count * day, today - (count - 1) * day),
        "last_n_weeks": (week - 7 * count * day, week),
        "next_n_weeks": (week + 7 * day, week + 7 * (count + 1) * day),
        "last_n_months": (_month_start(today, -count), month),
        "next_n_months": (_month_start(today, 1), _month_start(today, count + 1)),
        "n_months_ago": (_month_start(today, -count), _month_start(today, 1 - count)),
        "last_n_years": (date(today.year - count, 1, 1), year),
        "next_n_years": (date(today.year + 1, 1, 1), date(today.year + count + 1, 1, 1)),
    }
    return ranges[name]


def like_matcher(pattern: str) -> Callable[[str], bool]:
    """SOQL LIKE: % any run, _ one character, backslash escapes them; case-insensitive."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    compiled = re.compile("".join(out), re.IGNORECASE | re.DOTALL)
    return lambda value: compiled.fullmatch(value) is not None


class QueryEngine:
    """Executes SOQL text; results are JSON-ready records (Decimals kept exact)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.schema: Schema = store.schema

    def run(self, text: str, *, include_deleted: bool, version: str) -> tuple[int, list[Any]]:
        """(totalSize, records). COUNT() queries return their count and no records."""
        query = parse(text)
        obj = self._object(query, query.sobject)
        return self._execute(query, obj, include_deleted=include_deleted, version=version)

    # ----- binding -----

    def _object(self, query: Query, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None:
            raise error_at(
                query.text,
                query.sobject_pos,
                f"sObject type '{name}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
                "INVALID_TYPE",
            )
        return obj

    def _resolve(self, query: Query, obj: ObjectDef, path: FieldPath) -> Resolved:
        parts = list(path.parts)
        if query.alias and len(parts) > 1 and parts[0].lower() == query.alias.lower():
            parts = parts[1:]
        hops: list[FieldDef] = []
        names: list[str] = []
        current = obj
        for part in parts[:-1]:
            rel = current.relationship(part)
            if rel is None:
                raise error_at(
                    query.text,
                    path.pos,
                    f"Didn't understand relationship '{part}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                    "INVALID_FIELD",
                )
            hops.append(rel)
            names.append(str(rel.relationship_name))
            current = self.schema.objects[rel.reference_to[0]]
        field_def = current.field(parts[-1])
        if field_def is None:
            raise error_at(
                query.text,
                path.pos,
                f"No such column '{parts[-1]}' on entity '{current.name}'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
                "INVALID_FIELD",
            )
        names.append(field_def.name)
        return Resolved(hops, field_def, names)

    def _read(self, record: Record | None, resolved: Resolved) -> Any:
        for hop in resolved.hops:
            if record is None or record[hop.name] is None:
                return None
            record = self.store.find(record[hop.name], include_deleted=True)
        return None if record is None else record[resolved.field.name]

    # ----- filtering -----

    def _literal(self, query: Query, f: FieldDef, lit: Literal) -> Any:
        kind = f.type
        expected = _SOQL_TYPE_NAMES.get(kind, kind)
        if lit.kind == "null":
            return None
        if lit.kind == "date_constant":
            if kind not in ("date", "datetime"):
                raise error_at(
                    query.text,
                    lit.pos,
                    f"value of filter criterion for field '{f.name}' must be of type "
                    f"{expected} and should not be a date literal",
                )
            return lit
        ok = {
            "string": kind in TEXT_TYPES or kind in ("id", "reference"),
            "number": kind in NUMERIC_TYPES,
            "boolean": kind == "boolean",
            "date": kind == "date",
            "datetime": kind == "datetime",
        }[lit.kind]
        if not ok:
            quoting = (
                "should be enclosed in quotes"
                if kind in TEXT_TYPES
                else "should not be enclosed in quotes"
            )
            raise error_at(
                query.text,
                lit.pos,
                f"value of filter criterion for field '{f.name}' must be of type "
                f"{expected} and {quoting}",
            )
        if kind in ("id", "reference"):
            full = to_18(lit.value)
            if full is None:
                raise error_at(
                    query.text,
                    lit.pos,
                    f"invalid ID field: {lit.value}",
                    "INVALID_QUERY_FILTER_OPERATOR",
                )
            return full
        if lit.kind == "string":
            return str(lit.value).replace("\\%", "%").replace("\\_", "_").casefold()
        if lit.kind == "number":
            return Decimal(lit.value)
        return lit.value

    def _condition(
        self, query: Query, obj: ObjectDef, cond: Condition, include_deleted: bool
    ) -> Predicate:
        if isinstance(cond, BoolOp):
            parts = [self._condition(query, obj, c, include_deleted) for c in cond.items]
            if cond.op == "and":
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(cond, Negation):
            inner = self._condition(query, obj, cond.item, include_deleted)
            return lambda r: not inner(r)
        return self._comparison(query, obj, cond, include_deleted)

    def _comparison(
        self, query: Query, obj: ObjectDef, cond: Comparison, include_deleted: bool
    ) -> Predicate:
        resolved = self._resolve(query, obj, cond.path)
        f = resolved.field
        read = self._read

        def normal(value: Any) -> Any:
            if isinstance(value, str):
                return value if f.type in ("id", "reference") else value.casefold()
            if isinstance(value, int) and not isinstance(value, bool):
                return Decimal(value)
            return value

        if cond.op == "like":
            assert isinstance(cond.value, Literal)
            if f.type not in TEXT_TYPES and f.type not in ("id", "reference"):
                raise error_at(
                    query.text,
                    cond.path.pos,
                    f"invalid operator on {_SOQL_TYPE_NAMES.get(f.type, f.type)} field: {f.name}",
                    "INVALID_QUERY_FILTER_OPERATOR",
                )
            matches = like_matcher(str(cond.value.value))
            return lambda r: (v := read(r, resolved)) is not None and matches(str(v))
        if cond.op in ("in", "notin"):
            if isinstance(cond.value, Query):
                allowed = self._semi_join(cond.value, include_deleted)
            elif isinstance(cond.value, list):
                allowed = {self._literal(query, f, lit) for lit in cond.value}
                if any(isinstance(a, Literal) for a in allowed):
                    raise error_at(query.text, cond.path.pos, "date literals are not allowed in IN")
            else:
                raise error_at(query.text, cond.path.pos, "IN needs a list or a subquery")
            if cond.op == "in":
                return lambda r: (v := read(r, resolved)) is not None and normal(v) in allowed
            return lambda r: normal(read(r, resolved)) not in allowed
        assert isinstance(cond.value, Literal)
        target = self._literal(query, f, cond.value)
        op = cond.op
        if target is None and op not in ("=", "!="):
            raise error_at(
                query.text,
                cond.value.pos,
                f"invalid operator for null value: {op}",
                "INVALID_QUERY_FILTER_OPERATOR",
            )
        if isinstance(target, Literal):
            start, end = date_range(str(target.value), target.n, self.store.clock.now().date())
            if f.type == "datetime":
                low: Any = datetime.combine(start, time(), UTC)
                high: Any = datetime.combine(end, time(), UTC)
            else:
                low, high = start, end
            tests: dict[str, Callable[[Any], bool]] = {
                "=": lambda v: low <= v < high,
                "!=": lambda v: not low <= v < high,
                "<": lambda v: v < low,
                "<=": lambda v: v < high,
                ">": lambda v: v >= high,
                ">=": lambda v: v >= low,
            }
            test = tests[op]
            if op == "!=":
                return lambda r: (v := read(r, resolved)) is None or test(v)
            return lambda r: (v := read(r, resolved)) is not None and test(v)
        if op == "=":
            return lambda r: normal(read(r, resolved)) == target
        if op == "!=":
            return lambda r: normal(read(r, resolved)) != target
        ordering: dict[str, Callable[[Any], bool]] = {
            "<": lambda v: v < target,
            "<=": lambda v: v <= target,
            ">": lambda v: v > target,
            ">=": lambda v: v >= target,
        }
        compare = ordering[op]
        return lambda r: (v := read(r, resolved)) is not None and compare(normal(v))

    def _semi_join(self, sub: Query, include_deleted: bool) -> set[Any]:
        obj = self._object(sub, sub.sobject)
        if len(sub.select) != 1 or not isinstance(sub.select[0], FieldPath):
            raise error_at(
                sub.text, sub.sobject_pos, "semi join sub-selects can only select one field"
            )
        resolved = self._resolve(sub, obj, sub.select[0])
        if resolved.field.type not in ("id", "reference"):
            raise error_at(
                sub.text,
                sub.select[0].pos,
                "semi join sub-selects must select an Id or reference field",
            )
        rows = self._filtered(sub, obj, include_deleted=False)
        return {v for r in rows if (v := self._read(r, resolved)) is not None}

    def _filtered(
        self,
        query: Query,
        obj: ObjectDef,
        *,
        include_deleted: bool,
        rows: Iterable[Record] | None = None,
    ) -> list[Record]:
        source = (
            rows
            if rows is not None
            else self.store.records(obj.name, include_deleted=include_deleted)
        )
        if query.where is None:
            return list(source)
        predicate = self._condition(query, obj, query.where, include_deleted)
        return [r for r in source if predicate(r)]

    def _ordered(self, query: Query, obj: ObjectDef, rows: list[Record]) -> list[Record]:
        for key in reversed(query.order_by):
            resolved = self._resolve(query, obj, key.path)
            nulls_first = not key.nulls_last
            null_rank = 2 if nulls_first == key.descending else 0

            def sort_key(
                r: Record, resolved: Resolved = resolved, null_rank: int = null_rank
            ) -> tuple[int, Any]:
                value = self._read(r, resolved)
                if value is None:
                    return (null_rank, 0)
                return (1, value.casefold() if isinstance(value, str) else value)

            rows.sort(key=sort_key, reverse=key.descending)
        start = query.offset or 0
        end = None if query.limit is None else start + query.limit
        return rows[start:end]

    # ----- shaping -----

    def _expand(self, query: Query, obj: ObjectDef) -> list[FieldPath | Query | Aggregate]:
        items: list[FieldPath | Query | Aggregate] = []
        for item in query.select:
            if isinstance(item, FieldsMacro):
                for f in obj.fields.values():
                    if item.which == "all" or (item.which == "custom") == f.custom:
                        items.append(FieldPath([f.name], item.pos))
            else:
                items.append(item)
        return items

    def _execute(
        self, query: Query, obj: ObjectDef, *, include_deleted: bool, version: str
    ) -> tuple[int, list[Any]]:
        macro = next((s for s in query.select if isinstance(s, FieldsMacro)), None)
        if macro and macro.which != "standard" and (query.limit is None or query.limit > 200):
            raise error_at(
                query.text, macro.pos, "The SOQL FIELDS function must have a LIMIT of at most 200"
            )
        if query.offset is not None and query.offset > 2000:
            raise error_at(
                query.text,
                query.sobject_pos,
                "Maximum SOQL offset allowed is 2000",
                "NUMBER_OUTSIDE_VALID_RANGE",
            )
        select = self._expand(query, obj)
        aggregates = [s for s in select if isinstance(s, Aggregate)]
        if query.group_by:
            return self._grouped(query, obj, select, include_deleted)
        if aggregates and len(aggregates) != len(select):
            field_item = next(s for s in select if not isinstance(s, Aggregate))
            position = field_item.pos if isinstance(field_item, FieldPath) else query.sobject_pos
            raise error_at(query.text, position, "Field must be grouped or aggregated")
        plan: list[Resolved | ChildQuery] = [
            self._bind_child(query, obj, item)
            if isinstance(item, Query)
            else self._resolve(query, obj, item)
            for item in select
            if not isinstance(item, Aggregate)
        ]
        rows = self._filtered(query, obj, include_deleted=include_deleted)
        if query.is_count:
            return len(self._ordered(query, obj, rows)), []
        if aggregates:
            return 1, [self._aggregate(query, obj, aggregates, rows)]
        rows = self._ordered(query, obj, rows)
        children = {
            id(step): self._child_rows(step, include_deleted)
            for step in plan
            if isinstance(step, ChildQuery)
        }
        out = []
        for row in rows:
            shaped: dict[str, Any] = {"attributes": _attributes(obj.name, row["Id"], version)}
            for step in plan:
                if isinstance(step, Resolved):
                    self._place(shaped, row, step, version)
                    continue
                kids = self._ordered(
                    step.query, step.obj, list(children[id(step)].get(row["Id"], []))
                )
                shaped[step.relationship_name] = (
                    None
                    if not kids
                    else {
                        "totalSize": len(kids),
                        "done": True,
                        "records": [self._shape(step.obj, k, step.fields, version) for k in kids],
                    }
                )
            out.append(shaped)
        return len(out), out

    def _bind_child(self, query: Query, obj: ObjectDef, sub: Query) -> ChildQuery:
        rel = obj.child(sub.sobject)
        if rel is None:
            raise error_at(
                query.text,
                sub.sobject_pos,
                f"Didn't understand relationship '{sub.sobject}' in FROM part of query "
                "call. If you are attempting to use a custom relationship, be sure to "
                "append the '__r' after the custom relationship name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
                "INVALID_TYPE",
            )
        child_obj = self.schema.objects[rel.child_object]
        items = self._expand(sub, child_obj)
        if any(not isinstance(i, FieldPath) for i in items):
            raise error_at(query.text, sub.sobject_pos, "child subqueries may select fields only")
        fields = [self._resolve(sub, child_obj, i) for i in items if isinstance(i, FieldPath)]
        return ChildQuery(sub, child_obj, rel.relationship_name, rel.field, fields)

    def _child_rows(self, step: ChildQuery, include_deleted: bool) -> dict[str, list[Record]]:
        grouped: dict[str, list[Record]] = {}
        for row in self._filtered(step.query, step.obj, include_deleted=include_deleted):
            parent = row[step.field]
            if parent is not None:
                grouped.setdefault(parent, []).append(row)
        return grouped

    def _shape(
        self, obj: ObjectDef, row: Record, fields: list[Resolved], version: str
    ) -> dict[str, Any]:
        shaped: dict[str, Any] = {"attributes": _attributes(obj.name, row["Id"], version)}
        for resolved in fields:
            self._place(shaped, row, resolved, version)
        return shaped

    def _place(self, shaped: dict[str, Any], row: Record, resolved: Resolved, version: str) -> None:
        """Write one selected field, nesting parent relationships (None when there is no parent)."""
        target: dict[str, Any] = shaped
        record: Record = row
        for hop, name in zip(resolved.hops, resolved.names, strict=False):
            parent_id = record[hop.name]
            parent = self.store.find(parent_id, include_deleted=True) if parent_id else None
            if parent is None:
                target.setdefault(name, None)
                return
            nested = target.get(name)
            if nested is None:
                parent_type = self.store.type_of[parent["Id"]]
                nested = {"attributes": _attributes(parent_type, parent["Id"], version)}
                target[name] = nested
            target, record = nested, parent
        target[resolved.field.name] = to_wire(record[resolved.field.name])

    def _aggregate(
        self, query: Query, obj: ObjectDef, aggregates: list[Aggregate], rows: list[Record]
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        unnamed = 0
        for agg in aggregates:
            name = agg.alias or f"expr{unnamed}"
            unnamed += agg.alias is None
            result[name] = self._aggregate_value(query, obj, agg, rows)
        return result

    def _aggregate_value(
        self, query: Query, obj: ObjectDef, agg: Aggregate, rows: list[Record]
    ) -> Any:
        if agg.path is None:
            raise error_at(
                query.text, agg.pos, "COUNT() must be the only element in the SELECT list"
            )
        resolved = self._resolve(query, obj, agg.path)
        values = [v for r in rows if (v := self._read(r, resolved)) is not None]
        value: Any
        if agg.function == "count":
            value = len(values)
        elif agg.function == "count_distinct":
            value = len(set(values))
        elif not values:
            value = None
        elif agg.function == "sum":
            value = sum(values)
        elif agg.function == "avg":
            value = sum(values) / len(values)
        else:
            value = max(values) if agg.function == "max" else min(values)
        return to_wire(value)

    def _grouped(
        self,
        query: Query,
        obj: ObjectDef,
        select: list[FieldPath | Query | Aggregate],
        include_deleted: bool,
    ) -> tuple[int, list[Any]]:
        """GROUP BY: one AggregateResult per distinct key, ordered and limited by group."""
        keys = [self._resolve(query, obj, p) for p in query.group_by]
        key_names = [k.names for k in keys]
        for item in select:
            if isinstance(item, Query) or (
                isinstance(item, FieldPath)
                and self._resolve(query, obj, item).names not in key_names
            ):
                position = item.pos if isinstance(item, FieldPath) else item.sobject_pos
                raise error_at(query.text, position, "Field must be grouped or aggregated")
        groups: dict[tuple[Any, ...], list[Record]] = {}
        for row in self._filtered(query, obj, include_deleted=include_deleted):
            key = tuple(_group_key(self._read(row, k)) for k in keys)
            groups.setdefault(key, []).append(row)
        for order in query.order_by:
            if self._resolve(query, obj, order.path).names not in key_names:
                raise error_at(
                    query.text,
                    order.path.pos,
                    "ORDER BY in a grouped query may use grouped fields only",
                )
        firsts = self._ordered(query, obj, [rows[0] for rows in groups.values()])
        by_first = {id(rows[0]): rows for rows in groups.values()}
        out = []
        for first in firsts:
            rows = by_first[id(first)]
            result: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            unnamed = 0
            for item in select:
                if isinstance(item, FieldPath):
                    resolved = self._resolve(query, obj, item)
                    result[resolved.field.name] = to_wire(self._read(first, resolved))
                elif isinstance(item, Aggregate):
                    name = item.alias or f"expr{unnamed}"
                    unnamed += item.alias is None
                    result[name] = self._aggregate_value(query, obj, item, rows)
            out.append(result)
        return len(out), out


def _group_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _attributes(type_name: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": type_name, "url": f"/services/data/v{version}/sobjects/{type_name}/{record_id}"}
