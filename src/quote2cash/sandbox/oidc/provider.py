"""The provider's HTTP endpoints: discovery, JWKS, authorize (+ login form), token, userinfo.

Guaranteed: a code is single-use (a second use also revokes what the first issued), expires
after ``code_ttl``, is bound to its client, exact redirect URI and PKCE S256 challenge; ID tokens
are RS256-signed and carry ``iss``, ``sub``, ``aud``, ``exp``, ``iat`` and the request's nonce.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote_plus, urlencode

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey

from .directory import Directory, RegisteredClient, SandboxUser, load_directory, secret_matches
from .keys import load_or_create_signing_key
from .pages import error_page, login_page

log = logging.getLogger(__name__)

SCOPES = ("openid", "email", "profile")
CLAIMS = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified")
PENDING_TTL = timedelta(minutes=10)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated ``/authorize`` request waiting for the user to sign in."""

    client_id: str
    redirect_uri: str
    state: str | None
    nonce: str | None
    code_challenge: str
    scope: tuple[str, ...]
    expires_at: datetime


@dataclass
class CodeGrant:
    """What an authorization code stands for; ``used`` stays set until it expires."""

    request: AuthorizationRequest
    subject: str
    auth_time: datetime
    expires_at: datetime
    used: bool = False
    access_tokens: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AccessGrant:
    subject: str
    client_id: str
    expires_at: datetime


