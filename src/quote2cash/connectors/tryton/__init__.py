"""Tryton ERP connector: JSON-RPC client (``client``); the ERP role implementation builds on it."""

from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonModel,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
    TrytonWizard,
    WizardStep,
)

__all__ = [
    "TrytonClient",
    "TrytonModel",
    "TrytonStateConflict",
    "TrytonUserError",
    "TrytonWarning",
    "TrytonWizard",
    "WizardStep",
]
