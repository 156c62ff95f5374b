"""Every route the hub serves, as one table (``ROUTES``): reads for the console and the
decisions (replay, exception actions, systems, quarantine, repair, tokens, operators).

Each decision is taken by the authenticated operator of the request's token and audited by
the engine; the role each needs is in the table (and the engine checks it again).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any, Final

from aiohttp import web
from sqlalchemy import select

from quote2cash.api import answers, bodies
from quote2cash.api.app import STATUSES, ApiError, HubApi, json_response
from quote2cash.api.intake import understand_delivery
from quote2cash.api.routing import Call, Handler, Param, Route
from quote2cash.engine.checkpoints import verify_store
from quote2cash.engine.control import pause_system, resume_system, schedule_window
from quote2cash.engine.exceptions import (
    RECOVERABILITIES,
    ExceptionItem,
    NeedsFinanceApproval,
    correct_and_retry,
    list_exceptions,
    preview_bulk_replay,
    resolve_exception,
    retry_exception,
)
from quote2cash.engine.quarantine import (
    STATUSES as QUARANTINE_STATUSES,
)
from quote2cash.engine.quarantine import (
    QuarantinedDelivery,
    QuarantineError,
    discard_delivery,
    get_quarantined,
    list_quarantine,
    release_delivery,
)
from quote2cash.engine.replay import (
    ReplayError,
    ReplayRequest,
    Selector,
    approve_replay,
    get_request,
    list_requests,
    reject_replay,
    request_replay,
)
from quote2cash.identity import NotAllowed
from quote2cash.identity.accounts import (
    add_operator,
    change_roles,
    disable_operator,
    list_operators,
)
from quote2cash.identity.tokens import issue_token, list_tokens, revoke_token
from quote2cash.observability import tracing
from quote2cash.reconcile.repair import file_repair, with_events
from quote2cash.store.schema import audit_log

LIMIT: Final = Param("limit", "how many to answer", "integer", minimum=1, maximum=1000)
AFTER: Final = Param(
    "after", "answer only what comes after this id or position", "integer", minimum=0
)
REPLAY_STATUSES: Final = ("pending", "executed", "rejected")
SYSTEM: Final = Param("system", "system", where="path", max_length=50)


def _pos(what: str) -> Param:
    return Param("pos", what, "integer", where="path", minimum=1)


def _id(what: str) -> Param:
    return Param("id", what, "integer", where="path", minimum=1)


def _legacy(method: Any) -> Handler:
    """A HubApi method that reads its own request, as a table handler."""

    async def handle(hub: HubApi, call: Call) -> web.StreamResponse:
        response: web.StreamResponse = await method(hub, call.request)
        return response

    handle.__name__ = method.__name__
    return handle


def _exception_json(item: ExceptionItem) -> dict[str, Any]:
    return {
        "pos": item.pos,
        "id": item.id,
        "source": item.source,
        "type": item.type,
        "subject": item.subject,
        "status": item.status,
        "category": item.category,
        "recoverability": item.recoverability,
        "last_error": item.reason,
        "attempts": item.attempts,
        "time": item.time,
        "correlation_id": item.correlation_id,
        "finance_sensitive": item.finance_sensitive,
    }


def _request_json(req: ReplayRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "status": req.status,
        "requested_by": req.requested_by,
        "reason": req.reason,
        "finance_sensitive": req.finance_sensitive,
        "event_count": req.event_count,
        "positions": list(req.positions),
        "decided_by": req.decided_by,
        "decision_note": req.decision_note,
        "corrections": {str(k): v for k, v in req.corrections.items()},
    }


def _delivery_json(delivery: QuarantinedDelivery, *, with_body: bool) -> dict[str, Any]:
    out = delivery.summary()
    if with_body:
        out["headers"] = delivery.headers
        out["body"] = delivery.body.decode("utf-8", "replace")
        out["body_base64"] = base64.b64encode(delivery.body).decode()
    return out


# --- reads --------------------------------------------------------------------------------


async def exceptions(hub: HubApi, call: Call) -> web.Response:
    """The exception queue by recoverability (``kind`` keeps the older status filter)."""
    kind = call.params.get("kind")
    rows: list[ExceptionItem] = await hub._store(
        lambda: list_exceptions(
            hub.runtime,
            recoverability=call.params.get("recoverability"),
            limit=call.params.get("limit", 200),
            after=call.params.get("after"),
        )
    )
    if kind:
        rows = [r for r in rows if r.status == kind]
    return json_response({"data": [_exception_json(r) for r in rows], "count": len(rows)})


async def quarantine_list(hub: HubApi, call: Call) -> web.Response:
    status = call.params.get("status", "held")
    rows: list[QuarantinedDelivery] = await hub._store(
        lambda: list_quarantine(
            hub.runtime,
            status=None if status == "all" else status,
            limit=call.params.get("limit", 50),
            after=call.params.get("after"),
        )
    )
    return json_response(
        {"data": [_delivery_json(d, with_body=False) for d in rows], "count": len(rows)}
    )


async def quarantine_show(hub: HubApi, call: Call) -> web.Response:
    ident = call.params["id"]
    try:
        delivery = await hub._store(lambda: get_quarantined(hub.runtime, ident))
    except QuarantineError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return json_response({"delivery": _delivery_json(delivery, with_body=True)})


async def replay_requests(hub: HubApi, call: Call) -> web.Response:
    rows: list[ReplayRequest] = await hub._store(
        lambda: list_requests(hub.runtime, call.params.get("status"))
    )
    return json_response({"data": [_request_json(r) for r in rows], "count": len(rows)})


async def replay_request(hub: HubApi, call: Call) -> web.Response:
    return json_response({"request": _request_json(await _existing_request(hub, call))})


async def audit_entries(hub: HubApi, call: Call) -> web.Response:
    """The audit log of every chain oldest first, paged by ``after`` (an entry's ``id``).

    Entries written before chains existed keep ``id`` equal to their ``seq``.
    """
    after, limit = call.params.get("after", 0), call.params.get("limit", 100)

    def read() -> list[dict[str, Any]]:
        q = select(audit_log).where(audit_log.c.id > after).order_by(audit_log.c.id).limit(limit)
        with hub.runtime.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        for row in rows:
            row["details"] = json.loads(row["details"] or "{}")
        return rows

    rows = await hub._store(read)
    return json_response({"data": rows, "count": len(rows)})


async def audit_verification(hub: HubApi, call: Call) -> web.Response:
    """Every keyed chain, its head, the anchors and the last signed checkpoint outside the store."""
    result = await hub._store(lambda: verify_store(hub.runtime))
    return json_response(
        {
            "ok": result.ok,
            "checked": result.checked,
            "first_broken_seq": result.first_broken_seq,
            "broken_chain": result.chain,
            "reason": result.reason,
            "key_id": result.key_id,
            "chains": result.chains,
            "last_checkpoint_seq": result.checkpoint_seq,
            "last_checkpoint_at": result.checkpoint_at,
        }
    )


async def tokens(hub: HubApi, call: Call) -> web.Response:
    """The caller's tokens (an admin sees every operator's), never a token's value."""
    operator = call.operator
    rows = await hub._store(lambda: list_tokens(hub.runtime))
    mine = [t for t in rows if operator.holds("admin") or t.owner == operator.name]
    data = [
        {
            "name": t.name,
            "owner": t.owner,
            "roles": sorted(t.roles),
            "created_at": t.created_at,
            "expires_at": t.expires_at,
            "revoked_at": t.revoked_at,
        }
        for t in mine
    ]
    return json_response({"data": data, "count": len(data)})