class TokenRequestError(Exception):
    """An OAuth error answer of the token endpoint (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class OidcProvider:
    """The provider's state and handlers; ``issuer`` is set once the listening port is known."""

    def __init__(
        self,
        directory: Directory,
        key: RSAKey,
        *,
        clock: Callable[[], datetime] = utc_now,
        code_ttl: timedelta = timedelta(seconds=60),
        token_ttl: timedelta = timedelta(minutes=5),
        token_auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post"),
    ) -> None:
        self.token_auth_methods = token_auth_methods
        self.directory = directory
        self.key = key
        self.clock = clock
        self.code_ttl = code_ttl
        self.token_ttl = token_ttl
        self.issuer = ""
        self._pending: dict[str, AuthorizationRequest] = {}
        self._codes: dict[str, CodeGrant] = {}
        self._access: dict[str, AccessGrant] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/authorize/login", self.login)
        app.router.add_post("/token", self.token)
        app.router.add_get("/userinfo", self.userinfo)
        app.router.add_post("/userinfo", self.userinfo)
        return app

    async def discovery(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": list(SCOPES),
                "token_endpoint_auth_methods_supported": list(self.token_auth_methods),
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": [*CLAIMS, "name"],
            }
        )

    async def jwks(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        client = self.directory.clients.get(query.get("client_id", ""))
        if client is None:
            return _page(error_page("unknown client_id"), 400)
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _page(error_page("redirect_uri is not registered for this client"), 400)
        state = query.get("state")

        def refuse(error: str, description: str) -> NoReturn:
            params = {"error": error, "error_description": description}
            if state is not None:
                params["state"] = state
            raise web.HTTPFound(f"{redirect_uri}?{urlencode(params)}")

        if query.get("response_type") != "code":
            refuse("unsupported_response_type", "only response_type=code is supported")
        scope = tuple(query.get("scope", "").split())
        if "openid" not in scope:
            refuse("invalid_scope", "scope must include openid")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        now = self.clock()
        self._pending = {k: v for k, v in self._pending.items() if v.expires_at > now}
        request_id = secrets.token_urlsafe(24)
        self._pending[request_id] = AuthorizationRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            nonce=query.get("nonce"),
            code_challenge=query["code_challenge"],
            scope=scope,
            expires_at=now + PENDING_TTL,
        )
        return _page(login_page(request_id, client.client_id))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        request_id = str(form.get("request_id", ""))
        pending = self._pending.get(request_id)
        if pending is None or pending.expires_at <= self.clock():
            return _page(error_page("this sign-in request has expired; start again"), 400)
        user = self.directory.users.get(str(form.get("username", "")))
        password = str(form.get("password", ""))
        if user is None or not secret_matches(password, user.password_hash):
            log.info("sandbox provider: refused a sign-in for client %s", pending.client_id)
            retry = login_page(request_id, pending.client_id, "wrong user name or password")
            return _page(retry, 401)
        del self._pending[request_id]
        now = self.clock()
        code = secrets.token_urlsafe(32)
        self._codes = {k: v for k, v in self._codes.items() if v.expires_at > now}
        self._codes[code] = CodeGrant(
            request=pending, subject=user.subject, auth_time=now, expires_at=now + self.code_ttl
        )
        params = {"code": code}
        if pending.state is not None:
            params["state"] = pending.state
        raise web.HTTPFound(f"{pending.redirect_uri}?{urlencode(params)}")

    async def token(self, request: web.Request) -> web.Response:
        try:
            form = {k: str(v) for k, v in (await request.post()).items()}
            client = self._authenticate_client(request, form)
            answer = self._redeem_code(client, form)
        except TokenRequestError as exc:
            headers = {"Cache-Control": "no-store"}
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="token"'
            return web.json_response(
                {"error": exc.error, "error_description": exc.description},
                status=exc.status,
                headers=headers,
            )
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    def _authenticate_client(self, request: web.Request, form: dict[str, str]) -> RegisteredClient:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            if "client_secret" in form:
                raise TokenRequestError("invalid_request", "use one client authentication method")
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
                raw_id, raw_secret = decoded.split(":", 1)
            except ValueError:
                raise TokenRequestError(
                    "invalid_client", "malformed Basic credentials", 401
                ) from None
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            method = "client_secret_basic"
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            method = "client_secret_post"
        if method not in self.token_auth_methods:
            raise TokenRequestError("invalid_client", f"{method} is not accepted here", 401)
        client = self.directory.clients.get(client_id)
        if client is None or not secret or not secret_matches(secret, client.secret_hash):
            raise TokenRequestError("invalid_client", "client authentication failed", 401)
        return client

    def _redeem_code(self, client: RegisteredClient, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "authorization_code":
            raise TokenRequestError(
                "unsupported_grant_type", "only grant_type=authorization_code is supported"
            )
        grant = self._codes.get(form.get("code", ""))
        now = self.clock()
        if grant is None or grant.expires_at <= now:
            raise TokenRequestError("invalid_grant", "authorization code is unknown or expired")
        if grant.used:
            for token in grant.access_tokens:
                self._access.pop(token, None)
            raise TokenRequestError("invalid_grant", "authorization code was already used")
        grant.used = True
        pending = grant.request
        if pending.client_id != client.client_id:
            raise TokenRequestError("invalid_grant", "authorization code belongs to another client")
        if form.get("redirect_uri") != pending.redirect_uri:
            raise TokenRequestError("invalid_grant", "redirect_uri differs from the authorized one")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(
            create_s256_code_challenge(verifier), pending.code_challenge
        ):
            raise TokenRequestError("invalid_grant", "code_verifier does not match the challenge")
        user = self.directory.user_by_subject(grant.subject)
        if user is None:
            raise TokenRequestError("invalid_grant", "the signed-in user no longer exists")
        access_token = secrets.token_urlsafe(32)
        self._access[access_token] = AccessGrant(
            subject=user.subject, client_id=client.client_id, expires_at=now + self.token_ttl
        )
        grant.access_tokens.append(access_token)
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(self.token_ttl.total_seconds()),
            "scope": " ".join(pending.scope),
            "id_token": self._id_token(user, client.client_id, pending, grant.auth_time, now),
        }

    def _id_token(
        self,
        user: SandboxUser,
        client_id: str,
        pending: AuthorizationRequest,
        auth_time: datetime,
        now: datetime,
    ) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.subject,
            "aud": client_id,
            "iat": int(now.timestamp()),
            "exp": int((now + self.token_ttl).timestamp()),
            "auth_time": int(auth_time.timestamp()),
            **_profile(user, pending.scope),
        }
        if pending.nonce is not None:
            claims["nonce"] = pending.nonce
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    async def userinfo(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        grant = self._access.get(header[7:].strip()) if header.startswith("Bearer ") else None
        user = self.directory.user_by_subject(grant.subject) if grant else None
        if grant is None or user is None or grant.expires_at <= self.clock():
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return web.json_response({"sub": user.subject, **_profile(user, SCOPES)})


def _profile(user: SandboxUser, scope: tuple[str, ...]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in scope:
        claims.update(email=user.email, email_verified=user.email_verified)
    if "profile" in scope:
        claims["name"] = user.name
    return claims


def _page(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html")


@dataclass
class RunningProvider:
    """A provider serving on 127.0.0.1 in this process; ``await stop()`` closes it."""

    provider: OidcProvider
    runner: web.AppRunner

    @property
    def issuer(self) -> str:
        return self.provider.issuer

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_provider(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Callable[[], datetime] = utc_now,
    code_ttl: timedelta = timedelta(seconds=60),
    token_ttl: timedelta = timedelta(minutes=5),
) -> RunningProvider:
    """Serve the provider whose users, clients and key are in ``folder``."""
    provider = OidcProvider(
        load_directory(folder),
        load_or_create_signing_key(folder),
        clock=clock,
        code_ttl=code_ttl,
        token_ttl=token_ttl,
    )
    runner = web.AppRunner(provider.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    provider.issuer = f"http://{host}:{bound_port}"
    return RunningProvider(provider, runner)
