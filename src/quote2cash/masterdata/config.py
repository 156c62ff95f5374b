"""Loading the master-data YAML files so every error names the file, the key path, the line and why.

Each file is parsed once into plain data and once into YAML nodes; the nodes give the line of each
key path, so a pydantic validation error at ``mappings.2.billing.0.quantity`` is reported as
``config/catalog.yaml: line 14: mappings[2].billing[0].quantity: ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)

KeyPath = tuple[str | int, ...]


class ConfigError(ValueError):
    """A configuration file that cannot be used; ``str()`` names file, line, key path, problem."""

    def __init__(
        self, source: str, problem: str, *, key_path: str | None = None, line: int | None = None
    ) -> None:
        self.source = source
        self.problem = problem
        self.key_path = key_path
        self.line = line
        where = [source]
        if line is not None:
            where.append(f"line {line}")
        if key_path:
            where.append(key_path)
        super().__init__(f"{': '.join(where)}: {problem}")


class KeyedValueError(ValueError):
    """Raised by cross-field validators to say where in the file the problem is."""

    def __init__(self, path: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)


class StrictModel(BaseModel):
    """Configuration models refuse unknown keys: a typo is an error, not a silent no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def format_key_path(path: Sequence[str | int]) -> str:
    """``("mappings", 2, "billing", 0)`` -> ``mappings[2].billing[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class LoadedYaml:
    """A parsed YAML document with the line of every key path in it."""

    def __init__(self, source: str, data: Any, lines: dict[KeyPath, int]) -> None:
        self.source = source
        self.data = data
        self.lines = lines

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of ``path``, or of its nearest ancestor that exists in the file."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def error(self, path: Sequence[str | int], problem: str) -> ConfigError:
        return ConfigError(
            self.source, problem, key_path=format_key_path(path) or None, line=self.line_of(path)
        )


def _collect_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _collect_lines(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _collect_lines(item, (*path, index), lines)


def parse_yaml(text: str, source: str) -> LoadedYaml:
    """Parse ``text``; a syntax error becomes a ConfigError with the line YAML complained about."""
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, f"not valid YAML: {exc.problem or exc}", line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from None
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return LoadedYaml(source, data, lines)


def read_yaml(path: str | Path) -> LoadedYaml:
    """Read and parse a YAML file; a missing file is a ConfigError naming it."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, f"cannot read file: {exc.strerror or exc}") from None
    return parse_yaml(text, source)


def validate_model(model: type[M], loaded: LoadedYaml) -> M:
    """Validate the document as ``model``; the first problem becomes one ConfigError."""
    if not isinstance(loaded.data, dict):
        raise loaded.error((), f"expected a mapping at the top level, got {_kind(loaded.data)}")
    try:
        return model.model_validate(loaded.data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        path = _drop_union_tags(tuple(p for p in first["loc"] if isinstance(p, str | int)), loaded)
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedValueError):
            path = (*path, *cause.path)
        elif first["type"] == "missing" and first["loc"]:
            path = (*path, str(first["loc"][-1]))
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif first["type"] == "missing":
            message = "required key is missing"
        elif not isinstance(first.get("input"), dict | list):
            message = f"{message} (got {first.get('input')!r})"
        raise loaded.error(path, message) from None


def _drop_union_tags(path: KeyPath, loaded: LoadedYaml) -> KeyPath:
    """Pydantic adds union member names (``str``, ``list[str]``) to locations; keep real keys."""
    kept: list[str | int] = []
    data: Any = loaded.data
    for part in path:
        index = part if isinstance(part, int) else -1
        if isinstance(data, list) and 0 <= index < len(data):
            data = data[index]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    return type(value).__name__
