"""The emulator as a server: aiohttp over HTTPS (trustme CA), in-process or in a thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trustme
from aiohttp import web

from quote2cash.sandbox.budget_window import BudgetWindow

from . import soap
from .api import SUPPORTED_VERSIONS, Api, versions
from .auth import Authenticator, OAuthError, load_rsa_public_key
from .callout import CalloutDispatcher
from .errors import SalesforceError, not_found
from .schema import Schema, build_schema
from .store import ClosedWon, Store
from .values import Clock, dumps, loads, to_wire

DEFAULT_CLIENT_ID = "q2c-emulator-client"
DEFAULT_CLIENT_SECRET = "q2c-emulator-secret"  # noqa: S105 - well-known sandbox credential
DEFAULT_USERNAME = "integration@quote2cash.example"
DEFAULT_PASSWORD = "emulator-password"  # noqa: S105 - well-known sandbox credential
SALES_USERNAME = "sales@quote2cash.example"
"""A sales rep: the fields the hub manages (``read_only_for_users``) are read-only to them."""
SALES_PASSWORD = "emulator-sales-password"  # noqa: S105 - well-known sandbox credential
_JSON = "application/json;charset=UTF-8"
_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_CALLOUT_FIELDS = (
    "Id",
    "Name",
    "AccountId",
    "StageName",
    "Amount",
    "CurrencyIsoCode",
    "CloseDate",
    "Pricebook2Id",
    "ContractId",
    "Type",
    "LastModifiedDate",
    "SystemModstamp",
)


class SalesforceEmulator:
    """A stateful local Salesforce REST API; ``await start()`` then use ``instance_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        schema_path: str | Path | None = None,
        daily_api_limit: int = 15000,
        session_ttl_seconds: float = 7200,
        query_batch_size: int = 2000,
        callout_url: str | None = None,
        callout_secret: str | None = None,
        callout_max_attempts: int = 5,
        callout_backoff_seconds: float = 0.5,
        clients: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        jwt_certificates: Mapping[str, str | bytes] | None = None,
        ca_out: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = Clock()
        self.schema: Schema = build_schema(schema_path)
        self.store = Store(self.schema, self.clock)
        self.api = Api(self.store, query_batch_size)
        self.api.daily_limit = daily_api_limit
        self.auth = Authenticator(self.clock)
        self.auth.ttl = timedelta(seconds=session_ttl_seconds)
        self.auth.clients = dict(clients or {DEFAULT_CLIENT_ID: DEFAULT_CLIENT_SECRET})
        self.auth.users = dict(
            users or {DEFAULT_USERNAME: DEFAULT_PASSWORD, SALES_USERNAME: SALES_PASSWORD}
        )
        self.store.integration_users = {DEFAULT_USERNAME}
        for client_id, pem in (jwt_certificates or {}).items():
            self.auth.jwt_keys[client_id] = load_rsa_public_key(pem)
        self.callouts = CalloutDispatcher()
        self.callouts.url, self.callouts.secret = callout_url, callout_secret
        self.callouts.max_attempts = callout_max_attempts
        self.callouts.backoff_seconds = callout_backoff_seconds
        self.store.listeners.append(self._on_closed_won)
        self._usage_day: date = self.clock.now().date()
        self.budget = BudgetWindow()
        self.over_daily_limit = 0
        """API calls refused because the day's allocation was spent (``/_emulator/usage``)."""
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost")
        self._own_ca_dir: str | None = None
        if ca_out is None:
            self._own_ca_dir = tempfile.mkdtemp(prefix="q2c-sf-ca-")
            ca_out = Path(self._own_ca_dir) / "ca.pem"
        self.ca_path = str(ca_out)
        self._ca.cert_pem.write_to_path(self.ca_path)
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner: web.AppRunner | None = None

    # ----- lifecycle -----

    @property
    def instance_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return bytes(self._ca.cert_pem.bytes())

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this emulator's CA (for aiohttp or httpx clients)."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    async def start(self) -> None:
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(server_context)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=server_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self.callouts.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._own_ca_dir is not None:
            shutil.rmtree(self._own_ca_dir, ignore_errors=True)
            self._own_ca_dir = None

    def reset(self) -> None:
        """Forget records, cursors, API usage, callout history and clock offset; keep config."""
        self.clock.offset = timedelta()
        self.store.reset()
        self.api.cursors.clear()
        self.api.used = 0
        self.callouts.clear()
        self.budget.reset()
        self.over_daily_limit = 0

    # ----- configuration -----

    def config(self) -> dict[str, Any]:
        return {
            "daily_api_limit": self.api.daily_limit,
            "api_usage": self.api.used,
            "session_ttl_seconds": self.auth.ttl.total_seconds(),
            "query_batch_size": self.api.batch_size,
            "callout_url": self.callouts.url,
            "callout_secret_set": bool(self.callouts.secret),
            "callout_max_attempts": self.callouts.max_attempts,
            "callout_backoff_seconds": self.callouts.backoff_seconds,
            "clock_offset_seconds": self.clock.offset.total_seconds(),
            "budget_rate": self.budget.rate,
            "budget_burst": self.budget.burst,
            "budget_window_seconds": self.budget.window,
        }

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply admin changes; raises ValueError naming the offending key."""
        setters: dict[str, Callable[[Any], None]] = {
            "daily_api_limit": lambda v: setattr(
                self.api, "daily_limit", _int(v, "daily_api_limit")
            ),
            "api_usage": lambda v: setattr(self.api, "used", _int(v, "api_usage")),
            "session_ttl_seconds": lambda v: setattr(
                self.auth, "ttl", timedelta(seconds=_number(v, "session_ttl_seconds"))
            ),
            "query_batch_size": lambda v: setattr(
                self.api, "batch_size", max(1, _int(v, "query_batch_size"))
            ),
            "callout_url": lambda v: setattr(self.callouts, "url", _optional_str(v, "callout_url")),
            "callout_secret": lambda v: setattr(
                self.callouts, "secret", _optional_str(v, "callout_secret")
            ),
            "callout_max_attempts": lambda v: setattr(
                self.callouts, "max_attempts", max(1, _int(v, "callout_max_attempts"))
            ),
            "callout_backoff_seconds": lambda v: setattr(
                self.callouts, "backoff_seconds", _number(v, "callout_backoff_seconds")
            ),
            "jwt_certificates": self._set_jwt_certificates,
        }
        budget = {"budget_rate", "budget_burst", "budget_window_seconds"}
        unknown = set(changes) - set(setters) - budget
        if unknown:
            raise ValueError(
                f"unknown configuration keys {sorted(unknown)}; expected some of "
                f"{sorted(set(setters) | budget)}"
            )
        for key, value in changes.items():
            if key not in budget:
                setters[key](value)
        if budget & set(changes):
            values = {**self.config(), **changes}
            self.budget.configure(
                rate=None
                if values["budget_rate"] is None
                else _number(values["budget_rate"], "budget_rate"),
                burst=None
                if values["budget_burst"] is None
                else _number(values["budget_burst"], "budget_burst"),
                window=_number(values["budget_window_seconds"], "budget_window_seconds"),
            )

    def usage(self) -> dict[str, Any]:
        """Every API call counted server-side: the day's use, calls refused by the daily
        allocation, and calls above the configured rate budget (sliding window)."""
        return {
            "api_usage": self.api.used,
            "daily_api_limit": self.api.daily_limit,
            "over_daily_limit": self.over_daily_limit,
            **self.budget.summary(),
        }

    def _set_jwt_certificates(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise ValueError("jwt_certificates: expected a mapping of client id to PEM text")
        for client_id, pem in value.items():
            try:
                self.auth.jwt_keys[str(client_id)] = load_rsa_public_key(str(pem))
            except ValueError as exc:
                raise ValueError(f"jwt_certificates.{client_id}: {exc}") from exc

    # ----- change capture -----

    def _on_closed_won(self, event: ClosedWon) -> None:
        opportunity = self.store.tables["Opportunity"][event.opportunity_id]
        obj = self.schema.objects["Opportunity"]
        fields = {name: to_wire(opportunity[name]) for name in _CALLOUT_FIELDS}
        fields.update(
            {f.name: to_wire(opportunity[f.name]) for f in obj.fields.values() if f.custom}
        )
        self.callouts.submit(
            event.opportunity_id,
            {
                "eventType": "opportunity.closed_won",
                "eventTime": to_wire(event.occurred_at),
                "organizationId": self.store.org_id,
                "opportunity": fields,
            },
        )

    # ----- HTTP -----

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        try:
            if path.startswith("/_emulator/"):
                return await self._admin(request, path[len("/_emulator/") :])
            if path in ("/services/oauth2/token", "/services/oauth2/revoke"):
                return await self._oauth(request, path.rsplit("/", 1)[1])
            if path.rstrip("/") == "/services/data":
                return _json(200, versions())
            if path.startswith("/services/data/v"):
                return await self._data(request, path[len("/services/data/v") :])
            if path.startswith("/services/Soap/u/") and request.method == "POST":
                return await self._soap(request)
            raise not_found()
        except SalesforceError as exc:
            return _json(exc.status, exc.body())
        except Exception:
            _log.exception("salesforce emulator: unexpected error on %s %s", request.method, path)
            error = SalesforceError(
                500, "UNKNOWN_EXCEPTION", "An unexpected error occurred in the emulator."
            )
            return _json(500, error.body())

    async def _oauth(self, request: web.Request, action: str) -> web.Response:
        if request.method != "POST":
            raise SalesforceError(405, "METHOD_NOT_ALLOWED", "use POST")
        form = {k: str(v) for k, v in (await request.post()).items()}
        form = {**{k: v for k, v in request.query.items()}, **form}
        if action == "revoke":
            self.auth.revoke(form.get("token", ""))
            return web.Response(status=200)
        form["__authorization__"] = request.headers.get("Authorization", "")
        try:
            body = self.auth.token(form, self.store.org_id, self.store.user_id, self.instance_url)
        except OAuthError as exc:
            return _json(exc.status, exc.body)
        return _json(200, body)

    async def _data(self, request: web.Request, rest: str) -> web.Response:
        version, _, sub_path = rest.partition("/")
        if version not in SUPPORTED_VERSIONS:
            raise not_found()
        session = self.auth.check(request.headers.get("Authorization"))
        today = self.clock.now().date()
        if today != self._usage_day:
            self._usage_day, self.api.used = today, 0
        self.budget.arrive()
        if self.api.used >= self.api.daily_limit:
            self.over_daily_limit += 1
            error = SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            return _json(403, error.body(), self._limit_header())
        self.api.used += 1
        raw = await request.read()
        try:
            body = loads(raw) if raw.strip() else None
        except msgspec.DecodeError as exc:
            error = SalesforceError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}")
            return _json(400, error.body(), self._limit_header())
        self.store.acting_user = session.username
        try:
            response = self.api.dispatch(
                request.method, version, sub_path, request.query, body, request.headers
            )
        except SalesforceError as exc:
            return _json(exc.status, exc.body(), self._limit_header())
        finally:
            self.store.acting_user = None
        headers = {**response.headers, **self._limit_header()}
        if response.status == 204:
            return web.Response(status=204, headers=headers)
        return _json(response.status, response.body, headers)

    async def _soap(self, request: web.Request) -> web.Response:
        """The partner SOAP API (``merge()``), counted against the daily API limit."""
        self.budget.arrive()
        self.api.used += 1
        status, body = soap.handle(
            await request.read(), self.store, lambda token: self.auth.check(f"Bearer {token}")
        )
        return web.Response(status=status, body=body, content_type="text/xml", charset="utf-8")

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api.used}/{self.api.daily_limit}"}

    async def _admin(self, request: web.Request, action: str) -> web.Response:
        raw = await request.read()
        try:
            body = loads(raw) if raw.strip() else {}
        except msgspec.DecodeError:
            return _json(400, {"error": "request body is not valid JSON"})
        if not isinstance(body, dict):
            return _json(400, {"error": "request body must be a JSON object"})
        method = request.method
        if action == "reset" and method == "POST":
            self.reset()
            return _json(200, {"reset": True})
        if action == "config" and method == "GET":
            return _json(200, self.config())
        if action == "usage" and method == "GET":
            return _json(200, self.usage())
        if action == "config" and method in ("PATCH", "POST"):
            try:
                self.configure(body)
            except ValueError as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, self.config())
        if action == "clock" and method == "POST":
            try:
                self.clock.advance(_number(body.get("advance_seconds"), "advance_seconds"))
            except ValueError as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, {"now": to_wire(self.clock.now())})
        if action == "sessions/expire" and method == "POST":
            self.auth.expire_all()
            return _json(200, {"expired": True})
        if action == "callouts" and method == "GET":
            return _json(200, [d.summary() for d in self.callouts.deliveries])
        return _json(404, {"error": f"no admin action {method} /_emulator/{action}"})


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=dumps(body), headers={"Content-Type": _JSON, **(headers or {})}
    )


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key}: expected a non-negative integer, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or (
        not isinstance(value, int | float) and not hasattr(value, "is_finite")
    ):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _optional_str(value: Any, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string or null")
    return value


@dataclass
class RunningEmulator:
    """An emulator serving from a background thread; ``stop()`` shuts it down and joins."""

    emulator: SalesforceEmulator
    instance_url: str
    ca_path: str
    loop: asyncio.AbstractEventLoop
    stop: Callable[[], None]

    def call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the emulator's loop thread (state is not thread-safe)."""
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)


def run_in_thread(**options: Any) -> RunningEmulator:
    """Start an emulator on its own event loop in a daemon thread and wait until it serves."""
    loop = asyncio.new_event_loop()
    emulator = SalesforceEmulator(**options)
    started: concurrent.futures.Future[None] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(emulator.start())
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        loop.run_forever()
        loop.run_until_complete(emulator.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="salesforce-emulator", daemon=True)
    thread.start()
    started.result(timeout=30)

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    return RunningEmulator(emulator, emulator.instance_url, emulator.ca_path, loop, stop)
