"""The audit key: the secret that signs the audit chain and its checkpoints, held outside the store.

Found in ``Q2C_AUDIT_KEY`` (an environment secret), else in ``Q2C_AUDIT_KEY_FILE``, else in the
default file next to the store (``q2c init`` creates it, mode 0600). The key itself is never
logged or shown; only its id (the first 8 hex digits of its SHA-256) is.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from quote2cash.settings import Settings

KEY_BYTES = 32


class AuditKeyError(Exception):
    """No usable audit key; the message says where one was looked for (never the key)."""


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key; ``key_id`` names it in the log without revealing it."""

    secret: bytes = field(repr=False)
    source: str = "environment"

    @cached_property
    def key_id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:8]

    @cached_property
    def _pads(self) -> tuple[hashlib._Hash, hashlib._Hash]:
        """HMAC's inner and outer SHA-256 states after the padded key (RFC 2104), hashed once:
        each signature then copies them instead of hashing the key's two blocks again."""
        block = self.secret if len(self.secret) <= 64 else hashlib.sha256(self.secret).digest()
        block = block.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        return inner, outer

    def sign(self, message: str) -> str:
        return self.sign_bytes(message.encode())

    def sign_bytes(self, message: bytes) -> str:
        """``hmac.new(secret, message, sha256).hexdigest()``, from the precomputed key states."""
        inner, outer = self._pads
        h = inner.copy()
        h.update(message)
        o = outer.copy()
        o.update(h.digest())
        return o.hexdigest()

    def holds(self, message: str, mac: str) -> bool:
        return hmac.compare_digest(self.sign(message), mac)

    @classmethod
    def generate(cls, source: str = "generated") -> AuditKey:
        return cls(secrets.token_bytes(KEY_BYTES), source)


def _store_file(url: str) -> Path | None:
    """The SQLite file of ``url``; None for in-memory or server stores."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def is_memory_store(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def default_key_file(url: str) -> Path:
    """Next to a SQLite store; in the current folder for a server store."""
    store = _store_file(url)
    return store.with_name(store.name + ".audit-key") if store else Path("q2c-audit.key")


def read_key_file(path: Path) -> AuditKey:
    """Read a key file, refusing one that others than its owner may read."""
    try:
        mode = path.stat().st_mode
        raw = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(
            f"audit key file {path}: cannot read it ({type(exc).__name__})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(
            f"audit key file {path}: mode {stat.S_IMODE(mode):o} lets others read it; "
            f"run `chmod 600 {path}`"
        )
    try:
        secret = bytes.fromhex(raw)
    except ValueError:
        raise AuditKeyError(f"audit key file {path}: expected hex digits") from None
    if len(secret) < 16:
        raise AuditKeyError(f"audit key file {path}: expected at least 32 hex digits")
    return AuditKey(secret, str(path))


def write_key_file(path: Path) -> AuditKey:
    """Create a new random key file, mode 0600 from its first byte; never overwrites one."""
    key = AuditKey.generate(str(path.resolve()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key.secret.hex() + "\n")
    return key


def configured_key(url: str, settings: Settings | None = None) -> AuditKey | None:
    """The key the configuration names, or the default file if it exists; None if neither."""
    settings = settings or Settings()
    if settings.audit_key is not None:
        value = settings.audit_key.get_secret_value()
        if len(value) < 16:
            raise AuditKeyError("Q2C_AUDIT_KEY: expected at least 16 characters")
        return AuditKey(value.encode(), "Q2C_AUDIT_KEY")
    if settings.audit_key_file:
        return read_key_file(Path(settings.audit_key_file))
    path = default_key_file(url)
    return read_key_file(path) if path.exists() else None


def ensure_key(url: str, settings: Settings | None = None) -> tuple[AuditKey, bool]:
    """The configured key, or a new default key file (in-memory stores: a key for this process).

    Returns the key and whether a file was created now.
    """
    key = configured_key(url, settings)
    if key is not None:
        return key, False
    if is_memory_store(url):
        return AuditKey.generate("in-memory store"), False
    return write_key_file(default_key_file(url)), True


def require_key(url: str, settings: Settings | None = None) -> AuditKey:
    key = configured_key(url, settings)
    if key is None:
        if is_memory_store(url):
            return AuditKey.generate("in-memory store")
        raise AuditKeyError(
            f"no audit key: set Q2C_AUDIT_KEY or Q2C_AUDIT_KEY_FILE, or run `q2c init` "
            f"to create {default_key_file(url)}"
        )
    return key


_BOUND: weakref.WeakKeyDictionary[Engine, AuditKey] = weakref.WeakKeyDictionary()


def bind_key(engine: Engine, key: AuditKey) -> None:
    """Every audit entry written through ``engine`` is signed with ``key``."""
    _BOUND[engine] = key


def key_for(engine: Engine) -> AuditKey:
    """The key bound to ``engine``; else the configured one, bound from now on."""
    key = _BOUND.get(engine)
    if key is None:
        key = require_key(engine.url.render_as_string(hide_password=False))
        _BOUND[engine] = key
    return key
