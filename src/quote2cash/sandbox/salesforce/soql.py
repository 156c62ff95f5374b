"""SOQL tokenizer and recursive-descent parser producing a small AST.

Errors are MALFORMED_QUERY with Salesforce's caret-and-position message so the
caller sees where its query went wrong.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import SalesforceError
from .values import parse_date, parse_datetime

_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "%": "\\%",
    "_": "\\_",
}
_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset(string.ascii_letters + "_")
_IDENT_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")
RESERVED = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "like",
        "order",
        "by",
        "asc",
        "desc",
        "nulls",
        "first",
        "last",
        "limit",
        "offset",
        "null",
        "true",
        "false",
        "includes",
        "excludes",
        "group",
        "having",
        "with",
        "for",
    }
)
DATE_CONSTANTS = frozenset(
    {
        "yesterday",
        "today",
        "tomorrow",
        "last_week",
        "this_week",
        "next_week",
        "last_month",
        "this_month",
        "next_month",
        "last_90_days",
        "next_90_days",
        "this_quarter",
        "last_quarter",
        "next_quarter",
        "this_year",
        "last_year",
        "next_year",
    }
)
DATE_CONSTANTS_N = frozenset(
    {
        "last_n_days",
        "next_n_days",
        "n_days_ago",
        "last_n_weeks",
        "next_n_weeks",
        "last_n_months",
        "next_n_months",
        "n_months_ago",
        "last_n_years",
        "next_n_years",
    }
)


@dataclass
class Token:
    kind: str  # ident, string, number, date, datetime, op, punct, eof
    text: str
    pos: int
    value: Any = None


@dataclass
class FieldPath:
    parts: list[str]
    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, date_constant
    value: Any
    pos: int
    text: str
    n: int | None = None


@dataclass
class Comparison:
    path: FieldPath
    op: str  # = != < <= > >= like in notin
    value: Literal | list[Literal] | Query


@dataclass
class BoolOp:
    op: str  # and, or
    items: list[Condition]


@dataclass
class Negation:
    item: Condition


Condition = Comparison | BoolOp | Negation


@dataclass
class Aggregate:
    function: str
    path: FieldPath | None
    pos: int
    alias: str | None = None


@dataclass
class FieldsMacro:
    which: str
    pos: int


@dataclass
class OrderKey:
    path: FieldPath
    descending: bool = False
    nulls_last: bool | None = None


@dataclass
class Query:
    select: list[FieldPath | Query | Aggregate | FieldsMacro]
    sobject: str
    sobject_pos: int
    alias: str | None = None
    where: Condition | None = None
    group_by: list[FieldPath] = field(default_factory=list)
    order_by: list[OrderKey] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    text: str = ""

    @property
    def is_count(self) -> bool:
        return any(
            isinstance(s, Aggregate) and s.function == "count" and s.path is None
            for s in self.select
        )


def error_at(text: str, pos: int, message: str, code: str = "MALFORMED_QUERY") -> SalesforceError:
    """An error whose message points at ``pos`` in the query like Salesforce's does."""
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    row = text.count("\n", 0, pos) + 1
    column = pos - line_start + 1
    caret = " " * (column - 1) + "^"
    return SalesforceError(
        400, code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{message}"
    )


