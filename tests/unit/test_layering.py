"""The layering rules of DESIGN §1 (and §5's boundaries), checked on the source: one place.

Arrows point down only: experience (api/, console/, the CLI) -> process (flows/) -> system
(connectors/) -> canonical; the runtime parts below them never reach up. Imports are read with
the AST wherever they sit (module level, inside functions, under ``TYPE_CHECKING``, and
``importlib.import_module("...")`` with a literal name); every failure names file, line and rule.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"
PACKAGE = SRC / "quote2cash"

ROLE_MODULES = ("quote2cash.connectors.roles", "quote2cash.connectors.registry")
"""What flows may know of connectors: the role protocols and the registry that hands them out."""

EXPERIENCE_PACKAGES = ("api", "console", "demo")
"""The experience layer's packages (``demo`` is ``q2c demo``'s composition root)."""

EXPERIENCE_MODULES = ("quote2cash.reconcile.render", "quote2cash.configuration")
"""Experience modules elsewhere: the reconcile command's tables, CSV and JSON; the configuration
folder's loader and checker behind ``q2c config`` (it loads every layer's files)."""

RUNTIME_PACKAGES = (
    "canonical",
    "masterdata",
    "engine",
    "store",
    "bus",
    "observability",
    "usage",
    "reconcile",
    "identity",
    "retention",
    "readmodels",
    "settings",
    "private_files",
    "allocator",
    "defaults",
)
"""The runtime parts every layer uses (and their settings); they sit below the three layers."""

GPL_SYSTEMS = ("trytond", "localstripe")
"""Run only as separate processes (sandbox, tests); never imported by ``src/``."""


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is imported."""

    module: str
    line: int


@dataclass(frozen=True)
class Source:
    """One module of ``src/quote2cash``: its dotted name, path and imports."""

    name: str
    path: Path
    imports: tuple[Import, ...]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(SRC.parent))


def _dotted_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """``from ..x import y`` in ``importer`` as the absolute name Python resolves it to."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base[: len(base) - level + (1 if is_package else 0)]
    return ".".join([*base, module] if module else base)


def _imports(tree: ast.AST, name: str, is_package: bool) -> Iterator[Import]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node.module, node.level, name, is_package)
            yield Import(module, node.lineno)
            for alias in node.names:
                # ``from quote2cash import flows`` imports the package ``quote2cash.flows``.
                yield Import(f"{module}.{alias.name}", node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(node.args[0].value, node.lineno)


@cache
def sources() -> tuple[Source, ...]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _dotted_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = tuple(_imports(tree, name, path.name == "__init__.py"))
        found.append(Source(name, path, imports))
    return tuple(found)


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _top(module: str) -> str:
    """``quote2cash.flows.intake`` -> ``flows``; ``quote2cash.cli_text`` -> ``cli_text``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "quote2cash" else ""


def is_experience(module: str) -> bool:
    """api/, console/, demo/, the CLI modules (``cli*.py``, ``*_cli.py``, any package's cli.py)."""
    if not _within(module, "quote2cash"):
        return False
    top = _top(module)
    last = module.rsplit(".", 1)[-1]
    return (
        _within(module, *EXPERIENCE_MODULES)
        or top in EXPERIENCE_PACKAGES
        or top.startswith("cli")
        or top.endswith("_cli")
        or last == "cli"
    )


def is_connector(module: str) -> bool:
    return _top(module) == "connectors"


def is_concrete_connector(module: str) -> bool:
    """A system's own package (``connectors/stripe/``...), not the shared modules beside them."""
    parts = module.split(".")
    return is_connector(module) and len(parts) > 2 and (PACKAGE / "connectors" / parts[2]).is_dir()


def is_beyond_the_roles(module: str) -> bool:
    """Anything of connectors/ but the role protocols and the registry that hands them out."""
    return (
        is_connector(module)
        and module != "quote2cash.connectors"
        and not _within(module, *ROLE_MODULES)
    )


def is_flow(module: str) -> bool:
    return _top(module) == "flows"


def is_runtime(module: str) -> bool:
    return _top(module) in RUNTIME_PACKAGES and not is_experience(module)


def is_sandbox(module: str) -> bool:
    return _top(module) == "sandbox"


def is_store(module: str) -> bool:
    return _within(module, "quote2cash.store", "sqlalchemy", "alembic")


