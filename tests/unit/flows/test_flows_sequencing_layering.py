"""Flows sequence work through engine primitives (park, release, the log's reads), never by
reading the engine's tables: no module of ``flows/`` imports ``store`` or SQLAlchemy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FLOWS = Path(__file__).parents[3] / "src" / "quote2cash" / "flows"


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", sorted(p.name for p in FLOWS.glob("*.py")))
def test_sequencing_flows_do_not_touch_engine_tables(module: str) -> None:
    modules = imported_modules(FLOWS / module)
    touching = sorted(m for m in modules if m.startswith(("quote2cash.store", "sqlalchemy")))
    assert touching == [], f"flows/{module} imports {touching}"
