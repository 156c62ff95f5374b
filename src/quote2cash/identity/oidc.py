"""Sign-in through any OpenID Connect provider (Okta, Entra ID, Keycloak, Google, the sandbox's).

The hub is a confidential client using the authorization code flow with PKCE S256, ``state`` and
``nonce``. A provider's sign-in only proves an email address: the operator is the existing,
enabled account with that email, with the roles an admin gave it. An unknown identity is
refused; a sign-in never creates an account or grants a role. The client secret is never logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote_plus, urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.jwk import KeySet

from quote2cash.engine.runtime import Runtime
from quote2cash.identity import IdentityError, NotAllowed, NotAuthenticated, Operator, accounts
from quote2cash.identity.oidc_settings import (
    OidcConfigError,
    OidcSettings,
    is_secure_url,
    load_oidc_settings,
)
from quote2cash.identity.oidc_tokens import (
    Expectations,
    IdTokenRejected,
    UnknownSigningKey,
    VerifiedIdentity,
    check_claims,
    verify_signature,
)

log = logging.getLogger(__name__)

SIGN_IN_TTL = timedelta(minutes=10)
JWKS_MIN_REFRESH_SECONDS = 5.0
RETURN_TO_LIMIT = 512


class ProviderUnavailable(IdentityError):
    """The provider could not be reached or answered something that is not OpenID Connect."""


class CodeRefused(NotAuthenticated):
    """The provider's token endpoint refused the authorization code (expired, reused, ...)."""


class NoOperatorAccount(NotAllowed):
    """The provider vouched for someone who is not an enabled operator of this hub."""


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the provider's discovery document the hub uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]
    signing_algorithms: tuple[str, ...]


@dataclass(frozen=True)
class PendingSignIn:
    """What the callback must find again (sealed in a short-lived cookie by ``oidc_state``)."""

    state: str
    nonce: str
    code_verifier: str
    expires_at: datetime
    return_to: str | None = None
    """Where the browser asked to go after sign-in (the console checks it is one of its pages)."""


class AccountRecord(Protocol):
    """What sign-in needs of an operator account (``identity.records.OperatorAccount``)."""

    @property
    def name(self) -> str: ...
    @property
    def roles(self) -> Collection[str]: ...
    @property
    def email(self) -> str | None: ...
    @property
    def disabled(self) -> bool: ...


FindByEmail = Callable[[Runtime, str], AccountRecord | None]


def operator_for(
    runtime: Runtime,
    identity: VerifiedIdentity,
    find_by_email: FindByEmail = accounts.find_by_email,
) -> Operator:
    """The enabled operator account the provider's verified email names; else NoOperatorAccount."""
    if identity.email is None:
        raise NoOperatorAccount(
            "the provider sent no email claim; ask for the 'email' scope or map one in the provider"
        )
    if identity.email_verified is False:
        raise NoOperatorAccount(f"the provider says the email {identity.email!r} is not verified")
    account = find_by_email(runtime, identity.email)
    if account is None or account.disabled:
        raise NoOperatorAccount(
            f"no enabled operator account has the email {identity.email!r}; an admin must add it"
        )
    log.info(
        "operator %r signed in through OpenID Connect (subject %r of %s)",
        account.name,
        identity.subject,
        identity.issuer,
    )
    return Operator(name=account.name, roles=frozenset(account.roles), via="oidc")


def utc_now() -> datetime:
    return datetime.now(UTC)


def oidc_client_from_env() -> OidcClient | None:
    """The relying party the ``Q2C_OIDC_*`` settings describe; None when sign-in is off.

    Raises OidcConfigError naming the missing or invalid setting.
    """
    settings = load_oidc_settings()
    return None if settings is None else OidcClient(settings)


