"""Stripe's Search Query Language subset: ``field:'v'``, ``field~'v'``, ``metadata['k']:'v'``,
numeric comparisons, ``null``, negation with ``-``, and clauses joined by all-AND or all-OR.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from .errors import StripeApiError, invalid_param
from .params import Params
from .store import JSON, Store

SEARCHABLE: dict[str, set[str]] = {
    "customer": {"email", "name", "phone", "description", "created", "test_clock"},
    "subscription": {"status", "created", "customer"},
    "invoice": {"status", "created", "customer", "subscription", "number", "total", "currency"},
    "product": {"name", "active", "description", "created", "url", "shippable"},
    "price": {"active", "currency", "product", "lookup_key", "type", "created"},
    "payment_intent": {"status", "amount", "currency", "customer", "created"},
}
URLS = {
    "customer": "/v1/customers/search",
    "subscription": "/v1/subscriptions/search",
    "invoice": "/v1/invoices/search",
    "product": "/v1/products/search",
    "price": "/v1/prices/search",
    "payment_intent": "/v1/payment_intents/search",
}

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?(?P<field>metadata\[(?P<q>['"])(?P<mkey>.+?)(?P=q)\]|[a-z_]+)\s*
        (?P<op>:|~|>=|<=|>|<)\s*
        (?:'(?P<sval>(?:[^'\\]|\\.)*)'|"(?P<dval>(?:[^"\\]|\\.)*)"|(?P<num>-?\d+)|(?P<null>null))\s*""",
    re.VERBOSE,
)


def _compare(value: object, op: str, number: int) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    if op == ":":
        return value == number
    if op == ">":
        return value > number
    if op == "<":
        return value < number
    if op == ">=":
        return value >= number
    if op == "<=":
        return value <= number
    return False


def _as_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return None


def parse_search_query(query: str, kind: str) -> Callable[[JSON], bool]:
    """Compile ``query`` into a predicate on ``kind`` objects; bad syntax is a 400 on ``query``."""
    joiners = re.findall(r"\s+(AND|OR)\s+", query)
    if "AND" in joiners and "OR" in joiners:
        raise invalid_param("query", "Combining AND and OR in one search query is not supported.")
    clauses = []
    for part in re.split(r"\s+(?:AND|OR)\s+", query.strip()):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise StripeApiError(
                400,
                "invalid_request_error",
                "We were unable to parse your search query. "
                f'Try using the format `metadata["key"]:"value"` or `key:"value"` ({part!r}).',
                param="query",
                saved=False,
            )
        if m.group("mkey") is None and m.group("field") not in SEARCHABLE[kind]:
            raise invalid_param(
                "query", f"Field `{m.group('field')}` is an unsupported search field for `{kind}`."
            )
        clauses.append(m)

    def test(obj: JSON, m: re.Match[str]) -> bool:
        if m.group("mkey") is not None:
            value = (obj.get("metadata") or {}).get(m.group("mkey"))
        else:
            value = obj.get(m.group("field"))
        op = m.group("op")
        wanted = m.group("sval") if m.group("sval") is not None else m.group("dval")
        if m.group("null") is not None:
            outcome = value is None
        elif m.group("num") is not None:
            outcome = _compare(value, op, int(m.group("num")))
        else:
            text = _as_text(value)
            target = (wanted or "").replace("\\", "").lower()
            if op == ":":
                outcome = text is not None and text.lower() == target
            elif op == "~":
                outcome = text is not None and target in text.lower()
            else:
                raise invalid_param("query", f"Operator {op} needs a number.")
        return outcome != bool(m.group("neg"))

    use_or = "OR" in joiners

    def predicate(obj: JSON) -> bool:
        results = (test(obj, m) for m in clauses)
        return any(results) if use_or else all(results)

    return predicate


def search(store: Store, p: Params, kind: str, render: Callable[[JSON], JSON]) -> JSON:
    """A ``search_result`` page, newest first, with an opaque ``next_page`` token."""
    p.allow("query", "limit", "page")
    predicate = parse_search_query(p.req_str("query"), kind)
    limit = p.int_("limit") or 10
    if not 1 <= limit <= 100:
        raise invalid_param("limit", "This value must be between 1 and 100 (inclusive).")
    matches = [render(o) for o in reversed(store.all(kind)) if predicate(o)]
    offset = 0
    page = p.str_("page")
    if page is not None:
        try:
            offset = int(base64.urlsafe_b64decode(page.encode()).decode())
        except ValueError:
            raise invalid_param("page", "Invalid page token.") from None
    has_more = offset + limit < len(matches)
    result: JSON = {
        "object": "search_result",
        "data": matches[offset : offset + limit],
        "has_more": has_more,
        "next_page": base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        if has_more
        else None,
        "url": URLS[kind],
    }
    if "total_count" in p.strings("expand"):
        result["total_count"] = len(matches)
    return result
