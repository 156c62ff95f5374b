"""How the hub reaches one Tryton database and which company books each of the group's entities.

A legal entity is named by the hub's entity code (``US``, ``DE``); the map gives the Tryton company
and the accounts, journals, tax and payment method its postings use. Built from a YAML file
(``TrytonConfig.from_yaml``) or ``Q2C_ERP_*`` environment variables (``TrytonConfig.from_env``);
the sandbox builds its own (``sandbox.systems.tryton_config``). The password is a ``SecretStr``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from quote2cash.canonical.currency import CurrencyCode

__all__ = ["TrytonConfig", "TrytonConfigError", "TrytonLegalEntity"]

RecordId = Annotated[int, Field(gt=0, strict=False)]


class TrytonConfigError(ValueError):
    """A Tryton configuration that cannot be used; the message names the source and the field."""


class TrytonLegalEntity(BaseModel):
    """One legal entity of the group as Tryton books it: its company and posting defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company: RecordId
    currency: CurrencyCode
    receivable_account: RecordId
    revenue_account: RecordId
    deferred_revenue_account: RecordId | None = None
    sales_tax: RecordId | None = None
    taxes: dict[Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,39}$")], RecordId] = Field(
        default_factory=dict
    )
    """The group's tax code (``DE-VAT-19``) -> the ``account.tax`` billing's rate posts to."""
    revenue_journal: RecordId
    payment_method: RecordId


class TrytonConfig(BaseModel):
    """Where the ERP is, who the hub logs in as, and the legal-entity map; secrets stay hidden."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: Annotated[str, Field(pattern=r"^https?://")]
    database: Annotated[str, Field(min_length=1)]
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    legal_entities: dict[Annotated[str, Field(pattern=r"^[A-Z0-9_-]{1,32}$")], TrytonLegalEntity]
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    timeout: Annotated[float, Field(gt=0)] = 60.0
    connect_timeout: Annotated[float, Field(gt=0)] = 5.0
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 200

    @model_validator(mode="after")
    def _has_entities(self) -> Self:
        if not self.legal_entities:
            raise ValueError("legal_entities must map at least one entity code to a company")
        return self

    def entity(self, code: str) -> TrytonLegalEntity | None:
        return self.legal_entities.get(code)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "configuration"
    ) -> TrytonConfig:
        """Validate a plain mapping; errors name ``source`` and the field, never the password."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False)
            )
            raise TrytonConfigError(
                f"invalid Tryton configuration in {source}: {problems}"
            ) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrytonConfig:
        """Read a YAML file with the fields of this class; ``password_env`` may name an env var."""
        import yaml

        source = Path(path)
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TrytonConfigError(f"cannot read Tryton configuration {source}: {exc}") from None
        if not isinstance(data, dict):
            raise TrytonConfigError(f"{source}: expected a mapping at the top level")
        password_env = data.pop("password_env", None)
        if password_env is not None:
            if password_env not in os.environ:
                raise TrytonConfigError(
                    f"{source}: password_env names {password_env!r}, which is not set"
                )
            data["password"] = os.environ[password_env]
        return cls.from_mapping(data, source=str(source))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrytonConfig:
        """``Q2C_ERP_BASE_URL``, ``_DATABASE``, ``_USERNAME``, ``_PASSWORD``, ``_LEGAL_ENTITIES``.

        ``Q2C_ERP_LEGAL_ENTITIES`` is JSON (``{"US": {"company": 1, ...}}``); optional
        ``Q2C_ERP_MAX_CONCURRENCY``, ``_TIMEOUT``, ``_PAGE_SIZE``.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in ("base_url", "database", "username", "password"):
            value = env.get(f"Q2C_ERP_{name.upper()}")
            if value is not None:
                data[name] = value
        for name in ("max_concurrency", "timeout", "connect_timeout", "page_size"):
            value = env.get(f"Q2C_ERP_{name.upper()}")
            if value is not None:
                data[name] = value
        raw = env.get("Q2C_ERP_LEGAL_ENTITIES")
        if raw is not None:
            try:
                data["legal_entities"] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise TrytonConfigError(
                    f"Q2C_ERP_LEGAL_ENTITIES is not valid JSON: {exc.msg}"
                ) from None
        return cls.from_mapping(data, source="Q2C_ERP_* environment")