class OidcClient:
    """The hub as a relying party of one provider; discovery and keys are cached."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        http: aiohttp.ClientSession | None = None,
        jwks_min_refresh_seconds: float = JWKS_MIN_REFRESH_SECONDS,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.jwks_min_refresh_seconds = jwks_min_refresh_seconds
        self._http = http
        self._owns_http = http is None
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        return self._http

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self._session().get(url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise ProviderUnavailable(f"the provider's {what} answered HTTP {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(
                f"the provider's {what} is unreachable or not JSON ({type(exc).__name__})"
            ) from None
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"the provider's {what} is not a JSON object")
        return body

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, checked to be the configured issuer's own."""
        if self._metadata is not None:
            return self._metadata
        issuer = self.settings.issuer.rstrip("/")
        doc = await self._get_json(f"{issuer}/.well-known/openid-configuration", "discovery")
        if str(doc.get("issuer", "")).rstrip("/") != issuer:
            raise ProviderUnavailable(
                "the discovery document names another issuer than Q2C_OIDC_ISSUER"
            )
        try:
            self._metadata = ProviderMetadata(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                token_auth_methods=tuple(
                    doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
                ),
                signing_algorithms=tuple(
                    doc.get("id_token_signing_alg_values_supported", ["RS256"])
                ),
            )
        except KeyError as exc:
            raise ProviderUnavailable(f"the discovery document lacks {exc.args[0]}") from None
        meta = self._metadata
        for endpoint in (meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri):
            if not is_secure_url(endpoint):
                self._metadata = None
                raise ProviderUnavailable(
                    "the discovery document names an endpoint that is not https://"
                )
        return meta

    async def _signing_keys(self, *, refresh: bool = False) -> KeySet:
        async with self._lock:
            stale = time.monotonic() - self._keys_fetched >= self.jwks_min_refresh_seconds
            if self._keys is None or (refresh and stale):
                meta = await self.metadata()
                doc = await self._get_json(meta.jwks_uri, "JWKS")
                try:
                    self._keys = KeySet.import_key_set(doc)  # type: ignore[arg-type]
                except (ValueError, TypeError, KeyError) as exc:
                    raise ProviderUnavailable(
                        f"the provider's JWKS is unusable ({type(exc).__name__})"
                    ) from None
                self._keys_fetched = time.monotonic()
            return self._keys

    async def begin(self, return_to: str | None = None) -> tuple[str, PendingSignIn]:
        """The provider URL to send the browser to, and what the callback must match."""
        meta = await self.metadata()
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            expires_at=self.clock() + SIGN_IN_TTL,
            return_to=return_to[:RETURN_TO_LIMIT] if return_to else None,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.settings.redirect_url,
                "scope": self.settings.scopes,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": create_s256_code_challenge(pending.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in meta.authorization_endpoint else "?"
        return f"{meta.authorization_endpoint}{separator}{query}", pending

    async def finish(self, code: str, pending: PendingSignIn) -> VerifiedIdentity:
        """Exchange the code and validate the ID token it brings against ``pending``."""
        if self.clock() >= pending.expires_at:
            raise CodeRefused("this sign-in took too long; start again")
        raw = await self.exchange_code(code, pending.code_verifier)
        return await self.verify_id_token(raw, pending.nonce)

    async def exchange_code(self, code: str, code_verifier: str) -> str:
        """The raw ID token the token endpoint returns for ``code``."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_url,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.settings.client_secret.get_secret_value()
        if "client_secret_basic" in meta.token_auth_methods:
            headers["Authorization"] = _basic_authorization(self.settings.client_id, secret)
        else:
            form.update(client_id=self.settings.client_id, client_secret=secret)
        log.debug("redeeming an authorization code at %s", meta.token_endpoint)
        try:
            async with self._session().post(
                meta.token_endpoint, data=form, headers=headers
            ) as resp:
                status = resp.status
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ProviderUnavailable(
                f"the provider's token endpoint is unreachable or not JSON ({type(exc).__name__})"
            ) from None
        if not isinstance(body, dict):
            raise ProviderUnavailable("the provider's token endpoint answered no JSON object")
        if status == 400 and body.get("error") == "invalid_grant":
            raise CodeRefused(
                "the provider refused the authorization code (expired, already used, or issued "
                "for another sign-in); start again"
            )
        if status != 200:
            error = str(body.get("error", "unknown"))[:64]
            if error == "invalid_client":
                log.error("the OpenID provider refused the hub's client id or secret")
            raise ProviderUnavailable(f"the provider's token endpoint refused: {error}")
        raw = body.get("id_token")
        if not isinstance(raw, str) or not raw:
            raise ProviderUnavailable("the provider's token answer holds no id_token")
        return raw

    async def verify_id_token(self, raw: str, nonce: str) -> VerifiedIdentity:
        """Check the ID token's signature with the provider's JWKS, then its claims."""
        meta = await self.metadata()
        try:
            claims = verify_signature(raw, await self._signing_keys(), meta.signing_algorithms)
        except UnknownSigningKey:
            keys = await self._signing_keys(refresh=True)
            claims = verify_signature(raw, keys, meta.signing_algorithms)
        return check_claims(
            claims,
            Expectations(
                issuer=meta.issuer,
                client_id=self.settings.client_id,
                nonce=nonce,
                now=self.clock(),
                leeway=timedelta(seconds=self.settings.leeway_seconds),
                algorithms=meta.signing_algorithms,
            ),
        )


def _basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 2.3.1: id and secret are form-urlencoded before the Basic encoding."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


__all__ = [
    "CodeRefused",
    "IdTokenRejected",
    "NoOperatorAccount",
    "OidcClient",
    "OidcConfigError",
    "OidcSettings",
    "PendingSignIn",
    "ProviderUnavailable",
    "VerifiedIdentity",
    "load_oidc_settings",
    "oidc_client_from_env",
    "operator_for",
]
