"""Which configuration folder the hub reads, writing an editable copy, and checking one.

The folder is ``Q2C_CONFIG_DIR`` when set, else the defaults shipped in the package; a check
loads every file with the loaders the hub uses, so a folder that passes is one the hub accepts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quote2cash.defaults import CONFIG_FILES, packaged_config_dir
from quote2cash.flows.policy import load_onboarding
from quote2cash.masterdata import (
    ConfigError,
    load_catalog,
    load_entities,
    load_matching,
    load_ownership,
    load_survivorship,
    load_tax,
)

REQUIRED = ("catalog.yaml", "entities.yaml")
"""Files without which no deal can be processed; the others have defaults or are optional."""


def active_config_dir(explicit: str | Path | None = None) -> Path:
    """``explicit`` (a command's option), else ``$Q2C_CONFIG_DIR``, else the packaged defaults."""
    from quote2cash.settings import get_settings

    chosen = explicit or get_settings().config_dir
    return Path(chosen) if chosen else packaged_config_dir()


def describe_source(folder: Path) -> str:
    """Where ``folder`` comes from, for messages: the packaged defaults or a path."""
    return "the packaged defaults" if folder == packaged_config_dir() else str(folder)


def write_editable_copy(destination: Path, *, force: bool = False) -> list[Path]:
    """Copy the packaged defaults into ``destination``; refuses to overwrite unless ``force``."""
    source = packaged_config_dir()
    targets = [destination / name for name in CONFIG_FILES]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        names = ", ".join(t.name for t in existing)
        raise ConfigError(
            str(destination), f"already holds {names}; pass --force to overwrite them"
        )
    destination.mkdir(parents=True, exist_ok=True)
    for target in targets:
        shutil.copyfile(source / target.name, target)
    return targets


@dataclass(frozen=True)
class FileCheck:
    """One configuration file and what its loader found in it."""

    file: str
    status: str
    detail: str


def check_config_dir(folder: Path) -> list[FileCheck]:
    """Load every file of ``folder`` as the hub does; the first problem raises ConfigError."""
    if not folder.is_dir():
        raise ConfigError(str(folder), "no such folder (write one with `q2c config init DIR`)")
    for name in REQUIRED:
        if not (folder / name).exists():
            raise ConfigError(str(folder / name), "required file is missing")
    checks: list[FileCheck] = []

    def run(name: str, load: Callable[[Path], str]) -> None:
        path = folder / name
        if not path.exists():
            checks.append(FileCheck(name, "absent", "not used (optional)"))
            return
        checks.append(FileCheck(name, "valid", load(path)))

    entities = load_entities(folder / "entities.yaml")
    ownership_file = folder / "ownership.yaml"
    ownership = load_ownership(ownership_file) if ownership_file.exists() else None

    def catalog(path: Path) -> str:
        return f"{len(load_catalog(path).codes)} product codes"

    def entity_rules(path: Path) -> str:
        return f"{len(entities.config.entities)} legal entities"

    def tax(path: Path) -> str:
        load_tax(path, entities)
        return "tax rates per legal entity and jurisdiction"

    def onboarding(path: Path) -> str:
        policy = load_onboarding(path)
        return "ERP first" if policy.erp_first else "billing does not wait for the ERP"

    def owners(path: Path) -> str:
        return "field ownership"

    def survivorship(path: Path) -> str:
        if ownership is None:
            raise ConfigError(str(path), "needs ownership.yaml in the same folder")
        load_survivorship(path, ownership)
        return "survivorship rules"

    def matching(path: Path) -> str:
        load_matching(path)
        return "matching thresholds"

    run("catalog.yaml", catalog)
    run("entities.yaml", entity_rules)
    run("tax.yaml", tax)
    run("onboarding.yaml", onboarding)
    run("ownership.yaml", owners)
    run("survivorship.yaml", survivorship)
    run("matching.yaml", matching)
    return checks
