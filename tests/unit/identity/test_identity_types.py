"""The identity types: what a credential's roles allow, and the package's place in the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import quote2cash.identity
from quote2cash.identity import ROLES, NotAllowed, NotAuthenticated, Operator, SignInRefused


def test_any_role_implies_viewer_and_nothing_else() -> None:
    approver = Operator("fiona", frozenset({"finance_approver"}), via="token", token_name="t")
    assert approver.holds("viewer") and approver.holds("finance_approver")
    assert not approver.holds("operator") and not approver.holds("admin")
    assert not Operator("nobody", frozenset(), via="session").holds("viewer")
    admin = Operator("root", frozenset({"admin"}), via="password")
    assert not admin.holds("operator"), "admin decides about people, not about replays"


def test_require_names_who_what_and_the_role() -> None:
    viewer = Operator("vic", frozenset({"viewer"}), via="token")
    viewer.require("viewer", "read events")
    with pytest.raises(NotAllowed) as refused:
        viewer.require("operator", "pause erp")
    assert str(refused.value) == "operator 'vic' may not pause erp: it needs the role 'operator'"
    assert issubclass(SignInRefused, NotAuthenticated)
    assert ROLES == ("viewer", "operator", "finance_approver", "admin")


def test_identity_never_imports_the_experience_layer() -> None:
    refused = ("quote2cash.api", "quote2cash.console", "quote2cash.cli")
    package = Path(quote2cash.identity.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(refused), f"{path.name} imports {name}"
    init = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    assert not [
        n
        for n in ast.walk(init)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("quote2cash")
    ], "the types import nothing of the hub"
