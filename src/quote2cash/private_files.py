"""Files holding the hub's data (store, logs, sandbox state, demo output) are readable by their
owner only: created 0600 from the first byte, and put back to 0600 if they already existed."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO, Any

PRIVATE_MODE = 0o600
PRIVATE_UMASK = 0o077
"""The ``q2c`` process's umask: whatever it or its children create is the owner's alone."""


def restrict_process_umask() -> None:
    """From now on this process (and every child it starts) creates files 0600, folders 0700."""
    os.umask(PRIVATE_UMASK)


def ensure_private(path: str | Path) -> None:
    """Create ``path`` empty if it is missing; either way leave it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE)
    os.close(fd)
    os.chmod(path, PRIVATE_MODE)


def open_private(path: str | Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, the file 0600 before anything is written to it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_MODE)
    os.chmod(path, PRIVATE_MODE)
    return os.fdopen(fd, mode, **kwargs)


class PrivateFileHandler(logging.FileHandler):
    """A log file handler whose file is 0600."""

    def _open(self) -> Any:
        return open_private(self.baseFilename, self.mode, encoding=self.encoding)
