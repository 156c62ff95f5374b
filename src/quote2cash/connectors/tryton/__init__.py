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
    TrytonConfig,
    TrytonConfigError,
    TrytonLegalEntity,
)
from quote2cash.connectors.tryton.connector import POSTING_WARNINGS, TrytonErp

__all__ = [
    "POSTING_WARNINGS",
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