class Lexer:
    """Turns SOQL text into tokens; positions are character offsets into the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def tokens(self) -> list[Token]:
        out = []
        while True:
            token = self._next()
            out.append(token)
            if token.kind == "eof":
                return out

    def _next(self) -> Token:
        text = self.text
        while self.i < len(text) and text[self.i].isspace():
            self.i += 1
        start = self.i
        if self.i >= len(text):
            return Token("eof", "<EOF>", start)
        ch = text[self.i]
        if ch in _IDENT_START:
            while self.i < len(text) and text[self.i] in _IDENT_CHARS:
                self.i += 1
            return Token("ident", text[start : self.i], start)
        if ch == "'":
            return self._string(start)
        if ch in _DIGITS or (ch in "+-" and self.i + 1 < len(text) and text[self.i + 1] in _DIGITS):
            return self._number_or_date(start)
        for op in _OPERATORS:
            if text.startswith(op, self.i):
                self.i += len(op)
                return Token("op", "!=" if op == "<>" else op, start)
        if ch in "(),.:":
            self.i += 1
            return Token("punct", ch, start)
        raise error_at(text, start, f"unexpected token: '{ch}'")

    def _string(self, start: int) -> Token:
        text = self.text
        self.i += 1
        chars = []
        while True:
            if self.i >= len(text):
                raise error_at(text, start, "unterminated string literal")
            ch = text[self.i]
            if ch == "\\":
                if self.i + 1 >= len(text) or text[self.i + 1] not in _ESCAPES:
                    raise error_at(text, self.i, "Invalid string literal: illegal escape sequence")
                chars.append(_ESCAPES[text[self.i + 1]])
                self.i += 2
                continue
            if ch == "'":
                self.i += 1
                return Token("string", text[start : self.i], start, "".join(chars))
            chars.append(ch)
            self.i += 1

    def _number_or_date(self, start: int) -> Token:
        text = self.text
        if text[self.i] in "+-":
            self.i += 1
        while self.i < len(text) and text[self.i] in _DIGITS:
            self.i += 1
        digits = text[start : self.i]
        if len(digits) == 4 and all(c in _DIGITS for c in digits) and text.startswith("-", self.i):
            return self._date(start)
        if self.i < len(text) and text[self.i] == ".":
            self.i += 1
            while self.i < len(text) and text[self.i] in _DIGITS:
                self.i += 1
        raw = text[start : self.i]
        value: int | Decimal = Decimal(raw) if "." in raw else int(raw)
        return Token("number", raw, start, value)

    def _date(self, start: int) -> Token:
        text = self.text
        while self.i < len(text) and (text[self.i] in _IDENT_CHARS or text[self.i] in "-:.+"):
            self.i += 1
        raw = text[start : self.i]
        if "T" in raw:
            parsed = parse_datetime(raw)
            if parsed is None or not (raw.endswith("Z") or raw[-6] in "+-"):
                raise error_at(
                    text,
                    start,
                    f"invalid datetime literal: {raw} (expected YYYY-MM-DDThh:mm:ssZ or an "
                    "offset such as +01:00)",
                )
            return Token("datetime", raw, start, parsed)
        parsed_date = parse_date(raw)
        if parsed_date is None:
            raise error_at(text, start, f"invalid date literal: {raw}")
        return Token("date", raw, start, parsed_date)


class Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = Lexer(text).tokens()
        self.k = 0

    # ----- helpers -----

    @property
    def tok(self) -> Token:
        return self.tokens[self.k]

    def _advance(self) -> Token:
        token = self.tokens[self.k]
        self.k += 1
        return token

    def _is_kw(self, word: str, offset: int = 0) -> bool:
        token = self.tokens[min(self.k + offset, len(self.tokens) - 1)]
        return token.kind == "ident" and token.text.lower() == word

    def _is_punct(self, ch: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == ch

    def _unexpected(self) -> SalesforceError:
        return error_at(self.text, self.tok.pos, f"unexpected token: '{self.tok.text}'")

    def _expect_kw(self, word: str) -> Token:
        if not self._is_kw(word):
            raise self._unexpected()
        return self._advance()

    def _expect_punct(self, ch: str) -> Token:
        if not self._is_punct(ch):
            raise self._unexpected()
        return self._advance()

    def _ident(self, *, allow_reserved: bool = False) -> Token:
        if self.tok.kind != "ident" or (self.tok.text.lower() in RESERVED and not allow_reserved):
            raise self._unexpected()
        return self._advance()

    # ----- grammar -----

    def parse(self) -> Query:
        query = self._query()
        if self.tok.kind != "eof":
            raise self._unexpected()
        return query

    def _query(self) -> Query:
        self._expect_kw("select")
        select = self._select_list()
        self._expect_kw("from")
        sobject = self._ident(allow_reserved=True)
        query = Query(select, sobject.text, sobject.pos, text=self.text)
        if self.tok.kind == "ident" and self.tok.text.lower() not in RESERVED:
            query.alias = self._advance().text
        if self._is_kw("where"):
            self._advance()
            query.where = self._condition()
        if self._is_kw("group"):
            self._advance()
            self._expect_kw("by")
            query.group_by = [self._field_path()]
            while self._is_punct(","):
                self._advance()
                query.group_by.append(self._field_path())
        if self._is_kw("with") or self._is_kw("having") or self._is_kw("group"):
            raise error_at(
                self.text, self.tok.pos, f"{self.tok.text.upper()} is not supported by the emulator"
            )
        if self._is_kw("order"):
            self._advance()
            self._expect_kw("by")
            query.order_by = self._order_list()
        if self._is_kw("limit"):
            self._advance()
            query.limit = self._non_negative_int("LIMIT")
        if self._is_kw("offset"):
            self._advance()
            query.offset = self._non_negative_int("OFFSET")
        if self._is_kw("for"):
            raise error_at(self.text, self.tok.pos, "FOR clauses are not supported by the emulator")
        return query

    def _non_negative_int(self, clause: str) -> int:
        token = self.tok
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            raise error_at(
                self.text,
                token.pos,
                f"unexpected token: '{token.text}' ({clause} needs a whole number)",
            )
        self._advance()
        return int(token.value)

    def _select_list(self) -> list[FieldPath | Query | Aggregate | FieldsMacro]:
        items: list[FieldPath | Query | Aggregate | FieldsMacro] = [self._select_item()]
        while self._is_punct(","):
            self._advance()
            items.append(self._select_item())
        return items

    def _select_item(self) -> FieldPath | Query | Aggregate | FieldsMacro:
        if self._is_punct("("):
            self._advance()
            subquery = self._query()
            self._expect_punct(")")
            return subquery
        token = self.tok
        following = self.tokens[min(self.k + 1, len(self.tokens) - 1)]
        is_call = following.kind == "punct" and following.text == "("
        if token.kind == "ident" and is_call:
            name = token.text.lower()
            if name == "fields":
                self._advance()
                self._advance()
                which = self._ident().text.lower()
                if which not in ("all", "standard", "custom"):
                    raise error_at(self.text, token.pos, "FIELDS() takes ALL, STANDARD or CUSTOM")
                self._expect_punct(")")
                return FieldsMacro(which, token.pos)
            if name in ("count", "sum", "max", "min", "avg", "count_distinct"):
                self._advance()
                self._advance()
                path = None if self._is_punct(")") else self._field_path()
                if path is None and name != "count":
                    raise self._unexpected()
                self._expect_punct(")")
                alias = None
                if self.tok.kind == "ident" and self.tok.text.lower() not in RESERVED:
                    alias = self._advance().text
                return Aggregate(name, path, token.pos, alias)
            raise error_at(self.text, token.pos, f"Unknown function: {token.text}")
        return self._field_path()

    def _field_path(self) -> FieldPath:
        following = self.tokens[min(self.k + 1, len(self.tokens) - 1)]
        dotted = following.kind == "punct" and following.text == "."
        first = self._ident(allow_reserved=dotted)
        parts = [first.text]
        while self._is_punct("."):
            self._advance()
            parts.append(self._ident(allow_reserved=True).text)
        return FieldPath(parts, first.pos)

    def _order_list(self) -> list[OrderKey]:
        keys = [self._order_key()]
        while self._is_punct(","):
            self._advance()
            keys.append(self._order_key())
        return keys

    def _order_key(self) -> OrderKey:
        key = OrderKey(self._field_path())
        if self._is_kw("asc") or self._is_kw("desc"):
            key.descending = self._advance().text.lower() == "desc"
        if self._is_kw("nulls"):
            self._advance()
            if not (self._is_kw("first") or self._is_kw("last")):
                raise self._unexpected()
            key.nulls_last = self._advance().text.lower() == "last"
        return key

    def _condition(self) -> Condition:
        """AND and OR may not be mixed without parentheses, as in SOQL."""
        first = self._unary()
        if not (self._is_kw("and") or self._is_kw("or")):
            return first
        op = self.tok.text.lower()
        items = [first]
        while self._is_kw("and") or self._is_kw("or"):
            if self.tok.text.lower() != op:
                raise self._unexpected()
            self._advance()
            items.append(self._unary())
        return BoolOp(op, items)

    def _unary(self) -> Condition:
        if self._is_kw("not"):
            self._advance()
            return Negation(self._unary())
        if self._is_punct("("):
            self._advance()
            inner = self._condition()
            self._expect_punct(")")
            return inner
        return self._comparison()

    def _comparison(self) -> Condition:
        path = self._field_path()
        token = self.tok
        if token.kind == "op":
            self._advance()
            return Comparison(path, token.text, self._literal())
        if self._is_kw("like"):
            self._advance()
            literal = self._literal()
            if literal.kind != "string":
                raise error_at(self.text, literal.pos, "LIKE needs a string pattern")
            return Comparison(path, "like", literal)
        negate = False
        if self._is_kw("not") and self._is_kw("in", 1):
            self._advance()
            negate = True
        if self._is_kw("in"):
            self._advance()
            self._expect_punct("(")
            value: list[Literal] | Query
            if self._is_kw("select"):
                value = self._query()
            else:
                value = [self._literal()]
                while self._is_punct(","):
                    self._advance()
                    value.append(self._literal())
            self._expect_punct(")")
            return Comparison(path, "notin" if negate else "in", value)
        raise self._unexpected()

    def _literal(self) -> Literal:
        token = self.tok
        if token.kind in ("string", "number", "date", "datetime"):
            self._advance()
            return Literal(token.kind, token.value, token.pos, token.text)
        if token.kind == "ident":
            word = token.text.lower()
            if word in ("true", "false"):
                self._advance()
                return Literal("boolean", word == "true", token.pos, token.text)
            if word == "null":
                self._advance()
                return Literal("null", None, token.pos, token.text)
            if word in DATE_CONSTANTS:
                self._advance()
                return Literal("date_constant", word, token.pos, token.text)
            if word in DATE_CONSTANTS_N:
                self._advance()
                self._expect_punct(":")
                n_token = self.tok
                if n_token.kind != "number" or not isinstance(n_token.value, int):
                    raise self._unexpected()
                self._advance()
                return Literal("date_constant", word, token.pos, token.text, n=int(n_token.value))
        raise self._unexpected()


def parse(text: str) -> Query:
    """Parse one SOQL statement; raises SalesforceError(MALFORMED_QUERY) naming the position."""
    return Parser(text).parse()


__all__ = [
    "Aggregate",
    "BoolOp",
    "Comparison",
    "Condition",
    "FieldPath",
    "FieldsMacro",
    "Literal",
    "Negation",
    "OrderKey",
    "Query",
    "error_at",
    "parse",
]
