"""The hub's HTTP API: webhooks in (durable before 2xx), ``/v1`` reads and decisions (served
from the route table in ``api/routes.py``), ``/health``.

Guarantees: a webhook is answered 200 only after its event is committed to the log; a store
that cannot commit gets the sender a 503, so it retries. A delivery seen again (same event id)
is answered 200 and logged once. An authentic delivery (signature checked) whose content the hub
cannot take is never lost: it is logged as ``intake.record.rejected`` with its raw body, which
puts it in the exception queue with the reason, and answered 200 with that reason; one the hub
cannot understand at all is quarantined whole and answered 202; only a delivery that fails its
signature check is refused (400) and not kept. Every ``/v1`` route but the OpenAPI document
needs ``Authorization: Bearer <token>``. Errors are ``{"error": {"code", "message"}}``, never
a 500 for bad input; no secret is ever part of an answer or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from quote2cash.api.auth import OPERATOR, client_of
from quote2cash.api.intake import Unintelligible, callout_shape, stripe_shape
from quote2cash.api.routing import ParameterError
from quote2cash.api.signatures import SIGNATURE_HEADER, SignatureError, verify_callout
from quote2cash.api.store_calls import StoreThreads
from quote2cash.canonical import Money
from quote2cash.connectors.roles import BillingEvent, RejectedRecord
from quote2cash.connectors.salesforce import mapping as salesforce_mapping
from quote2cash.console.links import ObjectLinks
from quote2cash.engine.clock import Clock, SystemClock
from quote2cash.engine.control import ControlError, system_status
from quote2cash.engine.errors import AuthError, DataError, IntegrationError, PermanentError
from quote2cash.engine.events import Event, EventValidationError, decode_data, validate_envelope
from quote2cash.engine.exceptions import UnknownEvent
from quote2cash.engine.hub_state import RECONCILIATION, kept_state
from quote2cash.engine.log import Appended
from quote2cash.engine.quarantine import UnknownDelivery, quarantine_delivery
from quote2cash.engine.queries import EventRow, find_event, list_events
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.intake import REJECTED, billing_event, deal_event, rejected_event
from quote2cash.flows.status import InvoiceStatusView, get_invoice_status, warm_invoice_status
from quote2cash.identity import IdentityError, NotAllowed, NotAuthenticated, Operator
from quote2cash.identity.tokens import authenticate_token, cached_operator, warm_token_checks
from quote2cash.masterdata.xref import XrefStore
from quote2cash.observability import tracing
from quote2cash.observability.kpi_collector import kpi_registry
from quote2cash.observability.logging import correlation
from quote2cash.reconcile.model import Report
from quote2cash.settings import get_settings
from quote2cash.store.db import kept_connections

if TYPE_CHECKING:
    from quote2cash.identity.oidc import OidcClient

log = logging.getLogger(__name__)

StripeVerifier = Callable[[bytes, str], BillingEvent]
"""Checks a Stripe delivery (payload, ``Stripe-Signature``) and returns its event, or raises
AuthError (bad signature, stale timestamp) or DataError (not a Stripe event)."""

STATUSES: Final = ("pending", "parked", "done", "exception", "dead", "resolved")
MAX_LIMIT: Final = 1000
OPENAPI_PATH: Final = "/v1/openapi.json"
"""The API's description is not data: served without a token."""
METRICS_PATH: Final = "/metrics"
"""Prometheus metrics: a viewer's token, unless ``Q2C_METRICS_PUBLIC`` serves it to anyone."""
METRICS_ACCESS_HINT: Final = (
    "an operator with the viewer role makes one with "
    "`q2c tokens create <name> --role viewer --operator <their name>`"
)
MAX_BODY: Final = 4 * 1024 * 1024


@dataclass
class HubStatus:
    """What ``/health`` reports besides the store: is the worker loop running (None: not here).
    Nothing else lives per process: the last reconciliation's report is kept in the store."""

    worker_running: bool | None = None


