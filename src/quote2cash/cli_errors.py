"""What a user reads when a command fails: one line saying what went wrong and what to do.

``q2c`` shows tracebacks only with ``--debug`` (or ``Q2C_DEBUG=1``); messages are redacted.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from quote2cash.observability.redact import redact

SANDBOX_HINT = "is it running? (`q2c sandbox status`; start it with `q2c sandbox up`)"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refused(exc: BaseException) -> str | None:
    """The address a refused or unreachable connection was aimed at, if that is the failure."""
    for link in _chain(exc):
        name = type(link).__name__
        if name in ("ClientConnectorError", "ClientConnectionError", "APIConnectionError"):
            return _first_line(link)
        if isinstance(link, ConnectionRefusedError) or (
            isinstance(link, OSError) and link.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH)
        ):
            return _first_line(link)
    return None


def store_failure(exc: BaseException, url: str | None = None) -> str:
    """The store could not be opened or used: why, and where its URL is set."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    where = f" {url}" if url else ""
    return redact(
        f"cannot use the store{where}: {_first_line(cause)} "
        "(check --db or Q2C_DATABASE_URL; create the store with `q2c init`)"
    )


def settings_failure(exc: BaseException) -> str | None:
    """A ``Q2C_*`` setting that does not validate: which variable, and what was expected (the
    value itself is not repeated: it may be a secret)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError) or exc.title != "Settings":
        return None
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"Q2C_{field.upper()}: {message}" if field else message)
    return "invalid setting: " + "; ".join(problems) + " (fix the environment variable)"


def describe_failure(exc: BaseException) -> str:
    """One line for ``exc``: what failed, and the command or setting that fixes it."""
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

    from quote2cash.connectors.registry import SystemsConfigError
    from quote2cash.engine.control import ControlError
    from quote2cash.engine.errors import IntegrationError
    from quote2cash.identity import IdentityError
    from quote2cash.masterdata import ConfigError

    if (setting := settings_failure(exc)) is not None:
        message = setting
    elif isinstance(exc, ConfigError):
        message = f"{exc} (fix the file, then check the folder with `q2c config check DIR`)"
    elif isinstance(exc, SystemsConfigError | ControlError | IdentityError):
        message = str(exc)
    elif isinstance(exc, DBAPIError | NoSuchModuleError | SQLAlchemyError):
        message = store_failure(exc)
    elif (address := _refused(exc)) is not None:
        message = f"cannot connect to a system: {address}; {SANDBOX_HINT}"
    elif isinstance(exc, IntegrationError):
        message = f"a system call failed: {_first_line(exc)}"
    elif isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = (
            f"unexpected {type(exc).__name__}: {_first_line(exc)} "
            "(run again with --debug for the traceback)"
        )
    return redact(message)
