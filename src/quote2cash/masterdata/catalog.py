"""Catalog mapping: a CRM product code or CPQ bundle -> billing prices and ERP items, by date.

The mapping is a versioned YAML file (``config/catalog.yaml``); each code has versions with
effective dates that never overlap, so ``resolve(code, on_date)`` has at most one answer. A bundle
fans out to several prices and items, each with a quantity multiplier: ``per: unit`` multiplies the
order line's quantity, ``per: line`` is a fixed count per order line (e.g. one support plan).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import Field, field_validator, model_validator

from quote2cash.canonical import Order, OrderLine, Product, validate_currency_code
from quote2cash.engine.errors import MappingError
from quote2cash.masterdata.config import (
    KeyedValueError,
    StrictModel,
    parse_yaml,
    read_yaml,
    validate_model,
)

if TYPE_CHECKING:
    from quote2cash.connectors.roles import Billing, Crm, Erp

Code = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Per(StrEnum):
    UNIT = "unit"
    LINE = "line"


class MappingKind(StrEnum):
    PRODUCT = "product"
    BUNDLE = "bundle"


class BillingComponent(StrictModel):
    """A billing price: one lookup key / price id, or one per order currency (``{USD: ..}``)."""

    price: Code | dict[Currency, Code]
    quantity: Annotated[int, Field(ge=1, strict=True)] = 1
    per: Per = Per.UNIT

    @field_validator("price")
    @classmethod
    def _currencies_known(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, dict):
            if not value:
                raise ValueError("price per currency must name at least one currency")
            for code in value:
                validate_currency_code(code)
        return value

    def prices(self) -> list[str]:
        return [self.price] if isinstance(self.price, str) else list(self.price.values())

    def price_for(self, currency: str) -> str | None:
        return self.price if isinstance(self.price, str) else self.price.get(currency)


class ErpComponent(StrictModel):
    item: Code
    quantity: Annotated[int, Field(ge=1, strict=True)] = 1
    per: Per = Per.UNIT


class MappingVersion(StrictModel):
    """One version of a code's mapping, in force from ``effective_from`` until ``effective_to``
    (exclusive; None: open-ended)."""

    effective_from: date
    effective_to: date | None = None
    billing: Annotated[list[BillingComponent], Field(min_length=1)]
    erp: Annotated[list[ErpComponent], Field(min_length=1)]

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise KeyedValueError(
                ("effective_to",),
                f"effective_to {self.effective_to} must be after effective_from "
                f"{self.effective_from}",
            )
        return self

    def in_force(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on < self.effective_to)

    def span(self) -> str:
        return f"{self.effective_from}..{self.effective_to or ''}"


class CodeMapping(StrictModel):
    code: Code
    kind: MappingKind = MappingKind.PRODUCT
    product_line: str | None = None
    description: str | None = None
    versions: Annotated[list[MappingVersion], Field(min_length=1)]

    @model_validator(mode="after")
    def _versions_do_not_overlap(self) -> Self:
        for index in range(1, len(self.versions)):
            before, after = self.versions[index - 1], self.versions[index]
            if after.effective_from <= before.effective_from:
                raise KeyedValueError(
                    ("versions", index, "effective_from"),
                    f"versions of {self.code!r} must be in date order: {after.effective_from} "
                    f"is not after {before.effective_from}",
                )
            if before.effective_to is None or before.effective_to > after.effective_from:
                raise KeyedValueError(
                    ("versions", index, "effective_from"),
                    f"version from {after.effective_from} of {self.code!r} overlaps the version "
                    f"{before.span()}",
                )
        if self.kind is MappingKind.PRODUCT:
            for index, version in enumerate(self.versions):
                if len(version.billing) > 1 or len(version.erp) > 1:
                    raise KeyedValueError(
                        ("versions", index),
                        f"{self.code!r} is kind 'product' but maps to several prices or items; "
                        "declare it kind 'bundle'",
                    )
        return self


class CatalogConfig(StrictModel):
    version: Annotated[int, Field(ge=1)] = 1
    catalog: list[CodeMapping]

    @model_validator(mode="after")
    def _codes_unique(self) -> Self:
        seen: dict[str, int] = {}
        for index, mapping in enumerate(self.catalog):
            if mapping.code in seen:
                raise KeyedValueError(
                    ("catalog", index, "code"),
                    f"code {mapping.code!r} is already mapped at catalog[{seen[mapping.code]}]",
                )
            seen[mapping.code] = index
        return self


@dataclass(frozen=True)
class ResolvedMapping:
    """The mapping of one code in force on a date."""

    code: str
    kind: MappingKind
    product_line: str | None
    version: MappingVersion


@dataclass(frozen=True)
class MappedOrderLine:
    """One order line with the billing prices and ERP items it becomes, quantities multiplied."""

    index: int
    line: OrderLine
    code: str
    mapping: ResolvedMapping
    billing: tuple[tuple[str, int], ...]
    erp: tuple[tuple[str, int], ...]


def product_code_of(line: OrderLine) -> str | None:
    """The catalog key of an order line: ``product.external_ids['product_code']``.

    Where the CRM's order lines carry only the product's record id, use ``product_codes``.
    """
    return line.product.external_ids.get("product_code")


def product_codes(
    crm_products: Sequence[Product], *, system: str = "crm"
) -> Callable[[OrderLine], str | None]:
    """A ``code_of`` that finds a line's product code (``Product.sku``) by the product's id in
    ``system`` (e.g. the Salesforce Product2 Id), from the CRM's ``list_products()``."""
    return codes_by_id(product_code_ids(crm_products, system=system), system=system)


