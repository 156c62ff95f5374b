"""A real Tryton ERP for the sandbox and the tests, run as a separate process (Tryton is GPL).

``TrytonSandbox`` builds (once, cached) a template database holding the sandbox's two legal
entities and item master, clones it per run and serves it on loopback.
"""

from quote2cash.sandbox.tryton.commands import (
    prune_templates,
    sandbox_down,
    sandbox_status,
    sandbox_up,
)
from quote2cash.sandbox.tryton.launcher import (
    DEFAULT_PG_DSN,
    MODULES,
    Backend,
    TemplateInfo,
    TrytonEndpoint,
    TrytonSandbox,
    TrytonSandboxError,
    default_cache_dir,
    load_endpoint,
    read_state,
    server_alive,
    stop_detached,
)
from quote2cash.sandbox.tryton.setup_data import (
    API_USER_LOGIN,
    ITEM_MASTER,
    LEGAL_ENTITIES,
    CompanySetup,
    SandboxSetup,
)

__all__ = [
    "API_USER_LOGIN",
    "DEFAULT_PG_DSN",
    "ITEM_MASTER",
    "LEGAL_ENTITIES",
    "MODULES",
    "Backend",
    "CompanySetup",
    "SandboxSetup",
    "TemplateInfo",
    "TrytonEndpoint",
    "TrytonSandbox",
    "TrytonSandboxError",
    "default_cache_dir",
    "load_endpoint",
    "prune_templates",
    "read_state",
    "sandbox_down",
    "sandbox_status",
    "sandbox_up",
    "server_alive",
    "stop_detached",
]
