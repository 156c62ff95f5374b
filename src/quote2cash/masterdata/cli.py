"""``q2c catalog``: check a catalog mapping file, offline or against the configured systems."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from quote2cash.masterdata.catalog import check_catalog, load_catalog
from quote2cash.masterdata.config import ConfigError

if TYPE_CHECKING:
    from quote2cash.connectors.roles import Billing, Crm, Erp

SystemsProvider = Callable[
    [], AbstractAsyncContextManager[tuple["Crm | None", "Erp | None", "Billing | None"]]
]
"""Opens (and afterwards closes) the CRM, ERP and billing systems to check the catalog against."""

catalog_app = typer.Typer(help="Catalog mapping: CRM product codes -> billing prices, ERP items.")

_systems: SystemsProvider | None = None


@catalog_app.callback()
def catalog() -> None:
    """Catalog mapping: CRM product codes -> billing prices, ERP items."""


def use_systems(provider: SystemsProvider | None) -> None:
    """Register how ``check`` reaches the systems (the CLI wiring does this); None: offline."""
    global _systems
    _systems = provider


@catalog_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="catalog YAML file, e.g. q2c-config/catalog.yaml")],
    offline: Annotated[
        bool, typer.Option("--offline", help="only validate the file, do not ask the systems")
    ] = False,
) -> None:
    """Validate the catalog file; with systems configured, report every missing item and price."""
    run_check(path, None if offline else _systems)


def run_check(path: Path, provider: SystemsProvider | None) -> None:
    """Validate ``path``; with a provider, check it against those systems (exit 1 if missing)."""
    try:
        catalog = load_catalog(path)
    except ConfigError as exc:
        typer.echo(f"invalid catalog: {exc}", err=True)
        raise typer.Exit(2) from None
    versions = sum(len(m.versions) for m in catalog.config.catalog)
    typer.echo(f"{path}: valid, {len(catalog.codes)} codes, {versions} versions")
    if provider is None:
        typer.echo("not checked against the systems (offline)")
        return
    systems = provider

    async def run() -> str:
        async with systems() as (crm, erp, billing):
            report = await check_catalog(catalog, crm=crm, erp=erp, billing=billing)
        if not report.ok:
            typer.echo(report.summary(), err=True)
            raise typer.Exit(1)
        return report.summary()

    typer.echo(asyncio.run(run()))
