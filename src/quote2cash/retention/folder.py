"""Where archive files live: ``Q2C_ARCHIVE_DIR``, else beside the SQLite file, else
``.q2c/archive``; the folder is the owner's alone (0700), its files 0600."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from quote2cash.store.db import normalise_url


def archive_dir_for(database_url: str, configured: str | None = None) -> Path:
    if configured:
        return Path(configured)
    url = make_url(normalise_url(database_url))
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        store = Path(database)
        return store.with_name(store.stem + "-archive")
    return Path(".q2c") / "archive"


def ensure_private_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) if missing; either way leave it 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder
