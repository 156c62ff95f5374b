"""Tryton ERP connector: the ERP role (``TrytonErp``), its configuration and JSON-RPC client."""

from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonModel,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
    TrytonWizard,
    WizardStep,
)
from quote2cash.connectors.tryton.config import (
    SANDBOX_ENTITY_CODES,
    TrytonConfig,
    TrytonConfigError,
    TrytonLegalEntity,
)
from quote2cash.connectors.tryton.connector import POSTING_WARNINGS, TrytonErp

__all__ = [
    "POSTING_WARNINGS",
    "SANDBOX_ENTITY_CODES",
    "TrytonClient",
    "TrytonConfig",
    "TrytonConfigError",
    "TrytonErp",
    "TrytonLegalEntity",
    "TrytonModel",
    "TrytonStateConflict",
    "TrytonUserError",
    "TrytonWarning",
    "TrytonWizard",
    "WizardStep",
]