async def operators(hub: HubApi, call: Call) -> web.Response:
    rows = await hub._store(lambda: list_operators(hub.runtime))
    data = [
        {"name": a.name, "roles": sorted(a.roles), "email": a.email, "disabled": a.disabled}
        for a in rows
    ]
    return json_response({"data": data, "count": len(data)})


# --- decisions ----------------------------------------------------------------------------


async def _existing_request(hub: HubApi, call: Call) -> ReplayRequest:
    ident = call.params["id"]
    try:
        found: ReplayRequest = await hub._store(lambda: get_request(hub.runtime, ident))
    except ReplayError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return found


async def create_replay_request(hub: HubApi, call: Call) -> web.Response:
    """A replay request (201), or with ``dry_run`` the exact events it would take (200)."""
    body: bodies.ReplayRequestBody = call.body
    selector = Selector(
        tuple(body.event_ids), body.correlation_id, body.since, body.until, body.include_processed
    )
    if body.dry_run:
        preview = await hub._store(lambda: preview_bulk_replay(hub.runtime, selector))
        data = [
            {
                "pos": e.pos,
                "id": e.id,
                "source": e.source,
                "type": e.type,
                "subject": e.subject,
                "status": e.status,
                "time": e.time,
                "correlation_id": e.correlation_id,
                "finance_sensitive": e.finance_sensitive,
            }
            for e in preview
        ]
        return json_response({"dry_run": True, "data": data, "count": len(data)})
    if not body.reason.strip():
        raise ApiError(
            400, "invalid_body", "request body: field 'reason' is missing or blank; say why"
        )
    operator = call.operator
    req = await hub._store(
        lambda: request_replay(hub.runtime, selector, by=operator, reason=body.reason)
    )
    return json_response({"request": _request_json(req)}, 201)


