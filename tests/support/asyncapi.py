"""docs/asyncapi.yaml read for tests: the document, its $refs resolved, a JSON Schema validator
per message payload (the whole document is the schema's resource, so its $refs resolve)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

DOCUMENT = Path(__file__).parents[2] / "docs" / "asyncapi.yaml"


@cache
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def resolve(ref: str) -> Any:
    """The node a local ``$ref`` (``#/a/b``) points at; KeyError names a dangling one."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    """Every ``$ref`` in ``node``, depth first."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


@cache
def payload_validator(message: str) -> Any:
    """A validator of ``components.messages.<message>.payload`` (draft 2020-12, formats on)."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "$ref": f"#/components/messages/{message}/payload",
    }
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def message_of_type(cloudevents_type: str) -> str:
    """The component message whose payload's ``type`` is ``cloudevents_type``."""
    for name, message in document()["components"]["messages"].items():
        for part in message["payload"]["allOf"]:
            if part.get("properties", {}).get("type", {}).get("const") == cloudevents_type:
                return str(name)
    raise KeyError(f"no message in docs/asyncapi.yaml has type {cloudevents_type}")
