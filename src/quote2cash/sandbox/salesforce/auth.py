"""OAuth2 token endpoint semantics and session bookkeeping.

Supports the username-password, client-credentials and JWT bearer (RS256) flows;
failures answer with Salesforce's ``{"error", "error_description"}`` bodies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import SalesforceError
from .values import Clock

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    """A token request refusal: HTTP status plus the OAuth error code and description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass
class Session:
    token: str
    username: str
    client_id: str
    expires_at: datetime


def invalid_session() -> SalesforceError:
    return SalesforceError(401, "INVALID_SESSION_ID", "Session expired or invalid")


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def load_rsa_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """A connected app's certificate (or bare public key) in PEM, as uploaded to Salesforce."""
    data = pem.encode() if isinstance(pem, str) else pem
    key: Any
    if b"CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("JWT bearer verification needs an RSA public key")
    return key


class Authenticator:
    """Validates credentials, issues access tokens and checks them on every API call."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.clients: dict[str, str] = {}
        self.users: dict[str, str] = {}
        self.jwt_keys: dict[str, rsa.RSAPublicKey] = {}
        self.ttl = timedelta(hours=2)

    def check(self, authorization: str | None) -> Session:
        """The live session behind a Bearer header; activity extends it (inactivity timeout)."""
        if not authorization or not authorization.startswith(("Bearer ", "OAuth ")):
            raise invalid_session()
        session = self.sessions.get(authorization.split(" ", 1)[1].strip())
        now = self.clock.now()
        if session is None or now >= session.expires_at:
            raise invalid_session()
        session.expires_at = now + self.ttl
        return session

    def expire_all(self) -> None:
        self.sessions.clear()

    def revoke(self, token: str) -> None:
        self.sessions.pop(token, None)

    def token(
        self, form: Mapping[str, str], org_id: str, user_id: str, instance_url: str
    ) -> dict[str, Any]:
        """Answer one token request; raises OAuthError like Salesforce's token endpoint."""
        grant = form.get("grant_type", "")
        if grant == "password":
            client_id = self._client(form)
            username = form.get("username", "")
            expected = self.users.get(username)
            if expected is None or not hmac.compare_digest(expected, form.get("password", "")):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant == "client_credentials":
            client_id = self._client(form)
            username = next(iter(self.users), "")
        elif grant == JWT_BEARER:
            client_id, username = self._jwt(form.get("assertion", ""), instance_url)
        elif not grant:
            raise OAuthError("invalid_request", "grant type not supported")
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        now = self.clock.now()
        self.sessions = {k: v for k, v in self.sessions.items() if v.expires_at > now}
        token = f"{org_id[:15]}!{secrets.token_urlsafe(72)}"
        self.sessions[token] = Session(token, username, client_id, now + self.ttl)
        identity = f"{instance_url}/id/{org_id}/{user_id}"
        issued_at = str(int(now.timestamp() * 1000))
        secret = self.clients.get(client_id, "")
        signature = base64.b64encode(
            hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": "api",
        }

    def _client(self, form: Mapping[str, str]) -> str:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        authorization = form.get("__authorization__", "")
        if authorization.startswith("Basic ") and not client_id:
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "invalid client credentials") from None
            client_id, _, secret = decoded.partition(":")
        if client_id not in self.clients:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(self.clients[client_id], secret):
            raise OAuthError("invalid_client", "invalid client credentials")
        return client_id

    def _jwt(self, assertion: str, instance_url: str) -> tuple[str, str]:
        parts = assertion.split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except (ValueError, binascii.Error):
            raise OAuthError("invalid_grant", "invalid assertion") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise OAuthError("invalid_grant", "invalid assertion")
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "invalid assertion")
        client_id, username = claims.get("iss"), claims.get("sub")
        if not isinstance(client_id, str) or client_id not in self.clients:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in (*JWT_AUDIENCES, instance_url) for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock.now().timestamp():
            raise OAuthError("invalid_grant", "expired authorization code")
        if not isinstance(username, str) or username not in self.users:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        key = self.jwt_keys.get(client_id)
        if key is None:
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            key.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise OAuthError("invalid_grant", "invalid assertion") from None
        return client_id, username