async def approve_replay_request(hub: HubApi, call: Call) -> web.Response:
    await _existing_request(hub, call)
    operator, note = call.operator, call.body.note
    req = await hub._store(
        lambda: approve_replay(hub.runtime, call.params["id"], by=operator, note=note)
    )
    return json_response({"request": _request_json(req)})


async def reject_replay_request(hub: HubApi, call: Call) -> web.Response:
    await _existing_request(hub, call)
    operator, note = call.operator, call.body.note
    req = await hub._store(
        lambda: reject_replay(hub.runtime, call.params["id"], by=operator, note=note)
    )
    return json_response({"request": _request_json(req)})


async def retry(hub: HubApi, call: Call) -> web.Response:
    pos, operator = call.params["pos"], call.operator
    try:
        await hub._store(lambda: retry_exception(hub.runtime, pos, by=operator))
    except NeedsFinanceApproval as exc:
        raise ApiError(409, "needs_finance_approval", str(exc)) from None
    return json_response({"retried": pos})


async def correct(hub: HubApi, call: Call) -> web.Response:
    """Correct a failed event's data and retry it; finance-sensitive: a replay request (202)."""
    body: bodies.Correction = call.body
    pos, operator = call.params["pos"], call.operator
    req = await hub._store(
        lambda: correct_and_retry(hub.runtime, pos, body.data, by=operator, reason=body.reason)
    )
    if req is not None:
        return json_response({"corrected": None, "request": _request_json(req)}, 202)
    return json_response({"corrected": pos, "request": None})


async def resolve(hub: HubApi, call: Call) -> web.Response:
    pos, operator, reason = call.params["pos"], call.operator, call.body.reason
    await hub._store(lambda: resolve_exception(hub.runtime, pos, by=operator, reason=reason))
    return json_response({"resolved": pos})


async def pause(hub: HubApi, call: Call) -> web.Response:
    system, operator, reason = call.params["system"], call.operator, call.body.reason
    await hub._store(lambda: pause_system(hub.runtime, system, by=operator, reason=reason))
    return json_response({"system": system, "paused": True})


async def resume(hub: HubApi, call: Call) -> web.Response:
    system, operator = call.params["system"], call.operator
    reason = call.body.reason or "resumed"
    await hub._store(lambda: resume_system(hub.runtime, system, by=operator, reason=reason))
    return json_response({"system": system, "paused": False})


async def schedule(hub: HubApi, call: Call) -> web.Response:
    body: bodies.WindowBody = call.body
    system, operator = call.params["system"], call.operator
    window = await hub._store(
        lambda: schedule_window(
            hub.runtime, system, body.starts_at, body.ends_at, by=operator, reason=body.reason
        )
    )
    return json_response({"system": system, "window": window}, 201)


async def release(hub: HubApi, call: Call) -> web.Response:
    ident, operator, note = call.params["id"], call.operator, call.body.note
    with tracing.intake_span("intake quarantine release", {"q2c.via": "api"}):
        event = await hub._store(
            lambda: release_delivery(
                hub.runtime,
                ident,
                lambda d: understand_delivery(hub.runtime, d),
                by=operator,
                note=note,
            )
        )
        tracing.describe_intake(event)
    return json_response({"released": ident, "event_id": event.id})


async def discard(hub: HubApi, call: Call) -> web.Response:
    ident, operator, reason = call.params["id"], call.operator, call.body.reason
    await hub._store(lambda: discard_delivery(hub.runtime, ident, by=operator, reason=reason))
    return json_response({"discarded": ident})


