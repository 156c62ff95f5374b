"""Prepare a sandbox provider's folder: a client for the hub and two users with new secrets.

The plain client secret and passwords are returned once, for the sandbox state file (0600);
the folder keeps only their hashes. Running it again issues fresh credentials.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from .directory import Directory, RegisteredClient, SandboxUser, hash_secret, save_directory

CLIENT_ID = "q2c-console"
EMAIL_DOMAIN = "sandbox.q2c.test"
SANDBOX_PEOPLE = (
    ("alice", "Alice Operator"),
    ("bob", "Bob Finance"),
)


def default_redirect_uris(port: int = 8080) -> list[str]:
    """The console callback of ``q2c serve`` on its default port, by address and by name."""
    return [
        f"http://127.0.0.1:{port}/console/oidc/callback",
        f"http://localhost:{port}/console/oidc/callback",
    ]


def prepare_provider(folder: Path, redirect_uris: list[str]) -> dict[str, Any]:
    """Write the users and clients files; returns the credentials for the state file."""
    client_secret = secrets.token_urlsafe(32)
    users: dict[str, SandboxUser] = {}
    described: list[dict[str, str]] = []
    for username, name in SANDBOX_PEOPLE:
        password = secrets.token_urlsafe(12)
        email = f"{username}@{EMAIL_DOMAIN}"
        users[username] = SandboxUser(
            username=username,
            password_hash=hash_secret(password),
            email=email,
            name=name,
            subject=secrets.token_hex(12),
        )
        described.append({"username": username, "password": password, "email": email})
    save_directory(
        folder,
        Directory(
            users=users,
            clients={
                CLIENT_ID: RegisteredClient(
                    client_id=CLIENT_ID,
                    secret_hash=hash_secret(client_secret),
                    redirect_uris=tuple(redirect_uris),
                )
            },
        ),
    )
    return {
        "client_id": CLIENT_ID,
        "client_secret": client_secret,
        "redirect_uris": list(redirect_uris),
        "users": described,
    }