def product_code_ids(crm_products: Sequence[Product], *, system: str = "crm") -> dict[str, str]:
    """Each product's code by its id in ``system``: what a flow records of the CRM's products."""
    return {
        p.external_ids[system]: p.sku for p in crm_products if system in p.external_ids and p.sku
    }


def codes_by_id(
    by_id: Mapping[str, str], *, system: str = "crm"
) -> Callable[[OrderLine], str | None]:
    """A ``code_of`` from ``product_code_ids``' map (a line's own code first)."""

    def code_of(line: OrderLine) -> str | None:
        code = product_code_of(line)
        if code is not None:
            return code
        product_id = line.product.external_ids.get(system)
        return by_id.get(product_id) if product_id else None

    return code_of


class Catalog:
    def __init__(self, config: CatalogConfig, source: str = "<catalog>") -> None:
        self.config = config
        self.source = source
        self._by_code = {mapping.code: mapping for mapping in config.catalog}

    @property
    def codes(self) -> list[str]:
        return list(self._by_code)

    def resolve(self, product_code: str, on_date: date) -> ResolvedMapping:
        """The mapping of ``product_code`` in force on ``on_date``; else a MappingError."""
        found = self._find(product_code, on_date)
        if isinstance(found, str):
            raise MappingError(found)
        return found

    def _find(self, code: str, on: date) -> ResolvedMapping | str:
        mapping = self._by_code.get(code)
        if mapping is None:
            return f"product code {code!r} has no catalog mapping in {self.source}"
        for version in mapping.versions:
            if version.in_force(on):
                return ResolvedMapping(mapping.code, mapping.kind, mapping.product_line, version)
        spans = ", ".join(v.span() for v in mapping.versions)
        return f"product code {code!r} has no catalog mapping in force on {on} (versions: {spans})"

    def map_order_lines(
        self,
        order: Order,
        *,
        on_date: date | None = None,
        code_of: Callable[[OrderLine], str | None] = product_code_of,
    ) -> list[MappedOrderLine]:
        """Map every line of ``order`` (on its start date by default), or raise one MappingError
        naming every line that cannot be mapped; nothing is returned half-mapped."""
        on = on_date or order.start_date
        mapped: list[MappedOrderLine] = []
        problems: list[str] = []
        for index, line in enumerate(order.lines):
            code = code_of(line)
            if code is None:
                problems.append(f"lines[{index}]: no product code for product {line.product}")
                continue
            found = self._find(code, on)
            if isinstance(found, str):
                problems.append(f"lines[{index}]: {found}")
                continue
            version = found.version
            unpriced = [c for c in version.billing if c.price_for(order.currency) is None]
            if unpriced:
                priced_in = sorted(
                    {cur for c in unpriced if isinstance(c.price, dict) for cur in c.price}
                )
                problems.append(
                    f"lines[{index}]: product code {code!r} has no billing price in "
                    f"{order.currency} (priced in {', '.join(priced_in)})"
                )
                continue
            mapped.append(
                MappedOrderLine(
                    index=index,
                    line=line,
                    code=code,
                    mapping=found,
                    billing=tuple(
                        (str(c.price_for(order.currency)), _times(c.quantity, c.per, line.quantity))
                        for c in version.billing
                    ),
                    erp=tuple(
                        (c.item, _times(c.quantity, c.per, line.quantity)) for c in version.erp
                    ),
                )
            )
        if problems:
            raise MappingError(
                f"{order.label}: {len(problems)} of {len(order.lines)} lines cannot be mapped: "
                + "; ".join(problems)
            )
        return mapped