async def repair_drift(hub: HubApi, call: Call) -> web.Response:
    """File the replay request that repairs a drift of the last reconciliation."""
    report = await hub._store(hub.kept_reconciliation)
    drift = report.find(call.params["drift"]) if report else None
    if drift is None:
        raise ApiError(404, "not_found", f"no drift {call.params['drift']!r} in the last report")
    operator = call.operator
    req = await hub._store(
        lambda: file_repair(hub.runtime, with_events(hub.runtime, [drift])[0], by=operator)
    )
    return json_response({"request": _request_json(req)}, 201)


async def create_token(hub: HubApi, call: Call) -> web.Response:
    """A token of the caller's own; it carries at most the calling credential's roles."""
    body: bodies.TokenBody = call.body
    operator = call.operator
    beyond = sorted(set(body.roles) - operator.roles)
    if beyond:
        raise NotAllowed(
            f"operator {operator.name!r} may not issue a token with role(s) {beyond}: "
            "this credential does not carry them"
        )
    ttl = timedelta(days=body.ttl_days) if body.ttl_days else None
    token = await hub._store(
        lambda: issue_token(hub.runtime, operator.name, body.name, body.roles, by=operator, ttl=ttl)
    )
    return json_response(
        {"name": body.name, "owner": operator.name, "roles": sorted(body.roles), "token": token},
        201,
    )


async def revoke(hub: HubApi, call: Call) -> web.Response:
    operator, name = call.operator, call.params["name"]
    await hub._store(lambda: revoke_token(hub.runtime, name, by=operator))
    return json_response({"revoked": name})


async def create_operator(hub: HubApi, call: Call) -> web.Response:
    body: bodies.OperatorBody = call.body
    operator = call.operator
    password = await hub._store(
        lambda: add_operator(hub.runtime, body.name, body.roles, by=operator, email=body.email)
    )
    return json_response(
        {"name": body.name, "roles": sorted(body.roles), "one_time_password": password}, 201
    )


async def set_roles(hub: HubApi, call: Call) -> web.Response:
    operator, name, roles = call.operator, call.params["name"], call.body.roles
    await hub._store(lambda: change_roles(hub.runtime, name, roles, by=operator))
    return json_response({"name": name, "roles": sorted(roles)})


async def disable(hub: HubApi, call: Call) -> web.Response:
    operator, name = call.operator, call.params["name"]
    await hub._store(lambda: disable_operator(hub.runtime, name, by=operator))
    return json_response({"name": name, "disabled": True})


