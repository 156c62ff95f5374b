"""The provider's RS256 signing key: generated once, kept as a 0600 PEM in its folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from joserfc.jwk import RSAKey

KEY_FILE = "signing-key.pem"


def _kid(key: RSAKey) -> str:
    public = key.as_dict(private=False)
    return hashlib.sha256(f"{public['n']}.{public['e']}".encode()).hexdigest()[:16]


def load_or_create_signing_key(folder: Path) -> RSAKey:
    """The key in ``folder`` (created 0600 on first use); its ``kid`` is a public-key digest."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / KEY_FILE
    if path.exists():
        key = RSAKey.import_key(path.read_bytes())
    else:
        key = RSAKey.generate_key(2048, private=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.as_pem(private=True))
    return RSAKey.import_key(
        key.as_dict(private=True), parameters={"kid": _kid(key), "use": "sig", "alg": "RS256"}
    )