def breaches(
    rule: str, importer: Callable[[str], bool], refused: Callable[[str], bool]
) -> list[str]:
    """``file:line: imports X -- rule`` for every import of ``refused`` by an ``importer``."""
    found: dict[tuple[str, int], str] = {}
    for source in sources():
        if not importer(source.name):
            continue
        for imported in source.imports:
            if refused(imported.module):
                at = (source.where, imported.line)
                found[at] = min(found.get(at, imported.module), imported.module, key=len)
    return [
        f"{where}:{line}: imports {module} -- {rule}"
        for (where, line), module in sorted(found.items())
    ]


def report(lines: Iterable[str]) -> str:
    listed = list(lines)
    return f"{len(listed)} breach(es) of the layering rules (DESIGN §1, §5):\n" + "\n".join(listed)


# --- connectors (system layer) --------------------------------------------------------------


def test_connectors_never_import_flows_reconcile_or_the_experience_layer() -> None:
    rule = "connectors never import flows/, reconcile/ or the experience layer (arrows point down)"
    found = breaches(
        rule,
        is_connector,
        lambda m: is_flow(m) or is_experience(m) or _top(m) == "reconcile",
    )
    assert not found, report(found)


def test_connectors_never_import_the_sandbox() -> None:
    rule = "connectors never import sandbox/ (the sandbox builds connector configurations)"
    found = breaches(rule, is_connector, is_sandbox)
    assert not found, report(found)


# --- flows (process layer) ------------------------------------------------------------------


def test_flows_ask_for_roles_never_a_concrete_connector() -> None:
    rule = "flows import only connectors.roles / connectors.registry, never a concrete connector"
    found = breaches(rule, is_flow, is_beyond_the_roles)
    assert not found, report(found)


def test_flows_never_touch_the_store() -> None:
    rule = "flows never import store/ or SQL (they use engine primitives)"
    found = breaches(rule, is_flow, is_store)
    assert not found, report(found)


def test_flows_never_import_the_experience_layer_or_the_sandbox() -> None:
    rule = "flows never import the experience layer, reconcile/ or sandbox/ (arrows point down)"
    found = breaches(
        rule, is_flow, lambda m: is_experience(m) or is_sandbox(m) or _top(m) == "reconcile"
    )
    assert not found, report(found)


def test_flows_name_no_salesforce_field() -> None:
    """System shapes live in their connector's mapping.py: no ``__c`` in flows, code or text."""
    found = []
    for source in sources():
        if not is_flow(source.name):
            continue
        for number, text in enumerate(source.path.read_text(encoding="utf-8").splitlines(), 1):
            if "__c" in text:
                found.append(
                    f"{source.where}:{number}: names {text.strip()[:80]!r} -- "
                    "flows name no Salesforce field (system shapes stay in connectors' mapping.py)"
                )
    assert not found, report(found)


# --- the experience layer and the runtime parts -------------------------------------------


def test_only_the_experience_layer_imports_api_or_console() -> None:
    rule = "only the experience layer (api/, console/, demo/, the CLI) imports api/ or console/"
    found = breaches(
        rule,
        lambda m: not is_experience(m),
        lambda m: _top(m) in ("api", "console"),
    )
    assert not found, report(found)


def test_runtime_parts_never_reach_up_into_the_layers() -> None:
    rule = "runtime parts never import flows/, sandbox/ or the experience layer (arrows point down)"
    found = breaches(rule, is_runtime, lambda m: is_flow(m) or is_sandbox(m) or is_experience(m))
    assert not found, report(found)


def test_runtime_parts_use_connector_roles_never_a_concrete_connector() -> None:
    rule = "runtime parts never import a concrete connector (a system's package in connectors/)"
    found = breaches(rule, is_runtime, is_concrete_connector)
    assert not found, report(found)


def test_the_canonical_model_depends_on_nothing_of_the_hub() -> None:
    rule = "canonical/ is the bottom: it imports nothing else of quote2cash"
    found = breaches(
        rule,
        lambda m: _top(m) == "canonical",
        lambda m: _within(m, "quote2cash") and _top(m) not in ("", "canonical"),
    )
    assert not found, report(found)


