"""reconcile/ sits beside flows: it may use connectors' roles, masterdata and the engine, never
flows, a concrete connector or the sandbox; no connector imports it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[3] / "src" / "quote2cash"


def imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[str(path.relative_to(SRC))] = names
    return found


def test_reconcile_uses_roles_never_flows_or_a_concrete_connector() -> None:
    refused = ("quote2cash.flows", "quote2cash.sandbox", "quote2cash.api", "quote2cash.store")
    concrete = ("quote2cash.connectors.stripe", "quote2cash.connectors.tryton")
    concrete += ("quote2cash.connectors.salesforce", "quote2cash.connectors.legacy_erp")
    for module, names in imports(SRC / "reconcile").items():
        bad = {n for n in names if n.startswith(refused + concrete)}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_no_connector_imports_reconcile() -> None:
    for module, names in imports(SRC / "connectors").items():
        assert not {n for n in names if n.startswith("quote2cash.reconcile")}, module