async def metrics(hub: HubApi, call: Call) -> web.Response:
    """Prometheus text format: this process's instruments, then the store's KPIs."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from quote2cash.api.app import KPI_METRICS
    from quote2cash.observability.metrics import REGISTRY

    kpis = call.request.app[KPI_METRICS]
    body = generate_latest(REGISTRY) + await hub._store(lambda: generate_latest(kpis))
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def ingest_usage(hub: HubApi, call: Call) -> web.Response:
    """A usage batch, committed whole: its receipt and why each refused record was refused."""
    from quote2cash.usage.intake import MAX_API_RECORDS, intake_for
    from quote2cash.usage.quarantine import UsageQuarantine

    body: bodies.UsageBatchBody = call.body
    count = len(body.records)
    if count > MAX_API_RECORDS:
        raise ApiError(
            413,
            "batch_too_large",
            f"field 'records' holds {count} records: at most {MAX_API_RECORDS} per batch",
        )
    if count == 0:
        raise ApiError(422, "empty_batch", "field 'records' is empty: expected 1 to 10000 records")
    operator = call.operator

    def run() -> dict[str, Any]:
        intake = intake_for(hub.runtime.engine, hub.runtime.clock)
        try:
            receipt = intake.ingest_rows(
                body.records,
                source=body.source,
                actor=operator.name,
                corrections=body.corrections,
            )
            refused = UsageQuarantine(intake).records(
                status=None, batch_id=receipt.batch_id, limit=MAX_API_RECORDS
            )
        finally:
            intake.close()
        return {
            **receipt.as_dict(),
            "quarantined_records": [
                {
                    "id": r.id,
                    "record_id": r.record_id,
                    "line": r.line,
                    "field": r.field,
                    "reason": r.reason,
                }
                for r in refused
            ],
        }

    return json_response(await hub._store(run))


async def openapi(hub: HubApi, call: Call) -> web.Response:
    from quote2cash.api.openapi import document

    return json_response(document(ROUTES))


# --- the table ----------------------------------------------------------------------------

NAME: Final = Param("name", "name", where="path", max_length=100)
DECISION: Final = "decisions"

ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/health", _legacy(HubApi.health), "Health of the store and the worker.",
          role=None, answer=answers.Health, answers={503: "the store or the worker is down"},
          tag="health"),
    Route("GET", "/v1/openapi.json", openapi, "This OpenAPI document.", role=None, tag="meta"),
    Route("GET", "/metrics", metrics, "Prometheus metrics and business KPIs (text format).",
          tag="metrics", media="text/plain"),
    Route("POST", "/webhooks/stripe", _legacy(HubApi.stripe_webhook),
          "Stripe webhook (signed with Stripe-Signature).", role=None,
          params=(Param("Stripe-Signature", "Stripe's signature header", where="header",
                        max_length=4000),),
          answers={202: "signed but not understood: quarantined",
                   503: "no webhook secret configured, or the store is down"},
          tag="webhooks"),
    Route("POST", "/webhooks/salesforce", _legacy(HubApi.salesforce_callout),
          "Salesforce Closed-Won callout (signed with X-Q2C-Signature).", role=None,
          params=(Param("X-Q2C-Signature", "the callout's signature header", where="header",
                        max_length=4000),),
          answers={202: "signed but not understood: quarantined",
                   503: "no callout secret configured, or the store is down"},
          tag="webhooks"),
    Route("GET", "/v1/events", _legacy(HubApi.events), "The newest events, filtered, paged.",
          answer=answers.EventPage,
          params=(Param("status", "event status", enum=STATUSES),
                  Param("subject", "business key"), Param("correlation_id", "deal's id"), LIMIT,
                  Param("after", "keyset cursor: oldest first, from just after this log "
                        "position (read the log forward; 'next' continues)", "integer",
                        minimum=0),
                  Param("before", "keyset cursor: newest first, from just before this log "
                        "position (what 'next' of a newest-first page names)", "integer",
                        minimum=1))),
    Route("GET", "/v1/events/{id}", _legacy(HubApi.event),
          "One event by id or log position, with its steps and failures.",
          params=(Param("id", "event id or position", where="path", max_length=200),)),
    Route("GET", "/v1/exceptions", exceptions, "The exception queue by recoverability.",
          answer=answers.ExceptionPage,
          params=(Param("recoverability", "who or what recovers it", enum=RECOVERABILITIES),
                  Param("kind", "failed status", enum=("exception", "dead")), LIMIT, AFTER)),
    Route("GET", "/v1/systems", _legacy(HubApi.systems), "Target systems: pauses and windows."),
    Route("GET", "/v1/invoices/{id}", _legacy(HubApi.invoice),
          "An invoice's status by any system's id or its number.",
          params=(Param("id", "invoice id", where="path", max_length=200),)),
    Route("GET", "/v1/reconciliation", _legacy(HubApi.reconciliation),
          "The last scheduled three-way reconciliation."),
    Route("GET", "/v1/quarantine", quarantine_list,
          "Signed deliveries the hub could not understand.",
          answer=answers.DeliveryPage,
          params=(Param("status", "decision status", enum=(*QUARANTINE_STATUSES, "all")),
                  LIMIT, AFTER)),
    Route("GET", "/v1/quarantine/{id}", quarantine_show,
          "One quarantined delivery with its body and headers.",
          answer=answers.DeliveryAnswer,
          params=(_id("quarantined delivery"),)),
    Route("GET", "/v1/replay-requests", replay_requests, "Replay requests.",
          answer=answers.ReplayRequestPage,
          params=(Param("status", "request status", enum=REPLAY_STATUSES),)),
    Route("GET", "/v1/replay-requests/{id}", replay_request, "One replay request.",
          answer=answers.ReplayRequestAnswer,
          params=(_id("replay request"),)),
    Route("GET", "/v1/audit", audit_entries, "The audit log, oldest first, paged.",
          answer=answers.AuditPage,
          params=(LIMIT, AFTER)),
    Route("GET", "/v1/audit/verify", audit_verification, "Verify the audit chain.",
          answer=answers.AuditVerification),
    Route("GET", "/v1/tokens", tokens, "The caller's API tokens (an admin: everyone's)."),
    Route("GET", "/v1/operators", operators, "Operator accounts.", role="admin"),
    Route("POST", "/v1/replay-requests", create_replay_request,
          "Request a replay (or preview it with dry_run).", role="operator",
          body=bodies.ReplayRequestBody, ok=201, answers={200: "dry run: the exact events"},
          tag=DECISION),
    Route("POST", "/v1/replay-requests/{id}/approve", approve_replay_request,
          "Approve and execute a replay request.", role="viewer",
          answer=answers.ReplayRequestAnswer,
          params=(_id("replay request"),), body=bodies.DecisionNote, tag=DECISION),
    Route("POST", "/v1/replay-requests/{id}/reject", reject_replay_request,
          "Reject a replay request.", role="viewer",
          answer=answers.ReplayRequestAnswer,
          params=(_id("replay request"),), body=bodies.RejectionNote, tag=DECISION),
    Route("POST", "/v1/exceptions/{pos}/retry", retry, "Retry a failed event.",
          role="operator", params=(_pos("failed event at position"),),
          body=bodies.EmptyBody, tag=DECISION),
    Route("POST", "/v1/exceptions/{pos}/correct", correct,
          "Correct a failed event's data and retry it.", role="operator",
          params=(_pos("failed event at position"),), body=bodies.Correction,
          answers={202: "finance-sensitive: a replay request carries the correction"},
          tag=DECISION),
    Route("POST", "/v1/exceptions/{pos}/resolve", resolve,
          "Resolve a failed event without running it.", role="operator",
          params=(_pos("failed event at position"),), body=bodies.ReasonBody, tag=DECISION),
    Route("POST", "/v1/systems/{system}/pause", pause, "Pause a target system.",
          role="operator", params=(SYSTEM,), body=bodies.ReasonBody, tag=DECISION),
    Route("POST", "/v1/systems/{system}/resume", resume, "Resume a target system.",
          role="operator", params=(SYSTEM,), body=bodies.OptionalReason, tag=DECISION),
    Route("POST", "/v1/systems/{system}/windows", schedule,
          "Schedule a maintenance window.", role="operator", params=(SYSTEM,),
          body=bodies.WindowBody, ok=201, tag=DECISION),
    Route("POST", "/v1/quarantine/{id}/release", release,
          "Release a quarantined delivery into the log.", role="operator",
          params=(_id("quarantined delivery"),), body=bodies.DecisionNote, tag=DECISION),
    Route("POST", "/v1/quarantine/{id}/discard", discard,
          "Discard a quarantined delivery.", role="operator",
          params=(_id("quarantined delivery"),), body=bodies.ReasonBody, tag=DECISION),
    Route("POST", "/v1/reconciliation/drifts/{drift}/repair", repair_drift,
          "File the replay request that repairs a drift.", role="operator",
          params=(Param("drift", "drift id", where="path", max_length=40),),
          body=bodies.EmptyBody, ok=201, tag=DECISION),
    Route("POST", "/v1/usage", ingest_usage,
          "Ingest a batch of usage records (validated, deduplicated against all history).",
          role="operator", body=bodies.UsageBatchBody,
          answers={413: "more than 10,000 records in the batch", 422: "no records"},
          tag="usage"),
    Route("POST", "/v1/tokens", create_token, "Issue an API token of the caller's own.",
          body=bodies.TokenBody, ok=201, tag=DECISION),
    Route("POST", "/v1/tokens/{name}/revoke", revoke, "Revoke an API token.",
          params=(NAME,), body=bodies.EmptyBody, tag=DECISION),
    Route("POST", "/v1/operators", create_operator, "Add an operator (admin).", role="admin",
          body=bodies.OperatorBody, ok=201, tag=DECISION),
    Route("POST", "/v1/operators/{name}/roles", set_roles, "Change an operator's roles.",
          role="admin", params=(NAME,), body=bodies.RolesBody, tag=DECISION),
    Route("POST", "/v1/operators/{name}/disable", disable, "Disable an operator.",
          role="admin", params=(NAME,), body=bodies.EmptyBody, tag=DECISION),
)  # fmt: skip
