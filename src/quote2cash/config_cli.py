"""``q2c config``: write an editable copy of the default configuration, show and check one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from quote2cash.cli_text import FormatOption, OutputFormat, escape, show_records
from quote2cash.configuration import (
    active_config_dir,
    check_config_dir,
    describe_source,
    write_editable_copy,
)
from quote2cash.defaults import packaged_alert_rules
from quote2cash.masterdata import ConfigError

config_app = typer.Typer(
    help="The YAML rules: catalog, legal entities, tax, ownership, matching, onboarding; alerts.",
    no_args_is_help=True,
)
console = Console()


@config_app.command("init")
def config_init(
    folder: Annotated[Path, typer.Argument(help="Where to write the editable copy")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files already there")] = False,
) -> None:
    """Write the packaged default configuration into FOLDER; point Q2C_CONFIG_DIR at it."""
    from quote2cash.cli import fail

    try:
        written = write_editable_copy(folder, force=force)
    except ConfigError as exc:
        fail(str(exc))
    console.print(
        escape(f"wrote {len(written)} files to {folder}; use them with Q2C_CONFIG_DIR={folder}"),
        highlight=False,
    )


def _report(folder: Path, output: OutputFormat) -> None:
    from quote2cash.cli import fail

    try:
        checks = check_config_dir(folder)
    except ConfigError as exc:
        fail(f"{exc} ({describe_source(folder)} is not usable)", code=1)
    records = [{"file": c.file, "status": c.status, "detail": c.detail} for c in checks]
    show_records(console, records, ("file", "status", "detail"), output)
    if output is OutputFormat.table:
        console.print(escape(f"configuration: {describe_source(folder)}"), highlight=False)


@config_app.command("show")
def config_show(output: FormatOption = OutputFormat.table) -> None:
    """Which configuration the hub reads ($Q2C_CONFIG_DIR or the packaged defaults), checked."""
    _report(active_config_dir(), output)


@config_app.command("check")
def config_check(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder to check (default: the one the hub reads)")
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Load every file as the hub does; the first problem names file, line and key (exit 1)."""
    _report(folder or active_config_dir(), output)


def _alert_records(rules: Path) -> list[dict[str, str]]:
    import yaml

    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    return [
        {
            "alert": rule["alert"],
            "severity": rule["labels"]["severity"],
            "team": rule["labels"]["team"],
            "for": rule.get("for", "0s"),
            "summary": rule["annotations"]["summary"],
        }
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


@config_app.command("alerts")
def config_alerts(
    path: Annotated[bool, typer.Option("--path", help="Print only the rules file's path")] = False,
    content: Annotated[
        bool, typer.Option("--content", help="Print the rules file, to copy and edit")
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """The Prometheus alert rules shipped with the hub: each alert's severity, team and delay."""
    rules = packaged_alert_rules()
    if path:
        typer.echo(str(rules))
        return
    if content:
        typer.echo(rules.read_text(encoding="utf-8"), nl=False)
        return
    columns = ("alert", "severity", "team", "for", "summary")
    show_records(console, _alert_records(rules), columns, output)
    if output is OutputFormat.table:
        console.print(escape(f"rules file: {rules} (Prometheus rule_files)"), highlight=False)
