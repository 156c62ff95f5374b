"""Stripe's form encoding (``a[b][0][c]=v``) decoded into nested dicts/lists, and typed accessors.

Accessors raise Stripe's 400 errors naming the parameter, so every endpoint validates the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import invalid_param, missing_param, unknown_param

_KEY_PART = re.compile(r"\[([^\]]*)\]")


def _split_key(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    parts = [head]
    if rest:
        parts.extend(_KEY_PART.findall("[" + rest))
    return parts


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(isinstance(k, int) for k in converted):
            return [converted[k] for k in sorted(converted)]
        return converted
    return node


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest flat pairs: ``items[0][price]`` -> ``{"items": [{"price": ...}]}``; ``a[]`` appends."""
    root: dict[Any, Any] = {}
    for key, value in pairs:
        parts = _split_key(key)
        node: dict[Any, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            name: Any = part
            if part == "":
                name = len(node)
            elif part.isdigit() and i > 0:
                name = int(part)
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


class Params:
    """Typed, validated access to one request's decoded parameters."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = dict(data)
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def allow(self, *names: str) -> None:
        """Reject any parameter outside ``names`` (plus ``expand``), as Stripe does."""
        allowed = set(names) | {"expand"}
        for key in self.data:
            if key not in allowed:
                raise unknown_param(self._name(key))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def str_(
        self, key: str, *, required: bool = False, choices: Iterable[str] | None = None
    ) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self._name(key))
            return None
        if not isinstance(value, str):
            raise invalid_param(self._name(key), f"Invalid string: {self._name(key)}")
        if choices is not None:
            options = list(choices)
            if value not in options:
                raise invalid_param(
                    self._name(key),
                    f"Invalid {self._name(key)}: must be one of {', '.join(options)}",
                )
        return value

    def req_str(self, key: str, *, choices: Iterable[str] | None = None) -> str:
        value = self.str_(key, required=True, choices=choices)
        assert value is not None
        return value

    def currency(self, key: str = "currency") -> str:
        """A required ISO 4217 code, lower-cased as Stripe stores it."""
        value = self.req_str(key).lower()
        if not re.fullmatch(r"[a-z]{3}", value):
            raise invalid_param(self._name(key), f"Invalid currency: {value}.")
        return value

    def int_(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self._name(key))
            return None
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            raise invalid_param(self._name(key), f"Invalid integer: {value!r}")
        number = int(value)
        if minimum is not None and number < minimum:
            raise invalid_param(
                self._name(key),
                f"This value must be greater than or equal to {minimum}.",
            )
        return number

    def req_int(self, key: str, *, minimum: int | None = None) -> int:
        value = self.int_(key, required=True, minimum=minimum)
        assert value is not None
        return value

    def decimal(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise invalid_param(self._name(key), f"Invalid decimal: {value!r}") from None

    def bool_(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if value in ("true", "false"):
            return bool(value == "true")
        raise invalid_param(self._name(key), f"Invalid boolean: {value!r}")

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self._name(key))
            return None
        if not isinstance(value, dict):
            raise invalid_param(self._name(key), f"Invalid object: {self._name(key)}")
        return Params(value, self._name(key))

    def items(self, key: str) -> list[Params]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list):
            raise invalid_param(self._name(key), f"Invalid array: {self._name(key)}")
        out = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise invalid_param(f"{self._name(key)}[{i}]", "Invalid object")
            out.append(Params(entry, f"{self._name(key)}[{i}]"))
        return out

    def strings(self, key: str) -> list[str]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid_param(self._name(key), f"Invalid array: {self._name(key)}")
        return list(value)

    def metadata(self, current: Mapping[str, str] | None = None) -> dict[str, str]:
        """Merge ``metadata[...]`` into ``current``; an empty value deletes a key (as Stripe)."""
        merged = dict(current or {})
        value = self.data.get("metadata")
        if value is None:
            return merged
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid_param(self._name("metadata"), "Invalid metadata: must be a hash")
        for k, v in value.items():
            if not isinstance(v, str):
                raise invalid_param(
                    f"{self._name('metadata')}[{k}]", "Metadata values must be strings"
                )
            if v == "":
                merged.pop(str(k), None)
            else:
                if len(str(k)) > 40 or len(v) > 500:
                    raise invalid_param(
                        f"{self._name('metadata')}[{k}]",
                        "Metadata keys are limited to 40 characters and values to 500.",
                    )
                merged[str(k)] = v
        if len(merged) > 50:
            raise invalid_param(self._name("metadata"), "Metadata is limited to 50 keys.")
        return merged
