"""The aiohttp application: auth, rate limits and fault injection, idempotency, routing, errors.

Idempotency (Stripe API v1 semantics, per docs.stripe.com/api/idempotent_requests): for POST
requests carrying ``Idempotency-Key``, the first response's status and body are saved per
(API key, idempotency key) once the endpoint has begun executing -- successes, 4xx raised by the
endpoint (402 declines, 404s) and unexpected 500s alike. A replay with the same method, path and
parameters answers the saved response with ``Idempotent-Replayed: true``; different parameters
answer 400 ``idempotency_error``. Not saved, so safe to retry with the same key: 401s, 429s,
injected 500s (they stand for a failure in front of the endpoint), and parameter-validation 400s.
Keys are kept for 24 hours.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from quote2cash.sandbox.budget_window import BudgetWindow

from . import (
    catalog,
    coupons,
    customers,
    invoicing,
    metering,
    payments,
    subscriptions,
    tax_rates,
    webhooks,
)
from .errors import StripeApiError
from .params import Params, decode_form
from .render import expand
from .routing import ROUTES, Route
from .store import API_VERSION, JSON, RequestInfo, Store

log = logging.getLogger(__name__)

# Importing the endpoint modules registers their routes.
_MODULES = (
    catalog,
    coupons,
    customers,
    invoicing,
    metering,
    payments,
    subscriptions,
    tax_rates,
    webhooks,
)
IDEMPOTENCY_TTL = 24 * 3600
T = TypeVar("T")


@dataclass
class EmulatorConfig:
    """Knobs for tests: accepted keys, rate limiting and injected failures."""

    api_keys: set[str] | None = None
    rate_limit_per_second: float | None = None
    rate_limit_burst: int | None = None
    rate_limit_every_nth: int | None = None
    budget_rate: float | None = None
    """Count (never refuse) calls above this rate: ``over_budget`` in ``/_emulator/usage``."""
    budget_burst: float | None = None
    budget_window_seconds: float = 1.0
    fail_next_429: int = 0
    fault_500_every_nth: int | None = None
    fail_next_500: int = 0
    retry_after_seconds: int | None = 1
    webhook_max_attempts: int = 4
    webhook_first_retry_delay: float = 0.2

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise KeyError(key)
            if key == "api_keys" and value is not None:
                value = set(value)
            setattr(self, key, value)


@dataclass
class _SavedResponse:
    method: str
    path: str
    params: JSON
    status: int
    body: str
    request_id: str
    saved_at: float


@dataclass
class _Counters:
    """Every API call counted (also refused ones): per whole second of arrival, and how many
    the rate limiter refused (``GET /_emulator/usage``)."""

    requests: int = 0
    tokens: float | None = None
    last_refill: float = field(default_factory=time.monotonic)
    rate_limited: int = 0
    per_second: dict[int, int] = field(default_factory=dict)
    accepted_per_second: dict[int, int] = field(default_factory=dict)
    accepted_at: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    limited_at: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


def _json_response(status: int, body: JSON, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, indent=2),
        content_type="application/json",
        headers=headers or {},
    )


class RunningEmulator(NamedTuple):
    base_url: str
    stop: Callable[[], None]


class StripeEmulator:
    """A stateful local Stripe API for tests and the demo; bind 127.0.0.1 on a free port."""

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.store = Store()
        self.webhooks = webhooks.WebhookDispatcher(self.store)
        self._saved: dict[tuple[str, str], _SavedResponse] = {}
        self._counters = _Counters()
        self._budget = BudgetWindow()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.app = self._build_app()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Serve on the event loop that calls this; returns the base URL."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        return self.base_url

    async def stop(self) -> None:
        await self.webhooks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> RunningEmulator:
        """Run on a background thread with its own loop; returns base URL and stop function."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=serve, name="stripe-emulator", daemon=True)
        thread.start()
        ready.wait(timeout=30)
        if failure:
            raise failure[0]

        def stop() -> None:
            if loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

        return RunningEmulator(self.base_url, stop)

    def run_in_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the emulator's loop from another thread (e.g. draining webhooks)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def reset(self) -> None:
        """Forget all objects, saved idempotent responses and webhook deliveries in flight.

        Safe from any thread: when the emulator runs on another thread, the reset runs there.
        """
        if (
            self._loop is not None
            and self._loop.is_running()
            and threading.get_ident() != self._loop_thread
        ):
            self.run_in_loop(self._reset_async())
            return
        self._reset_now()

    async def _reset_async(self) -> None:
        self._reset_now()

    def _reset_now(self) -> None:
        self.webhooks.cancel_all()
        self.store.reset()
        self._saved.clear()
        self.webhooks.attempts.clear()
        self._counters = _Counters()
        self._budget.reset()

    # --- application --------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/_emulator/reset", self._reset_endpoint)
        app.router.add_get("/_emulator/config", self._get_config)
        app.router.add_post("/_emulator/config", self._set_config)
        app.router.add_get("/_emulator/webhook_attempts", self._webhook_attempts)
        app.router.add_post("/_emulator/drain_webhooks", self._drain_webhooks)
        app.router.add_get("/_emulator/usage", self._usage)
        for module_route in sorted(ROUTES, key=lambda r: r.path.count("{")):
            app.router.add_route(
                module_route.method, module_route.path, self._endpoint(module_route)
            )
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _reset_endpoint(self, request: web.Request) -> web.Response:
        self.reset()
        return _json_response(200, {"reset": True})

    async def _get_config(self, request: web.Request) -> web.Response:
        values = dict(vars(self.config))
        if values["api_keys"] is not None:
            values["api_keys"] = sorted(values["api_keys"])
        return _json_response(200, values)

    async def _set_config(self, request: web.Request) -> web.Response:
        try:
            values = await request.json()
            self.config.update(values)
            if any(key.startswith("budget_") for key in values):
                cfg = self.config
                self._budget.configure(
                    rate=cfg.budget_rate, burst=cfg.budget_burst, window=cfg.budget_window_seconds
                )
        except (KeyError, ValueError, TypeError) as exc:
            return _json_response(400, {"error": f"bad config: {exc}"})
        self.webhooks.max_attempts = self.config.webhook_max_attempts
        self.webhooks.first_retry_delay = self.config.webhook_first_retry_delay
        return await self._get_config(request)

    async def _usage(self, request: web.Request) -> web.Response:
        c = self._counters
        return _json_response(
            200,
            {
                "requests": c.requests,
                "rate_limited": c.rate_limited,
                "per_second": {str(k): v for k, v in sorted(c.per_second.items())},
                "accepted_per_second": {
                    str(k): v for k, v in sorted(c.accepted_per_second.items())
                },
                "accepted_at": list(c.accepted_at),
                "limited_at": list(c.limited_at),
                **self._budget.summary(),
            },
        )

    async def _webhook_attempts(self, request: web.Request) -> web.Response:
        return _json_response(200, {"data": [vars(a) for a in self.webhooks.attempts]})

    async def _drain_webhooks(self, request: web.Request) -> web.Response:
        await self.webhooks.drain()
        return await self._webhook_attempts(request)

    async def _unknown(self, request: web.Request) -> web.Response:
        error = StripeApiError(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({request.method}: {request.path}). "
            "Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )
        return _json_response(404, error.body())

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header:
            raise StripeApiError(
                401,
                "authentication_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = ""
            scheme = "bearer"
        accepted = self.config.api_keys
        valid = scheme.lower() == "bearer" and (
            key in accepted if accepted is not None else key.startswith("sk_test_")
        )
        if not valid:
            prefix = key[:8] if key.startswith(("sk_test_", "sk_live_", "rk_test_")) else ""
            shown = prefix + "*" * 12 + (key[-4:] if len(key) > 20 else "")
            raise StripeApiError(
                401,
                "authentication_error",
                f"Invalid API Key provided: {shown}",
                code="api_key_invalid",
            )
        return key

    def _throttle(self) -> None:
        cfg = self.config
        counters = self._counters
        counters.requests += 1
        self._budget.arrive()
        second = int(time.time())
        counters.per_second[second] = counters.per_second.get(second, 0) + 1
        limited = False
        if cfg.fail_next_429 > 0:
            cfg.fail_next_429 -= 1
            limited = True
        elif cfg.rate_limit_every_nth and counters.requests % cfg.rate_limit_every_nth == 0:
            limited = True
        elif cfg.rate_limit_per_second:
            now = time.monotonic()
            burst = cfg.rate_limit_burst or cfg.rate_limit_per_second
            if counters.tokens is None:
                counters.tokens = burst
            counters.tokens = min(
                burst,
                counters.tokens + (now - counters.last_refill) * cfg.rate_limit_per_second,
            )
            counters.last_refill = now
            if counters.tokens < 1:
                limited = True
            else:
                counters.tokens -= 1
        if limited:
            counters.rate_limited += 1
            counters.limited_at.append(time.time())
            headers = {"Stripe-Rate-Limited-Reason": "global-rate"}
            if cfg.retry_after_seconds is not None:
                headers["Retry-After"] = str(cfg.retry_after_seconds)
            raise StripeApiError(
                429,
                "rate_limit_error",
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                saved=False,
                headers=headers,
            )
        counters.accepted_per_second[second] = counters.accepted_per_second.get(second, 0) + 1
        counters.accepted_at.append(time.time())
        fault = cfg.fail_next_500 > 0 or (
            cfg.fault_500_every_nth is not None and counters.requests % cfg.fault_500_every_nth == 0
        )
        if cfg.fail_next_500 > 0:
            cfg.fail_next_500 -= 1
        if fault:
            raise StripeApiError(
                500,
                "api_error",
                "An unknown error occurred (injected by the emulator).",
                saved=False,
                headers={"Stripe-Should-Retry": "true"},
            )

    def _endpoint(
        self, module_route: Route
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self._handle(request, module_route)

        return handle

    async def _handle(self, request: web.Request, module_route: Route) -> web.Response:
        request_id = "req_" + secrets.token_hex(7)
        base_headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION),
        }
        idem_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if idem_key:
            base_headers["Idempotency-Key"] = idem_key
        try:
            api_key = self._authenticate(request)
            self._throttle()
            pairs = list(request.query.items())
            if request.method == "POST" and request.can_read_body:
                pairs += parse_qsl(await request.text(), keep_blank_values=True)
            params = decode_form(pairs)
        except StripeApiError as error:
            return _json_response(error.status, error.body(), {**base_headers, **error.headers})
        saved_key = (api_key, idem_key) if idem_key else None
        if saved_key is not None:
            if len(idem_key or "") > 255:
                too_long = StripeApiError(
                    400,
                    "invalid_request_error",
                    "Idempotency keys are limited to 255 characters.",
                    param="Idempotency-Key",
                )
                return _json_response(400, too_long.body(), base_headers)
            replay = self._replay(saved_key, request, params, base_headers)
            if replay is not None:
                return replay
        status, body, extra_headers, save = self._execute(
            request, module_route, params, request_id, idem_key
        )
        text = json.dumps(body, indent=2)
        if saved_key is not None and save:
            self._saved[saved_key] = _SavedResponse(
                request.method, request.path, params, status, text, request_id, time.time()
            )
        if self.store.new_events:
            events, self.store.new_events = self.store.new_events, []
            self.webhooks.max_attempts = self.config.webhook_max_attempts
            self.webhooks.first_retry_delay = self.config.webhook_first_retry_delay
            self.webhooks.dispatch(events)
        return web.Response(
            status=status,
            text=text,
            content_type="application/json",
            headers={**base_headers, **extra_headers},
        )

    def _replay(
        self, key: tuple[str, str], request: web.Request, params: JSON, headers: dict[str, str]
    ) -> web.Response | None:
        saved = self._saved.get(key)
        if saved is None:
            return None
        if time.time() - saved.saved_at > IDEMPOTENCY_TTL:
            del self._saved[key]
            return None
        if (saved.method, saved.path, saved.params) != (request.method, request.path, params):
            error = StripeApiError(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key[1]}' if you meant to execute "
                "a different request.",
            )
            return _json_response(400, error.body(), headers)
        return web.Response(
            status=saved.status,
            text=saved.body,
            content_type="application/json",
            headers={
                **headers,
                "Idempotent-Replayed": "true",
                "Original-Request": saved.request_id,
            },
        )

    def _execute(
        self,
        request: web.Request,
        module_route: Route,
        params: JSON,
        request_id: str,
        idem_key: str | None,
    ) -> tuple[int, JSON, dict[str, str], bool]:
        self.store.request = RequestInfo(request_id, idem_key)
        if module_route.atomic:
            self.store.begin()
        try:
            p = Params(params)
            body = module_route.handler(self.store, p, **request.match_info)
            paths = p.strings("expand")
            if paths:
                body = expand(self.store, body, paths)
            return 200, body, {}, True
        except StripeApiError as error:
            self.store.rollback()
            return error.status, error.body(), error.headers, error.saved
        except Exception:
            log.exception("emulator endpoint %s %s failed", request.method, request.path)
            crash = StripeApiError(500, "api_error", "An unknown error occurred.")
            return 500, crash.body(), {}, True
        finally:
            self.store.commit()
            self.store.request = None


def run_forever(port: int, api_key: str | None = None, host: str = "127.0.0.1") -> None:
    """Serve until interrupted (``python -m quote2cash.sandbox.stripe``)."""
    config = EmulatorConfig(api_keys={api_key} if api_key else None)
    emulator = StripeEmulator(config, host=host, port=port)

    async def main() -> None:
        url = await emulator.start()
        print(f"Stripe emulator listening on {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
