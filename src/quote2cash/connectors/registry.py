"""The composition root for connectors: which system plays which role, built from configuration.

Flows ask for a role (``crm``, ``erp``, ``billing``) and get whatever implements it; only this
module knows the concrete connectors. Configuration is a YAML file (``systems.yaml``)::

    crm:
      kind: salesforce
      settings: {instance_url: ..., client_id: ..., client_secret: "${SF_SECRET}"}
    erp:
      kind: tryton          # or legacy_erp: {base_url, username, password, drop_folder, ...}
      settings: {base_url: ..., database: ..., username: ..., password: "${ERP_PW}", ...}
    billing:
      kind: stripe
      settings: {api_key: "${STRIPE_KEY}"}

``${NAME}`` is replaced by the environment variable NAME, so secrets stay out of the file; the
sandbox builds its own (``systems_from_sandbox`` in the sandbox package). Each role may also
name its API budgets (``budgets:``, docs/engine.md), shared by every hub process::

    billing:
      kind: stripe
      settings: {...}
      budgets:
        reads: {rate: 25, burst: 25, operations: ["get_*", "list_*", "search_*"]}
        writes: {rate: 25, burst: 5}
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from quote2cash.connectors.roles import Billing, Crm, Erp, SystemCheck
from quote2cash.engine.budgets import Budget, BudgetConfigError, budgets_from_mapping
from quote2cash.engine.errors import IntegrationError

ROLES = ("crm", "erp", "billing")
KINDS = {"crm": ("salesforce",), "erp": ("tryton", "legacy_erp"), "billing": ("stripe",)}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SystemsConfigError(ValueError):
    """Bad systems configuration; the message names the file, the role and the problem."""


@dataclass
class Systems:
    """The connectors for the three roles; an async context manager that closes them."""

    crm: Crm | None = None
    erp: Erp | None = None
    billing: Billing | None = None
    budgets: tuple[Budget, ...] = ()
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    def configured(self) -> dict[str, Any]:
        return {r: c for r in ROLES if (c := getattr(self, r)) is not None}

    async def __aenter__(self) -> Systems:
        for connector in self.configured().values():
            if hasattr(connector, "__aenter__"):
                await self._stack.enter_async_context(connector)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


def batching_erp(erp: Erp | None, *, max_batch: int, window_ms: float) -> Erp | None:
    """``erp`` with its invoice postings gathered into batches (``connectors.batching``), as the
    flows get it; ``max_batch`` 1 (or no ERP) leaves it as it is."""
    if erp is None or max_batch <= 1:
        return erp
    from quote2cash.connectors.batching import BatchingErp

    return BatchingErp(erp, max_batch=max_batch, window=window_ms / 1000)


def build(role: str, kind: str, settings: dict[str, Any], *, source: str = "configuration") -> Any:
    """One connector for ``role`` from its kind and settings (validated by its config class)."""
    if role not in KINDS:
        raise SystemsConfigError(f"{source}: unknown role {role!r}; expected one of {ROLES}")
    if kind not in KINDS[role]:
        raise SystemsConfigError(
            f"{source}: {role}.kind is {kind!r}; expected one of {list(KINDS[role])}"
        )
    try:
        if kind == "salesforce":
            from quote2cash.connectors.salesforce import SalesforceConfig, SalesforceCrm

            return SalesforceCrm(SalesforceConfig.model_validate(settings))
        if kind == "tryton":
            from quote2cash.connectors.tryton import TrytonConfig, TrytonErp

            return TrytonErp(TrytonConfig.from_mapping(settings, source=f"{source} ({role})"))
        if kind == "legacy_erp":
            from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpConfig

            return LegacyErp(LegacyErpConfig.from_mapping(settings, source=f"{source} ({role})"))
        from quote2cash.connectors.stripe import StripeBilling, StripeConfig

        return StripeBilling(StripeConfig.model_validate(settings))
    except SystemsConfigError:
        raise
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise SystemsConfigError(f"{source}: {role} ({kind}) settings: {_safe(exc)}") from None


def _safe(exc: Exception) -> str:
    """Validation messages without the offending input (which may be a secret)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in errors(include_url=False, include_input=False)
        )
    return str(exc)


def _expand(value: Any, source: str) -> Any:
    if isinstance(value, str):

        def env(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise SystemsConfigError(f"{source}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(env, value)
    if isinstance(value, dict):
        return {k: _expand(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, source) for v in value]
    return value


def _read(path: str | Path) -> dict[str, Any]:
    import yaml

    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemsConfigError(f"cannot read {source}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemsConfigError(f"{source}: expected a mapping of roles at the top level")
    unknown = sorted(set(data) - set(ROLES))
    if unknown:
        raise SystemsConfigError(f"{source}: unknown role(s) {unknown}; expected {list(ROLES)}")
    for role, spec in data.items():
        if not isinstance(spec, dict):
            raise SystemsConfigError(f"{source}: {role} needs 'kind' and 'settings'")
        extra = sorted(set(spec) - {"kind", "settings", "budgets"})
        if extra:
            raise SystemsConfigError(
                f"{source}: {role} has unknown key(s) {extra}; expected kind, settings, budgets"
            )
    return data


def _budgets(data: dict[str, Any], source: str) -> tuple[Budget, ...]:
    try:
        return tuple(
            b
            for role, spec in data.items()
            for b in budgets_from_mapping(role, spec.get("budgets"), source=source)
        )
    except BudgetConfigError as exc:
        raise SystemsConfigError(str(exc)) from None


def budgets_from_file(path: str | Path) -> tuple[Budget, ...]:
    """Only the API budgets of a ``systems.yaml`` (connectors not built, secrets not read)."""
    return _budgets(_read(path), str(path))


def from_file(path: str | Path) -> Systems:
    """Connectors and budgets from a ``systems.yaml``; errors name the file and the role."""
    source = str(path)
    data = _read(path)
    systems = Systems(budgets=_budgets(data, source))
    for role, spec in data.items():
        if "kind" not in spec:
            raise SystemsConfigError(f"{source}: {role} needs 'kind' and 'settings'")
        settings = _expand(spec.get("settings") or {}, source)
        setattr(systems, role, build(role, spec["kind"], settings, source=source))
    return systems


async def check_all(systems: Systems, *, seconds: float = 20.0) -> list[SystemCheck]:
    """Call each configured system once: reachable? authenticated? Never raises."""

    async def one(role: str, connector: Any) -> SystemCheck:
        started = time.perf_counter()
        try:
            result: SystemCheck = await asyncio.wait_for(connector.check(), seconds)
            return result
        except TimeoutError:
            return SystemCheck(role, False, False, f"no answer within {seconds:.0f} s")
        except IntegrationError as exc:
            return SystemCheck(role, False, False, str(exc), (time.perf_counter() - started) * 1000)

    return list(await asyncio.gather(*(one(r, c) for r, c in systems.configured().items())))