class ApiError(Exception):
    """An answer other than success, with a code a client can act on and a safe message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def jsonable(value: Any) -> Any:
    """Times as ISO 8601, money and other Decimals as strings (never floats)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(jsonable(body)), content_type="application/json"
    )


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def _event_json(row: EventRow) -> dict[str, Any]:
    return {
        "pos": row.pos,
        "id": row.id,
        "source": row.source,
        "type": row.type,
        "subject": row.subject,
        "sequence": row.sequence,
        "status": row.status,
        "attempts": row.attempts,
        "correlation_id": row.correlation_id,
        "time": row.time,
        "category": row.category,
        "last_error": row.last_error,
        "parked": (
            {"key": row.parked_on, "reason": row.park_reason, "deadline": row.park_deadline}
            if row.parked_on
            else None
        ),
    }


def _money(value: Money | None) -> dict[str, str] | None:
    return None if value is None else {"amount": str(value.amount), "currency": value.currency}


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _invoice_json(view: InvoiceStatusView) -> dict[str, Any]:
    """The view with money as ``{"amount": "12.30", "currency": "EUR"}`` (never a float), times
    and dates as ISO 8601; every field is flat, so spelled out once (a hot path)."""
    return {
        "global_id": view.global_id,
        "billing_id": view.billing_id,
        "erp_id": view.erp_id,
        "crm_id": view.crm_id,
        "number": view.number,
        "contract": view.contract,
        "status": view.status,
        "currency": view.currency,
        "total": _money(view.total),
        "amount_paid": _money(view.amount_paid),
        "amount_due": _money(view.amount_due),
        "due_date": _iso(view.due_date),
        "paid_at": _iso(view.paid_at),
        "posted_in_erp": view.posted_in_erp,
        "payment_applied_in_erp": view.payment_applied_in_erp,
        "as_of": _iso(view.as_of),
        "amount_refunded": _money(view.amount_refunded),
        "refund_reversed_in_erp": view.refund_reversed_in_erp,
        "is_credit": view.is_credit,
    }


