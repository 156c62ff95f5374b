"""Legacy ERP connector: the ERP and Ledger roles over SOAP (zeep) and a batch drop folder."""

from quote2cash.connectors.legacy_erp.client import LegacyErpClient, LegacyFault
from quote2cash.connectors.legacy_erp.config import (
    SANDBOX_ENTITIES,
    LegacyErpConfig,
    LegacyErpConfigError,
    LegacyErpEntity,
)
from quote2cash.connectors.legacy_erp.connector import LegacyErp
from quote2cash.connectors.legacy_erp.files import DropFolder

__all__ = [
    "SANDBOX_ENTITIES",
    "DropFolder",
    "LegacyErp",
    "LegacyErpClient",
    "LegacyErpConfig",
    "LegacyErpConfigError",
    "LegacyErpEntity",
    "LegacyFault",
]
