"""Connector configurations for the sandbox's systems: the sandbox builds them, never the reverse.

Connectors stay ignorant of the sandbox (DESIGN §1); these factories turn a running sandbox's
endpoints and defaults into the ordinary config classes any deployment would use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from quote2cash.connectors.registry import Systems, SystemsConfigError
from quote2cash.connectors.salesforce import AuthFlow, SalesforceConfig, SalesforceCrm
from quote2cash.connectors.stripe import StripeBilling, StripeConfig
from quote2cash.connectors.tryton import TrytonConfig, TrytonErp, TrytonLegalEntity
from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
)
from quote2cash.sandbox.tryton import TrytonEndpoint, load_endpoint

__all__ = ["SANDBOX_ENTITY_CODES", "salesforce_config", "systems_from_sandbox", "tryton_config"]

SANDBOX_ENTITY_CODES: dict[str, str] = {"US": "inc", "DE": "gmbh"}
"""Hub entity code -> the sandbox setup's company key (Q2C Inc. in USD, Q2C GmbH in EUR)."""


def tryton_config(
    endpoint: TrytonEndpoint,
    *,
    entity_codes: Mapping[str, str] | None = None,
    **options: Any,
) -> TrytonConfig:
    """The config for a running sandbox ERP: ``US`` -> Q2C Inc. (USD), ``DE`` -> Q2C GmbH (EUR).

    Concurrency is 1 on SQLite (it cannot take parallel writes) unless ``options`` says else.
    """
    codes = dict(entity_codes or SANDBOX_ENTITY_CODES)
    entities: dict[str, TrytonLegalEntity] = {}
    for code, key in codes.items():
        company = endpoint.setup.companies[key]
        entities[code] = TrytonLegalEntity(
            company=company.company,
            currency=company.currency,
            receivable_account=company.receivable_account,
            revenue_account=company.revenue_account,
            deferred_revenue_account=company.deferred_revenue_account,
            sales_tax=company.sales_tax,
            taxes=company.taxes,
            revenue_journal=company.revenue_journal,
            payment_method=company.payment_method,
        )
    options.setdefault("max_concurrency", 1 if endpoint.backend == "sqlite" else 4)
    return TrytonConfig(
        base_url=endpoint.base_url,
        database=endpoint.database,
        username=endpoint.username,
        password=SecretStr(endpoint.password),
        legal_entities=entities,
        **options,
    )


def salesforce_config(
    instance_url: str,
    ca_path: str | Path,
    *,
    auth_flow: AuthFlow = AuthFlow.CLIENT_CREDENTIALS,
    **overrides: object,
) -> SalesforceConfig:
    """Settings for the local Salesforce emulator with its default connected app and user."""
    values: dict[str, object] = {
        "instance_url": instance_url,
        "ca_file": Path(ca_path),
        "auth_flow": auth_flow,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME,
        "password": DEFAULT_PASSWORD,
        "connect_timeout": 5.0,
        "request_timeout": 30.0,
    }
    values.update(overrides)
    return SalesforceConfig.model_validate(values)


def systems_from_sandbox(workdir: str | Path = Path(".q2c") / "sandbox") -> Systems:
    """Connectors for the systems ``q2c sandbox up`` started in ``workdir``."""
    from quote2cash.sandbox.orchestrator import read_state

    state = read_state(Path(workdir))
    if state is None:
        raise SystemsConfigError(f"no sandbox in {workdir}; start one with `q2c sandbox up`")
    systems = Systems()
    if "salesforce" in state:
        sf = state["salesforce"]
        systems.crm = SalesforceCrm(salesforce_config(sf["instance_url"], sf["ca_file"]))
    if "stripe" in state:
        st = state["stripe"]
        systems.billing = StripeBilling(
            StripeConfig.for_sandbox(st["base_url"], api_key=st["api_key"])
        )
    if "legacy_erp" in state:
        from quote2cash.connectors.legacy_erp import LegacyErp, LegacyErpConfig

        legacy = state["legacy_erp"]
        systems.erp = LegacyErp(
            LegacyErpConfig.for_sandbox(
                legacy["url"], legacy["username"], legacy["password"], legacy["drop_folder"]
            )
        )
    elif "tryton" in state:
        endpoint = load_endpoint(state["tryton"]["workdir"])
        if endpoint is not None:
            systems.erp = TrytonErp(tryton_config(endpoint))
    return systems
