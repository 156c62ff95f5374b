"""The provider's users and registered clients, read from 0600 JSON files holding only hashes.

Passwords and client secrets are stored as salted scrypt hashes, so the provider's folder never
holds a usable credential; the plain values live only in the sandbox state file (0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USERS_FILE = "users.json"
CLIENTS_FILE = "clients.json"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(value: str) -> str:
    """A salted scrypt hash of ``value`` as ``scrypt$<salt>$<digest>`` (base64url)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(value.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    salt_text = base64.urlsafe_b64encode(salt).decode()
    return f"scrypt${salt_text}${base64.urlsafe_b64encode(digest).decode()}"


def secret_matches(value: str, stored: str) -> bool:
    """Whether ``value`` hashes to ``stored``; constant time in the digest comparison."""
    try:
        scheme, salt_text, digest_text = stored.split("$")
        salt = base64.urlsafe_b64decode(salt_text)
        expected = base64.urlsafe_b64decode(digest_text)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(value.encode("utf-8"), salt=salt, dklen=len(expected), **_SCRYPT)
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class SandboxUser:
    """A person who can sign in at the provider; ``subject`` is the stable ``sub`` claim."""

    username: str
    password_hash: str
    email: str
    name: str
    subject: str
    email_verified: bool = True


@dataclass(frozen=True)
class RegisteredClient:
    """A relying party: its id, the hash of its secret and its exact redirect URIs."""

    client_id: str
    secret_hash: str
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Directory:
    """Everything the provider knows about who may sign in and which clients may ask."""

    users: dict[str, SandboxUser]
    clients: dict[str, RegisteredClient]

    def user_by_subject(self, subject: str) -> SandboxUser | None:
        return next((u for u in self.users.values() if u.subject == subject), None)


def write_private_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a file created 0600 (replacing any earlier one)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def save_directory(folder: Path, directory: Directory) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_json(
        folder / USERS_FILE,
        [
            {
                "username": u.username,
                "password_hash": u.password_hash,
                "email": u.email,
                "name": u.name,
                "subject": u.subject,
                "email_verified": u.email_verified,
            }
            for u in directory.users.values()
        ],
    )
    write_private_json(
        folder / CLIENTS_FILE,
        [
            {
                "client_id": c.client_id,
                "secret_hash": c.secret_hash,
                "redirect_uris": list(c.redirect_uris),
            }
            for c in directory.clients.values()
        ],
    )


def load_directory(folder: Path) -> Directory:
    """Read the users and clients files; a missing or malformed file names itself."""
    try:
        users_raw = json.loads((folder / USERS_FILE).read_text(encoding="utf-8"))
        clients_raw = json.loads((folder / CLIENTS_FILE).read_text(encoding="utf-8"))
        users = {
            u["username"]: SandboxUser(
                username=u["username"],
                password_hash=u["password_hash"],
                email=u["email"],
                name=u["name"],
                subject=u["subject"],
                email_verified=bool(u.get("email_verified", True)),
            )
            for u in users_raw
        }
        clients = {
            c["client_id"]: RegisteredClient(
                client_id=c["client_id"],
                secret_hash=c["secret_hash"],
                redirect_uris=tuple(c["redirect_uris"]),
            )
            for c in clients_raw
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"OpenID provider directory in {folder} is unreadable: {exc}") from exc
    return Directory(users=users, clients=clients)
