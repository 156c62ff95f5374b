"""Salesforce connector: the CRM role over the REST API (aiohttp, OAuth 2.0, SOQL, Collections).

``SalesforceCrm(SalesforceConfig(...))`` implements ``connectors.roles.Crm``;
the sandbox's own ``systems.salesforce_config`` points it at the local emulator.
"""

from quote2cash.connectors.salesforce.client import (
    ApiUsage,
    DailyLimitExceeded,
    QueryPage,
    SalesforceClient,
    SaveResult,
)
from quote2cash.connectors.salesforce.config import AuthFlow, SalesforceConfig
from quote2cash.connectors.salesforce.connector import SalesforceCrm

__all__ = [
    "ApiUsage",
    "AuthFlow",
    "DailyLimitExceeded",
    "QueryPage",
    "SalesforceClient",
    "SalesforceConfig",
    "SalesforceCrm",
    "SaveResult",
]
