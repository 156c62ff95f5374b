"""A sign-in in progress carried by the browser: state, nonce and PKCE verifier, sealed.

Sealed with AES-GCM under a key derived from the client secret, so every hub process of a
deployment can open it and nobody else can read or alter it; it expires with the sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quote2cash.identity import NotAuthenticated
from quote2cash.identity.oidc import PendingSignIn

_LABEL = b"quote2cash oidc sign-in state v1"


class SignInStateInvalid(NotAuthenticated):
    """The browser's sign-in state is missing, altered, from another deployment or expired."""


def _key(client_secret: str) -> bytes:
    return hmac.new(client_secret.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def seal_pending(pending: PendingSignIn, client_secret: str) -> str:
    """An opaque, URL-safe cookie value holding ``pending``."""
    payload = json.dumps(
        {
            "s": pending.state,
            "n": pending.nonce,
            "v": pending.code_verifier,
            "e": int(pending.expires_at.timestamp()),
            "r": pending.return_to,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    iv = secrets.token_bytes(12)
    sealed = AESGCM(_key(client_secret)).encrypt(iv, payload, _LABEL)
    return base64.urlsafe_b64encode(iv + sealed).decode("ascii").rstrip("=")


def open_pending(value: str, client_secret: str, now: datetime) -> PendingSignIn:
    """The sign-in ``value`` seals; SignInStateInvalid if altered, foreign or expired."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        payload = AESGCM(_key(client_secret)).decrypt(raw[:12], raw[12:], _LABEL)
        data = json.loads(payload)
        pending = PendingSignIn(
            state=str(data["s"]),
            nonce=str(data["n"]),
            code_verifier=str(data["v"]),
            expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
            return_to=None if data.get("r") is None else str(data["r"]),
        )
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise SignInStateInvalid(
            "the sign-in state in this browser is not valid; start again"
        ) from None
    if now >= pending.expires_at:
        raise SignInStateInvalid("the sign-in took too long and expired; start again")
    return pending
