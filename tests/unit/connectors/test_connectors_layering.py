"""connectors/ sits above canonical and below flows: it never imports the sandbox (the sandbox
builds connector configurations) nor flows, not even for type checking."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[3] / "src" / "quote2cash"
REFUSED = ("quote2cash.sandbox", "quote2cash.flows", "quote2cash.api", "quote2cash.console")


def imported_modules(path: Path) -> set[str]:
    """Every module a file names in an import, ``from quote2cash import sandbox`` included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def refused(names: set[str]) -> set[str]:
    return {n for n in names if n in REFUSED or n.startswith(tuple(f"{r}." for r in REFUSED))}


def test_the_check_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from quote2cash import sandbox\n"
        "if TYPE_CHECKING:\n    from quote2cash.flows.deps import FlowDeps\n"
        "def f():\n    import quote2cash.api.app\n",
        encoding="utf-8",
    )
    assert refused(imported_modules(sample)) == {
        "quote2cash.sandbox",
        "quote2cash.flows.deps",
        "quote2cash.flows.deps.FlowDeps",
        "quote2cash.api.app",
    }


def test_no_connector_imports_the_sandbox_flows_or_the_experience_layer() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(bad)
        for path in (SRC / "connectors").rglob("*.py")
        if (bad := refused(imported_modules(path)))
    }
    assert offenders == {}