def test_reconcile_uses_roles_never_flows_the_store_or_a_concrete_connector() -> None:
    """reconcile/ sits beside flows; this holds for its command module too."""
    rule = (
        "reconcile/ (cli included) never imports flows/, sandbox/, api/, store/ "
        "or a concrete connector"
    )
    found = breaches(
        rule,
        lambda m: _top(m) == "reconcile",
        lambda m: (
            is_flow(m)
            or is_sandbox(m)
            or _top(m) == "api"
            or is_store(m)
            or is_concrete_connector(m)
        ),
    )
    assert not found, report(found)


def test_no_gpl_system_is_imported() -> None:
    rule = "Tryton and localstripe are GPL: separate processes only, never imported (DESIGN §5)"
    found = breaches(rule, lambda m: True, lambda m: _within(m, *GPL_SYSTEMS))
    assert not found, report(found)


def test_every_part_of_the_hub_belongs_to_a_layer() -> None:
    """A new package escapes every rule until it is placed: placing it is a design decision."""
    unplaced = []
    for path in sorted(PACKAGE.iterdir()):
        if path.name.startswith(("_", ".")) or not (path.suffix == ".py" or path.is_dir()):
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        module = f"quote2cash.{path.stem}"
        layers = (is_experience, is_flow, is_connector, is_sandbox, is_runtime)
        if not any(layer(module) for layer in layers):
            unplaced.append(
                f"{path.relative_to(SRC.parent)}: in no layer -- place it in DESIGN §1 and in "
                "tests/unit/test_layering.py (EXPERIENCE_PACKAGES, RUNTIME_PACKAGES ...)"
            )
    assert not unplaced, report(unplaced)


# --- the contract-test kit (DESIGN §5) ------------------------------------------------------

CONTRACTS = SRC.parent / "tests" / "contract"
SYSTEM_WORDS = ("stripe", "salesforce", "tryton", "legacy_erp", "metadata", "__c")
"""Words that tie a scenario to one implementation; they belong in its harness or its tests."""


def test_contract_scenarios_are_system_neutral() -> None:
    """One suite, every implementation: scenarios name no system and import none of its code."""
    found = []
    for path in sorted(CONTRACTS.glob("*/test_*.py")):
        where = str(path.relative_to(SRC.parent))
        text = path.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            named = [word for word in SYSTEM_WORDS if word in line.lower()]
            if named:
                found.append(f"{where}:{number}: names {named} -- contract scenarios are neutral")
        name = ".".join(path.relative_to(CONTRACTS.parent).with_suffix("").parts)
        for imported in _imports(ast.parse(text), name, False):
            if is_concrete_connector(imported.module) or is_sandbox(imported.module):
                found.append(
                    f"{where}:{imported.line}: imports {imported.module} -- contract scenarios "
                    "act through the role and their harness only"
                )
    assert not found, report(found)


# --- the checker itself ---------------------------------------------------------------------


def test_the_checker_reads_imports_inside_functions_relative_and_dynamic() -> None:
    """A rule is only as good as the import reader: prove it sees every form a breach can take."""
    code = (
        "from __future__ import annotations\n"
        "import quote2cash.store.schema\n"
        "from ..sandbox import tryton\n"
        "from quote2cash import flows\n"
        "def later():\n"
        "    from .stripe.client import StripeClient\n"
        "    importlib.import_module('quote2cash.console.app')\n"
    )
    tree = ast.parse(code)
    seen = {(i.module, i.line) for i in _imports(tree, "quote2cash.connectors.registry", False)}
    assert ("quote2cash.store.schema", 2) in seen
    assert ("quote2cash.sandbox.tryton", 3) in seen
    assert ("quote2cash.flows", 4) in seen
    assert ("quote2cash.connectors.stripe.client", 6) in seen
    assert ("quote2cash.console.app", 7) in seen
    assert is_concrete_connector("quote2cash.connectors.stripe.client")
    assert not is_concrete_connector("quote2cash.connectors.roles")
    assert is_beyond_the_roles("quote2cash.connectors.stripe")
    assert not is_beyond_the_roles("quote2cash.connectors.registry")
    assert is_experience("quote2cash.reconcile.cli") and is_experience("quote2cash.cli_text")
    assert not is_experience("quote2cash.reconcile.run")
    assert len(sources()) > 50 and any(is_flow(s.name) for s in sources())