def _maybe_json(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _delivery(body: bytes) -> str:
    """A delivery's name when its content names none: the digest of its body."""
    return f"delivery {hashlib.sha256(body).hexdigest()[:16]}"


def _event_time(raw: Any) -> datetime | None:
    """The callout's ``eventTime`` (Salesforce writes ``+0000``), if it is an aware time."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class HubApi:
    """The handlers; webhook secrets may be set after construction (e.g. once registered)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        stripe_verifier: StripeVerifier | None,
        callout_secret: str | None,
        clock: Clock,
        status: HubStatus,
        callout_tolerance: int,
        store_timeout: float,
        metrics_public: bool = False,
    ) -> None:
        self.runtime = runtime
        self.metrics_public = metrics_public
        self.stripe_verifier = stripe_verifier
        self.callout_secret = callout_secret
        self.clock = clock
        self.status = status
        self.callout_tolerance = callout_tolerance
        self.store_timeout = store_timeout
        self.xref = XrefStore(runtime.engine, runtime.clock)
        self.store_threads = StoreThreads()
        self._token_checks: dict[tuple[str, str], asyncio.Future[Operator]] = {}

    async def _store(self, call: Callable[[], Any]) -> Any:
        """Run a store call off the event loop; a failing store is a 503 (the sender retries)."""
        try:
            return await self.store_threads.call(call, self.store_timeout)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("store unavailable: %s", type(exc).__name__)
            raise ApiError(
                503, "store_unavailable", "the hub's store cannot be reached; try again later"
            ) from None

    async def _log(self, build: Callable[[], Event]) -> web.Response:
        """Append the event (committed) and only then answer 200, logging under its deal's
        correlation id."""

        def append() -> tuple[Event, Appended]:
            event = build()
            return event, self.runtime.log.append(event)

        try:
            event, receipt = await self._store(append)
        except EventValidationError as exc:
            raise ApiError(400, "invalid_event", str(exc)) from None
        tracing.describe_intake(event, duplicate=receipt.duplicate)
        with correlation(event.correlation_id):
            log.info(
                "%s %s received from %s; duplicate=%s",
                event.type,
                event.id,
                event.source,
                receipt.duplicate,
            )
        answer: dict[str, Any] = {"received": True, "duplicate": receipt.duplicate}
        if event.type == REJECTED:
            answer["rejected"] = event.data["reason"]
        return json_response(answer)

    async def _intake(
        self,
        system: str,
        record: str,
        build: Callable[[], Event],
        request: web.Request,
        body: bytes,
    ) -> web.Response:
        """Log an authentic delivery's event; one whose content cannot be taken is logged as a
        rejected record (its body kept) for a person, never refused and lost; one the hub
        cannot understand at all is quarantined."""
        with tracing.intake_span(
            f"intake {system} webhook", {"q2c.via": "webhook", "q2c.system": system}
        ):
            return await self._take(system, record, build, request, body)

    async def _take(
        self,
        system: str,
        record: str,
        build: Callable[[], Event],
        request: web.Request,
        body: bytes,
    ) -> web.Response:
        now = self.clock.now()

        def event() -> Event:
            try:
                built = build()
                validate_envelope(built)
            except (IntegrationError, EventValidationError) as exc:
                reason = exc.message if isinstance(exc, IntegrationError) else str(exc)
                category = exc.category.value if isinstance(exc, PermanentError) else "data"
                raw = {"body": body.decode("utf-8", "replace")}
                return rejected_event(
                    RejectedRecord(system, record, reason, category, raw), time=now
                )
            return built

        try:
            return await self._log(event)
        except (ApiError, web.HTTPException):
            raise
        except Exception as exc:
            log.warning("%s delivery not understood: %s", system, type(exc).__name__)
            return await self._quarantine(
                system, request, body, f"the hub could not read it ({type(exc).__name__})"
            )

    async def _quarantine(
        self, system: str, request: web.Request, body: bytes, reason: str
    ) -> web.Response:
        """Keep a signed delivery the hub cannot understand (committed), then answer 202 so
        the sender stops retrying; an operator releases or discards it."""
        kept, duplicate = await self._store(
            lambda: quarantine_delivery(self.runtime, system, body, request.headers, reason)
        )
        log.warning("%s delivery quarantined as %s: %s", system, kept, reason)
        return json_response(
            {"received": True, "duplicate": duplicate, "quarantined": kept, "reason": reason},
            202,
        )

    # --- webhooks -----------------------------------------------------------------------------

    async def stripe_webhook(self, request: web.Request) -> web.Response:
        verifier = self.stripe_verifier
        if verifier is None:
            raise ApiError(503, "not_configured", "no Stripe webhook secret is configured")
        payload = await request.read()
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(
                400, "invalid_body", "the body is not UTF-8, so its signature cannot be checked"
            ) from None
        try:
            be = verifier(payload, request.headers.get("Stripe-Signature", ""))
        except AuthError as exc:
            raise ApiError(400, "signature_invalid", exc.message) from None
        except IntegrationError as exc:
            refused = exc
            try:
                stripe_shape(payload)
            except Unintelligible as unclear:
                return await self._quarantine("billing", request, payload, str(unclear))

            def unmappable() -> Event:
                raise refused

            return await self._intake("billing", _delivery(payload), unmappable, request, payload)
        except Exception as exc:
            # The verifier checks the signature before it parses: this body is authentic.
            try:
                stripe_shape(payload)
                reason = f"the hub could not read it ({type(exc).__name__})"
            except Unintelligible as unclear:
                reason = str(unclear)
            return await self._quarantine("billing", request, payload, reason)
        try:
            stripe_shape(payload)
        except Unintelligible as unclear:
            return await self._quarantine("billing", request, payload, str(unclear))
        return await self._intake(
            "billing",
            f"event {be.id}",
            lambda: billing_event(self.runtime, be),
            request,
            payload,
        )

    async def salesforce_callout(self, request: web.Request) -> web.Response:
        secret = self.callout_secret
        if secret is None:
            raise ApiError(503, "not_configured", "no Salesforce callout secret is configured")
        body = await request.read()
        now = self.clock.now()
        try:
            verify_callout(
                secret,
                request.headers.get(SIGNATURE_HEADER),
                body,
                now=now,
                tolerance=self.callout_tolerance,
            )
        except SignatureError as exc:
            raise ApiError(400, "signature_invalid", str(exc)) from None
        try:
            message = callout_shape(body)
        except Unintelligible as unclear:
            return await self._quarantine("crm", request, body, str(unclear))
        record = _delivery(body)
        if message.get("messageId"):
            record = f"callout {message['messageId']}"

        def deal() -> Event:
            kind = message.get("eventType")
            if kind != "opportunity.closed_won":
                raise DataError(
                    f"{record}: field 'eventType' is {kind!r}; expected 'opportunity.closed_won'",
                    system="crm",
                )
            return deal_event(
                *salesforce_mapping.closed_won_callout(message),
                time=_event_time(message.get("eventTime")) or now,
            )

        return await self._intake("crm", record, deal, request, body)

    # --- health -------------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        def ping() -> None:
            with self.runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await self._store(ping)
            reachable = True
        except ApiError:
            reachable = False
        running = self.status.worker_running
        healthy = reachable and running is not False
        return json_response(
            {
                "status": "ok" if healthy else "unavailable",
                "store": {"reachable": reachable},
                "worker": {"enabled": running is not None, "running": bool(running)},
            },
            200 if healthy else 503,
        )

    # --- /v1 ----------------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        query = request.query
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(
                400,
                "invalid_parameter",
                f"query parameter 'status' is {status!r}; expected one of {list(STATUSES)}",
            )
        limit = _limit(query.get("limit"))
        after, before = _position(query, "after"), _position(query, "before")
        if after is not None and before is not None:
            raise ApiError(
                400,
                "invalid_parameter",
                "query parameters 'after' and 'before' exclude each other; expected one cursor",
            )
        rows: list[EventRow] = await self._store(
            lambda: list_events(
                self.runtime,
                status=status,
                subject=query.get("subject") or None,
                correlation_id=query.get("correlation_id") or None,
                limit=limit,
                after=after,
                before=before,
            )
        )
        answer: dict[str, Any] = {"data": [_event_json(r) for r in rows], "count": len(rows)}
        if len(rows) == limit:  # perhaps more: the next page starts past this one's last row
            cursor = "after" if after is not None else "before"
            kept = {k: v for k, v in query.items() if k not in ("after", "before")}
            answer["next"] = str(request.rel_url.with_query({**kept, cursor: str(rows[-1].pos)}))
        return json_response(answer)

    async def event(self, request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        found: dict[str, Any] | None = await self._store(lambda: find_event(self.runtime, ident))
        if found is None:
            raise ApiError(404, "not_found", f"no event with id or position {ident!r}")
        event = dict(found["event"])
        event["id"] = event.pop("event_id")
        with contextlib.suppress(ValueError, EventValidationError):
            event["data"] = decode_data(event["data"])
        steps = [{**s, "result": _maybe_json(s.get("result"))} for s in found["steps"]]
        return json_response({"event": event, "steps": steps, "failures": found["failures"]})

    async def invoice(self, request: web.Request) -> web.Response:
        """GetInvoiceStatus: by billing, ERP or CRM id, invoice number or global id, answered
        from the hub's own state (no external call)."""
        ident = request.match_info["id"]

        def read() -> InvoiceStatusView | None:
            try:
                return get_invoice_status(self.runtime, self.xref, ident)
            except DataError:
                return None

        view: InvoiceStatusView | None = await self._store(read)
        if view is None:
            raise ApiError(
                404,
                "not_found",
                f"no invoice known by {ident!r} (a billing, ERP or CRM id, the invoice number, "
                "or a global id INV-...)",
            )
        return web.Response(
            body=msgspec.json.encode({"invoice": _invoice_json(view)}),
            content_type="application/json",
            charset="utf-8",
        )

    def kept_reconciliation(self) -> Report | None:
        """The last report a scheduled run kept in the store (any serve process's)."""
        kept = kept_state(self.runtime.engine, RECONCILIATION)
        return None if kept is None else Report.from_json(kept.data)

    async def reconciliation(self, request: web.Request) -> web.Response:
        """The last three-way reconciliation the scheduled run kept (``q2c serve``)."""
        report: Report | None = await self._store(self.kept_reconciliation)
        if report is None:
            raise ApiError(
                404,
                "not_found",
                "no reconciliation has run yet (the scheduled run's interval is "
                "Q2C_RECONCILE_INTERVAL_SECONDS; `q2c reconcile` runs one now)",
            )
        return json_response({"report": report.to_json()})

    async def systems(self, request: web.Request) -> web.Response:
        rows = await self._store(lambda: system_status(self.runtime))
        return json_response({"data": rows})

    # --- middleware ---------------------------------------------------------------------------

    @web.middleware
    async def errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            _refuse_nul(request)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except NotAuthenticated as exc:
            return error_response(401, "unauthenticated", str(exc))
        except NotAllowed as exc:
            return error_response(403, "forbidden", str(exc))
        except ParameterError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except (UnknownEvent, UnknownDelivery) as exc:
            return error_response(404, "not_found", str(exc))
        except ControlError as exc:
            return error_response(409, "conflict", str(exc))
        except IdentityError as exc:
            return error_response(400, "invalid_request", str(exc))
        except web.HTTPException as exc:
            code = exc.reason.lower().replace(" ", "_")
            return error_response(
                exc.status, code, f"{request.method} {request.path}: {exc.reason}"
            )
        except Exception as exc:
            log.error(
                "internal error on %s %s: %s", request.method, request.path, type(exc).__name__
            )
            return error_response(500, "internal", "internal error; the operator can see the log")

    async def _check_token(self, token: str, client: str) -> Operator:
        """The store's check of ``token`` from ``client``; requests that miss the cache while the
        same check is in flight take its operator (a check as fresh as the cache's) instead of
        each queueing one (a fresh process's first burst did). A failed check is not shared:
        each such request checks for itself, so every failure is counted as before."""

        def check() -> Operator:
            return authenticate_token(self.runtime, token, client=client)

        key = (token, client)
        running = self._token_checks.get(key)
        if running is not None:
            with contextlib.suppress(Exception):
                return await asyncio.shield(running)
            checked: Operator = await self._store(check)
            return checked
        running = asyncio.get_running_loop().create_future()
        self._token_checks[key] = running
        try:
            operator: Operator = await self._store(check)
        except BaseException as exc:
            running.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            running.exception()  # retrieved: no joiner is a reason to report it
            raise
        else:
            running.set_result(operator)
            return operator
        finally:
            del self._token_checks[key]

    @web.middleware
    async def bearer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        metrics = request.path == METRICS_PATH
        if metrics and self.metrics_public:
            return await handler(request)
        if not (request.path.startswith("/v1") or metrics) or request.path == OPENAPI_PATH:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        hint = f"; {METRICS_ACCESS_HINT}" if metrics else ""
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", f"send 'Authorization: Bearer <token>'{hint}")
        client, presented = client_of(request), token.strip()
        operator = cached_operator(self.runtime, presented, client=client)
        if operator is None:
            try:
                operator = await self._check_token(presented, client)
            except NotAuthenticated as exc:
                raise ApiError(401, "unauthenticated", f"{exc}{hint}") from None
        operator.require("viewer", f"{request.method} {request.path}")
        request[OPERATOR] = operator
        return await handler(request)


def _refuse_nul(request: web.Request) -> None:
    """No store keeps a NUL in text (PostgreSQL refuses it): a 400, not a failing store."""
    if "\x00" in request.path:
        raise ApiError(400, "invalid_parameter", "the path holds a NUL character")
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise ApiError(
                400, "invalid_parameter", f"query parameter {name!r} holds a NUL character"
            )


def _position(query: Mapping[str, str], name: str) -> int | None:
    """A keyset cursor: a log position (checked by the route table; absent or empty: none)."""
    raw = query.get(name)
    return int(raw) if raw else None


def _limit(raw: str | None, *, default: int = 50) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(
            400,
            "invalid_parameter",
            f"query parameter 'limit' is {raw!r}; expected a whole number from 1 to {MAX_LIMIT}",
        )
    return value


HUB: Final = web.AppKey("hub", HubApi)
KPI_METRICS: Final = web.AppKey("kpi_metrics", CollectorRegistry)
"""The store-derived metrics of this app's store (the per-process ones are process-wide)."""


def build_app(
    runtime: Runtime,
    *,
    stripe_verifier: StripeVerifier | None = None,
    callout_secret: str | None = None,
    clock: Clock | None = None,
    status: HubStatus | None = None,
    callout_tolerance: int = 300,
    store_timeout: float = 15.0,
    console_links: ObjectLinks | None = None,
    oidc: OidcClient | None = None,
    metrics_public: bool | None = None,
) -> web.Application:
    """The API for ``runtime``; connectors are not needed (the verifier carries the secret).

    With ``console_links`` the operations console is served under ``/console``; with ``oidc``
    too, its sign-in also goes through that OpenID Connect provider. ``/metrics`` needs a
    viewer's token unless ``metrics_public`` (default: ``Q2C_METRICS_PUBLIC``)."""
    settings = get_settings()
    public = settings.metrics_public if metrics_public is None else metrics_public
    hub = HubApi(
        runtime,
        stripe_verifier=stripe_verifier,
        callout_secret=callout_secret,
        clock=clock or SystemClock(),
        status=status or HubStatus(),
        callout_tolerance=callout_tolerance,
        store_timeout=store_timeout,
        metrics_public=public,
    )
    app = web.Application(middlewares=[hub.errors, hub.bearer], client_max_size=MAX_BODY)
    app[HUB] = hub

    async def close_store_threads(app: web.Application) -> None:
        await asyncio.to_thread(hub.store_threads.close)

    async def ready_store_reads(app: web.Application) -> None:
        """Before the site listens: the store threads and the invoice read's connections, so a
        freshly started process's first answers wait for neither (its p99 did)."""
        hub.store_threads.start()
        try:
            await hub._store(lambda: warm_invoice_status(runtime, hub.store_threads.limit))
            await hub._store(lambda: warm_token_checks(runtime, kept_connections(runtime.engine)))
        except Exception as exc:  # a store down now: requests connect when it is back
            log.warning("store connections not readied at start: %s", type(exc).__name__)

    app.on_startup.append(ready_store_reads)
    app.on_cleanup.append(close_store_threads)
    from quote2cash.api.routes import ROUTES
    from quote2cash.api.routing import checked

    app[KPI_METRICS] = kpi_registry(
        runtime.engine, cache_seconds=settings.metrics_cache_seconds, clock=runtime.clock
    )
    for route in ROUTES:
        if route.path == METRICS_PATH and public:
            route = replace(route, role=None)
        app.router.add_route(route.method, route.path, checked(route, hub))
    if console_links is not None:
        from quote2cash.console.app import add_console
        from quote2cash.console.context import Console

        console = Console(runtime, console_links, reconciliation=hub.kept_reconciliation)
        add_console(app, console)
        if oidc is not None:
            from quote2cash.console.oidc_routes import add_oidc_routes
            from quote2cash.console.views.signin import start_session

            add_oidc_routes(app, runtime=runtime, client=oidc, start_session=start_session)
            console.oidc_enabled = True
    return app