def _times(multiplier: int, per: Per, quantity: int) -> int:
    return multiplier * quantity if per is Per.UNIT else multiplier


def load_catalog(path: str | Path) -> Catalog:
    loaded = read_yaml(path)
    return Catalog(validate_model(CatalogConfig, loaded), loaded.source)


def parse_catalog(text: str, source: str = "<catalog.yaml>") -> Catalog:
    return Catalog(validate_model(CatalogConfig, parse_yaml(text, source)), source)


# --- checking the catalog against the systems ---


@dataclass(frozen=True)
class CatalogProblem:
    """A reference the catalog makes that a system cannot honour."""

    system: str
    reference: str
    problem: str
    used_by: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.system}: {self.reference} {self.problem} (used by {', '.join(self.used_by)})"


@dataclass(frozen=True)
class CatalogReport:
    checked_systems: tuple[str, ...]
    problems: tuple[CatalogProblem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def missing(self, system: str) -> list[str]:
        return [p.reference for p in self.problems if p.system == system]

    def summary(self) -> str:
        if self.ok:
            return f"catalog OK against {', '.join(self.checked_systems) or 'no systems'}"
        return "\n".join(str(problem) for problem in self.problems)


def _usage(catalog: Catalog) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str]]:
    prices: dict[str, list[str]] = {}
    items: dict[str, list[str]] = {}
    for mapping in catalog.config.catalog:
        for version in mapping.versions:
            where = f"{mapping.code}@{version.effective_from}"
            for b in version.billing:
                for price in b.prices():
                    prices.setdefault(price, []).append(where)
            for e in version.erp:
                items.setdefault(e.item, []).append(where)
    return prices, items, catalog.codes


def _compare(
    system: str, wanted: dict[str, list[str]], present: dict[str, bool], noun: str
) -> list[CatalogProblem]:
    problems = []
    for reference, used_by in wanted.items():
        if reference not in present:
            problems.append(CatalogProblem(system, reference, f"{noun} not found", tuple(used_by)))
        elif not present[reference]:
            problems.append(CatalogProblem(system, reference, f"{noun} inactive", tuple(used_by)))
    return problems


def _index(pairs: Iterable[tuple[Sequence[str | None], bool]]) -> dict[str, bool]:
    present: dict[str, bool] = {}
    for keys, active in pairs:
        for key in keys:
            if key:
                present[key] = present.get(key, False) or active
    return present


async def check_catalog(
    catalog: Catalog,
    *,
    crm: Crm | None = None,
    erp: Erp | None = None,
    billing: Billing | None = None,
) -> CatalogReport:
    """Report every product code, ERP item and billing price the catalog names that the given
    systems lack or have inactive. Systems not given are not checked.

    Matching keys: CRM products by ``sku`` (ProductCode) or ``external_ids['product_code']``;
    ERP items by ``sku`` (item code); billing prices by ``external_ids['billing']`` or
    ``external_ids['lookup_key']``.
    """
    prices, items, codes = _usage(catalog)
    checked: list[str] = []
    problems: list[CatalogProblem] = []

    async def none() -> None:
        return None

    crm_products, erp_items, billing_prices = await asyncio.gather(
        crm.list_products() if crm is not None else none(),
        erp.list_items() if erp is not None else none(),
        billing.list_prices() if billing is not None else none(),
    )
    if crm is not None and crm_products is not None:
        checked.append(crm.system)
        present = _index(
            ((p.sku, p.external_ids.get("product_code")), p.active) for p in crm_products
        )
        problems += _compare(crm.system, {c: [c] for c in codes}, present, "product code")
    if erp is not None and erp_items is not None:
        checked.append(erp.system)
        present = _index(((p.sku, p.external_ids.get("item_code")), p.active) for p in erp_items)
        problems += _compare(erp.system, items, present, "item")
    if billing is not None and billing_prices is not None:
        checked.append(billing.system)
        present = _index(
            ((p.external_ids.get("billing"), p.external_ids.get("lookup_key")), p.active)
            for p in billing_prices
        )
        problems += _compare(billing.system, prices, present, "price")
    return CatalogReport(tuple(checked), tuple(problems))
