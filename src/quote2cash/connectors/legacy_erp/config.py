"""How the hub reaches the legacy ERP: its SOAP endpoint, its drop folder and the entity map.

A legal entity is named by the hub's entity code (``US``, ``DE``); the map gives the ERP's own
entity code and its currency. Built from a mapping (``systems.yaml``: ``kind: legacy_erp``) or
for a running sandbox (``LegacyErpConfig.for_sandbox``). The password is a ``SecretStr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from quote2cash.canonical.currency import CurrencyCode

__all__ = ["SANDBOX_ENTITIES", "LegacyErpConfig", "LegacyErpConfigError", "LegacyErpEntity"]


class LegacyErpConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and field, no secret."""


class LegacyErpEntity(BaseModel):
    """One legal entity as the legacy ERP books it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: Annotated[str, Field(pattern=r"^[A-Z0-9_-]{1,32}$")]
    currency: CurrencyCode


SANDBOX_ENTITIES: Final = {
    "US": LegacyErpEntity(code="US", currency="USD"),
    "DE": LegacyErpEntity(code="DE", currency="EUR"),
}
"""Hub entity code -> the sandbox legacy ERP's entity (US in USD, DE in EUR)."""


class LegacyErpConfig(BaseModel):
    """Where the ERP listens, who the hub is, where files go and how long to wait for a batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: Annotated[str, Field(pattern=r"^https?://")]
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr
    drop_folder: Path
    legal_entities: dict[Annotated[str, Field(pattern=r"^[A-Z0-9_-]{1,32}$")], LegacyErpEntity]
    timeout: Annotated[float, Field(gt=0)] = 30.0
    max_concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    page_size: Annotated[int, Field(ge=1, le=500)] = 100
    ack_wait_seconds: Annotated[float, Field(ge=0)] = 5.0
    """How long a call waits for the batch to answer its file before it is a TransientError."""
    ack_poll_seconds: Annotated[float, Field(gt=0)] = 0.05

    @model_validator(mode="after")
    def _has_entities(self) -> Self:
        if not self.legal_entities:
            raise ValueError("legal_entities must map at least one entity code")
        return self

    @property
    def wsdl_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/?wsdl"

    @classmethod
    def for_sandbox(
        cls, base_url: str, username: str, password: str, drop_folder: str | Path, **options: Any
    ) -> LegacyErpConfig:
        """The config for a running sandbox legacy ERP (its batch runs often: wait for it)."""
        options.setdefault("ack_wait_seconds", 30.0)
        return cls(
            base_url=base_url,
            username=username,
            password=SecretStr(password),
            drop_folder=Path(drop_folder),
            legal_entities=dict(SANDBOX_ENTITIES),
            **options,
        )

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, source: str = "configuration"
    ) -> LegacyErpConfig:
        """Validate a plain mapping; errors name ``source`` and the field, never the password."""
        values = dict(data)
        values.setdefault(
            "legal_entities", {k: v.model_dump() for k, v in SANDBOX_ENTITIES.items()}
        )
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False)
            )
            raise LegacyErpConfigError(
                f"invalid legacy ERP configuration in {source}: {problems}"
            ) from None
