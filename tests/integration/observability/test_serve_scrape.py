"""A real Prometheus scrapes ``q2c serve``: the shipped alert rules see a finance event
dead-lettered, page finance, and stop once a finance approver has approved its replay.

The hub is the product as an operator runs it: a store made by ``q2c init``, operators and
tokens made with ``q2c operators`` / ``q2c tokens``, ``q2c serve`` as a process, a Stripe
webhook signed with the hub's secret, and decisions through the API. Its workers are a second
hub process on the same store (this test's), with a two-attempt retry budget for
``billing.payment.failed``; with ``Q2C_LONG=1`` they are also ``q2c serve --workers`` with the
default budget of ten (minutes of backoff).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import stripe

from conftest import LONG, missing_service
from quote2cash.engine.clock import ManualClock
from quote2cash.engine.retry import RetryPolicy
from quote2cash.engine.runtime import Runtime
from quote2cash.sandbox.stripe import StripeEmulator
from support.kpi_scenario import History, Plan
from support.prometheus import PROMETHEUS, PrometheusServer, free_port, running_prometheus

T = TypeVar("T")
STRIPE_KEY = "sk_test_q2c_scrape"
WEBHOOK_SECRET = "whsec_q2c_scrape_test_endpoint"
FINANCE_ALERT = "FinanceEventDeadLettered"


@dataclass
class Tokens:
    """API tokens made with the CLI: an admin's, a scrape-only viewer's, an operator's (olivia)
    and a finance approver's (fiona)."""

    admin: str
    viewer: str
    operator: str
    finance_approver: str


@dataclass
class Hub:
    """One ``q2c serve`` process: its base URL and the log it writes (for failure messages)."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    @property
    def target(self) -> str:
        return self.url.removeprefix("http://")

    def tail(self, lines: int = 30) -> str:
        """The log's last lines, without the access lines of Prometheus's scrapes."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        kept = [line for line in text.splitlines() if "GET /metrics HTTP" not in line]
        return "\n".join(kept[-lines:])


@dataclass
class Store:
    url: str
    folder: Path
    tokens: Tokens
    plan: Plan


def hub_env(**extra: str) -> dict[str, str]:
    """The environment without the developer's Q2C_* settings, keeping the store's audit key
    and checkpoint file (conftest sets them) and the CI switch."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("Q2C_") or k.startswith("Q2C_AUDIT_") or k == "Q2C_REQUIRE_SERVICES"
    }
    env.update(extra)
    return env


def q2c(folder: Path, db: str, command: str, *, stdin: str = "", token: str | None = None) -> str:
    """Run ``q2c COMMAND --db DB`` (the real entry point); returns what it printed."""
    env = hub_env(**({"Q2C_TOKEN": token} if token else {}))
    done = subprocess.run(
        [sys.executable, "-m", "quote2cash.cli", *command.split(), "--db", db],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=120,
    )
    assert done.returncode == 0, f"q2c {command}: {done.stderr[-2000:]}"
    return done.stdout


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def make_identities(folder: Path, db: str) -> Tokens:
    """As the README has it: init prints the admin's one-time password, everyone sets their own
    and creates their own token; the scrape token carries the viewer role only."""
    one_time = last_line(q2c(folder, db, "init"))
    secret = "the admin's scrape-test passphrase"
    q2c(folder, db, "operators password admin --password-stdin", stdin=f"{one_time}\n{secret}\n")
    admin = last_line(
        q2c(
            folder,
            db,
            "tokens create admin-cli --operator admin --password-stdin",
            stdin=f"{secret}\n",
        )
    )
    viewer = last_line(
        q2c(folder, db, "tokens create prometheus-scrape --role viewer", token=admin)
    )
    made: dict[str, str] = {}
    for name, role in (("olivia", "operator"), ("fiona", "finance_approver")):
        once = last_line(q2c(folder, db, f"operators add {name} --role {role}", token=admin))
        secret = f"{name}'s own long passphrase"
        q2c(folder, db, f"operators password {name} --password-stdin", stdin=f"{once}\n{secret}\n")
        made[role] = last_line(
            q2c(
                folder,
                db,
                f"tokens create {name}-cli --operator {name} --password-stdin",
                stdin=f"{secret}\n",
            )
        )
    for token in (admin, viewer, *made.values()):
        assert token.startswith("q2c_"), "a token is the last line `q2c tokens create` prints"
    return Tokens(admin, viewer, made["operator"], made["finance_approver"])


async def play_history(db: str, start: datetime) -> Plan:
    """Deals of US, DE and no entity, each invoiced and paid, and three amendments (one fails),
    through the engine, so the KPIs have something to measure."""
    clock = ManualClock(start)
    runtime = Runtime.open(db, clock=clock)
    try:
        history = History(runtime, clock)
        deals = [
            await history.deal(n, start + timedelta(minutes=n), ["US", "DE", None][n % 3])
            for n in range(6)
        ]
        for deal in deals:
            await history.invoice(deal, int(deal.contract[2:]), deal.closed_at + timedelta(hours=1))
        await history.amendment(deals[0], 0, clock.now(), "done")
        await history.amendment(deals[1], 1, clock.now(), "exception")
        await history.amendment(deals[2], 2, clock.now(), "done")
        return history.plan
    finally:
        runtime.close()


def systems_yaml(billing_url: str) -> str:
    return (
        "billing:\n  kind: stripe\n  settings:\n"
        f"    api_key: {STRIPE_KEY}\n    base_url: {billing_url}\n"
        "    webhook_secret: ${STRIPE_WHSEC}\n"
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    if shutil.which(PROMETHEUS) is None:
        missing_service(f"{PROMETHEUS} missing (Debian's prometheus; make test installs it)")
    folder = tmp_path_factory.mktemp("scraped-hub")
    db = f"sqlite:///{folder / 'hub.sqlite'}"
    tokens = make_identities(folder, db)
    # Two hours ago, so the amendments fall inside the ratio's windows on the hub's clock.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    plan = asyncio.run(play_history(db, start))
    unreachable = f"http://127.0.0.1:{free_port()}"
    (folder / "systems.yaml").write_text(systems_yaml(unreachable), encoding="utf-8")
    return Store(db, folder, tokens, plan)


def start_hub(
    store: Store,
    name: str,
    *,
    workers: bool = False,
    billing_url: str | None = None,
    **settings: str,
) -> Hub:
    """``q2c serve`` without polling (and without workers unless told), /metrics reading the
    store at every scrape; billing at ``billing_url`` (default: an address nobody answers)."""
    log = store.folder / f"{name}.log"
    systems = store.folder / "systems.yaml"
    if billing_url is not None:
        systems = store.folder / f"{name}-systems.yaml"
        systems.write_text(systems_yaml(billing_url), encoding="utf-8")
    env = hub_env(
        STRIPE_WHSEC=WEBHOOK_SECRET,
        Q2C_METRICS_CACHE_SECONDS="0",
        Q2C_RECONCILE_INTERVAL_SECONDS="0",
        **settings,
    )
    config = ("--config", str(systems), "--db", store.url)
    working = "--workers" if workers else "--no-workers"
    serve = ("serve", "--port", "0", working, "--poll-seconds", "0", "--no-console")
    with log.open("w", encoding="utf-8") as log_stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "quote2cash.cli", *serve, *config],
            stdout=subprocess.PIPE,
            stderr=log_stream,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=store.folder,
            text=True,
        )
    first: list[str] = []
    output = process.stdout
    assert output is not None
    reader = threading.Thread(target=lambda: first.append(output.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    hub = Hub("", process, log)
    if not first or not first[0].startswith("q2c serving on http://127.0.0.1:"):
        stop_hub(hub)
        raise AssertionError(f"q2c serve did not start: {first}\n{hub.tail()}")
    hub.url = first[0].split()[-1]
    return hub


def stop_hub(hub: Hub) -> None:
    if hub.process.poll() is None:
        hub.process.terminate()
        try:
            hub.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            hub.process.kill()
            hub.process.wait(timeout=10)
    if hub.process.stdout is not None:
        hub.process.stdout.close()


@pytest.fixture(scope="module")
def hub(store: Store) -> Iterator[Hub]:
    served = start_hub(store, "hub")
    try:
        yield served
    finally:
        stop_hub(served)
    assert served.process.returncode == 0, served.tail()
    log = served.log.read_text(encoding="utf-8")
    for token in (store.tokens.viewer, store.tokens.operator, store.tokens.finance_approver):
        assert token not in log
    assert WEBHOOK_SECRET not in log


def explained(hub: Hub, wait: Callable[[], T]) -> T:
    """``wait()``; a timeout's message (alerts, targets, Prometheus's log) gains the hub's log."""
    try:
        return wait()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nq2c serve's log:\n{hub.tail()}") from None


def number(prometheus: PrometheusServer, expr: str) -> float:
    """The single value of an instant query (fails naming the query if there is not one)."""
    found = prometheus.query(expr)
    assert len(found) == 1, (expr, found)
    return float(found[0]["value"][1])


def test_prometheus_scrapes_serve_with_the_viewer_token_and_sees_the_kpis(
    store: Store, hub: Hub
) -> None:
    plan = store.plan
    with running_prometheus(hub.target, bearer_token=store.tokens.viewer) as prometheus:
        explained(
            hub,
            lambda: prometheus.wait_until(
                lambda: prometheus.query("q2c_order_activation_seconds_count"),
                "a scrape of q2c serve",
            ),
        )
        assert number(prometheus, 'up{job="quote2cash"}') == 1
        (target,) = prometheus.targets()
        assert target["health"] == "up" and target["lastError"] == ""

        systems = {r["metric"]["system"] for r in prometheus.query("q2c_backlog_events")}
        assert {"billing", "crm", "erp"} <= systems
        # The exception-held amendment is work waiting on no system.
        assert number(prometheus, 'q2c_backlog_events{system="none"}') == 1

        by_entity: dict[str, list[float]] = {}
        for deal in plan.deals:
            by_entity.setdefault(deal.entity or "unknown", []).append(deal.billing_after)
        for entity, delays in by_entity.items():
            labels = f'entity="{entity}",stage="billing"'
            assert number(prometheus, f"q2c_order_activation_seconds_count{{{labels}}}") == len(
                delays
            )
            assert number(prometheus, f"q2c_order_activation_seconds_sum{{{labels}}}") == sum(
                delays
            )
        assert number(prometheus, 'sum(q2c_order_activation_seconds_count{stage="erp"})') == len(
            plan.deals
        )
        lag = 'sum(q2c_invoice_generation_lag_seconds_sum{stage="erp"})'
        assert number(prometheus, lag) == sum(i.erp_after for i in plan.invoices)
        lag_count = 'sum(q2c_invoice_generation_lag_seconds_count{stage="crm"})'
        assert number(prometheus, lag_count) == len(plan.invoices)
        ratio = 'q2c_amendment_failure_ratio{window="24h"}'
        assert number(prometheus, ratio) == pytest.approx(1 / 3)
        assert number(prometheus, 'q2c_events_dead_lettered{event_class="finance"}') == 0
        assert prometheus.alert_states(FINANCE_ALERT) == []


def test_without_the_token_the_target_is_down_unless_metrics_are_public(
    store: Store, hub: Hub
) -> None:
    with running_prometheus(hub.target) as prometheus:
        explained(
            hub,
            lambda: prometheus.wait_until(
                lambda: prometheus.query('up{job="quote2cash"} == 0'), "a refused scrape"
            ),
        )
        (target,) = prometheus.targets()
        assert target["health"] == "down"
        assert "401" in target["lastError"], target
        assert prometheus.query("q2c_backlog_events") == []

    public = start_hub(store, "public-hub", Q2C_METRICS_PUBLIC="true")
    try:
        with running_prometheus(public.target) as prometheus:
            explained(
                public,
                lambda: prometheus.wait_until(
                    lambda: prometheus.query("q2c_backlog_events"), "a scrape without a token"
                ),
            )
            assert number(prometheus, 'up{job="quote2cash"}') == 1
    finally:
        stop_hub(public)


# --- the scenario: a payment failure dead-lettered, paged, replayed --------------------------


@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[str]:
    emulator = StripeEmulator()
    base_url, stop = emulator.start_in_thread()
    try:
        yield base_url
    finally:
        stop()


def declined_then_paid(base_url: str) -> tuple[str, str]:
    """An invoice whose card payment is declined, then paid by bank transfer: (the
    ``invoice.payment_failed`` event's id, the invoice's id)."""
    sdk = stripe.StripeClient(
        api_key=STRIPE_KEY, base_addresses={"api": base_url}, max_network_retries=0
    )
    customer = sdk.v1.customers.create(params={"name": "Kestrel GmbH", "email": "ap@k.example"})
    invoice = sdk.v1.invoices.create(
        params={"customer": customer.id, "collection_method": "charge_automatically"}
    )
    sdk.v1.invoice_items.create(
        params={"customer": customer.id, "invoice": invoice.id, "amount": 4200, "currency": "usd"}
    )
    with pytest.raises(stripe.CardError):
        sdk.v1.invoices.pay(invoice.id, params={"payment_method": "pm_card_chargeCustomerFail"})
    listed = sdk.v1.events.list(params={"type": "invoice.payment_failed"}).data
    (failed,) = [e for e in listed if e.data.object.id == invoice.id]
    paid = sdk.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})
    assert paid.status == "paid"
    return str(failed.id), str(invoice.id)


def stripe_signature(payload: bytes, secret: str) -> str:
    """Stripe's documented scheme, computed here independently of the hub."""
    t = int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class Api:
    """The hub's API as a person with ``token`` calls it."""

    def __init__(self, http: aiohttp.ClientSession, hub: Hub, token: str) -> None:
        self.http, self.hub, self.token = http, hub, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(
            method, f"{self.hub.url}{path}", json=body, headers=headers
        ) as answer:
            return answer.status, await answer.json()

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = await self.call(method, path, body)
        assert got == status, (method, path, got, answer)
        return answer


async def until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    hub: Hub,
    *,
    within: float = 60.0,
    more: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until ``done``; a timeout names ``what`` and gives the hubs' logs."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no {what} within {within:.0f} s; last {value}\nq2c serve's log:\n"
                f"{hub.tail()}{more() if more else ''}"
            )
        await asyncio.sleep(0.2)


class ServeWorkers:
    """``q2c serve --workers`` with billing at the given URL and the retry budget its
    ``Q2C_RETRY_*`` settings give (``budget``; none: the default budget)."""

    def __init__(self, store: Store, budget: RetryPolicy | None = None) -> None:
        self.store = store
        self.hub: Hub | None = None
        self.runs = 0
        self.attempts = (budget or RetryPolicy()).max_attempts
        self.patience = 60.0 if budget else 900.0
        self.settings = {}
        if budget is not None:
            self.settings = {
                "Q2C_RETRY_MAX_ATTEMPTS": str(budget.max_attempts),
                "Q2C_RETRY_BASE_SECONDS": str(budget.base_seconds),
                "Q2C_RETRY_CAP_SECONDS": str(budget.cap_seconds),
            }

    async def start(self, billing_url: str) -> None:
        self.runs += 1
        name = f"working-hub-{self.runs}"
        self.hub = await asyncio.to_thread(
            start_hub, self.store, name, workers=True, billing_url=billing_url, **self.settings
        )

    async def stop(self) -> None:
        if self.hub is not None:
            await asyncio.to_thread(stop_hub, self.hub)

    def close(self) -> None:
        pass

    def tail(self) -> str:
        return f"\nthe working q2c serve's log:\n{self.hub.tail()}" if self.hub else ""


async def test_a_dead_lettered_payment_pages_finance_until_its_replay_is_approved(
    store: Store, hub: Hub, stripe_emulator: str
) -> None:
    """Serve's own workers, with a budget of two tries set by ``Q2C_RETRY_*``."""
    budget = RetryPolicy(max_attempts=2, base_seconds=0.2, cap_seconds=0.2)
    await dead_letter_paged_and_replayed(store, hub, stripe_emulator, ServeWorkers(store, budget))


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="Q2C_LONG=1: the default retry budget backs off for minutes")
async def test_serve_s_own_workers_dead_letter_with_the_default_budget(
    store: Store, hub: Hub, stripe_emulator: str
) -> None:
    await dead_letter_paged_and_replayed(store, hub, stripe_emulator, ServeWorkers(store))


async def dead_letter_paged_and_replayed(
    store: Store, hub: Hub, stripe_emulator: str, workers: ServeWorkers
) -> None:
    """A declined payment reaches the hub by a signed webhook while billing's API is unreachable
    from the workers: dead-lettered, FinanceEventDeadLettered pages finance; billing is back,
    olivia requests the replay (she may not approve it herself), fiona approves it, the workers
    handle it (the invoice was paid meanwhile) and the alert resolves."""
    event_id, invoice_id = await asyncio.to_thread(declined_then_paid, stripe_emulator)
    prometheus_cm = running_prometheus(hub.target, bearer_token=store.tokens.viewer)
    prometheus = await asyncio.to_thread(prometheus_cm.__enter__)
    try:
        async with aiohttp.ClientSession() as http:
            viewer = Api(http, hub, store.tokens.viewer)
            olivia = Api(http, hub, store.tokens.operator)
            fiona = Api(http, hub, store.tokens.finance_approver)
            await asyncio.to_thread(
                explained,
                hub,
                lambda: prometheus.wait_until(
                    lambda: prometheus.query('q2c_events_dead_lettered{event_class="finance"}'),
                    "a scrape of the dead letters",
                ),
            )
            assert prometheus.alert_states(FINANCE_ALERT) == []

            async with http.get(
                f"{stripe_emulator}/v1/events/{event_id}",
                headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            ) as answer:
                payload = await answer.read()
            headers = {"Stripe-Signature": stripe_signature(payload, WEBHOOK_SECRET)}
            async with http.post(
                f"{hub.url}/webhooks/stripe", data=payload, headers=headers
            ) as answer:
                assert answer.status == 200, await answer.text()
            await workers.start(f"http://127.0.0.1:{free_port()}")

            async def dead() -> list[dict[str, Any]]:
                answer = await viewer.ok("GET", "/v1/exceptions?kind=dead")
                return [e for e in answer["data"] if e["id"] == event_id]

            (letter,) = await until(
                dead, bool, "dead letter", hub, within=workers.patience, more=workers.tail
            )
            assert letter["type"] == "billing.payment.failed"
            assert letter["finance_sensitive"] is True
            assert letter["attempts"] == workers.attempts
            assert "could not reach Stripe" in letter["last_error"]
            await workers.stop()

            await asyncio.to_thread(
                explained, hub, lambda: prometheus.wait_for_alert(FINANCE_ALERT, "firing")
            )
            (alert,) = [a for a in prometheus.alerts() if a["labels"]["alertname"] == FINANCE_ALERT]
            assert alert["labels"]["severity"] == "page"
            assert alert["labels"]["team"] == "finance-systems"
            assert alert["annotations"]["summary"].startswith("1 finance-sensitive event(s)")
            assert number(prometheus, 'q2c_events_dead_lettered{event_class="finance"}') == 1

            asked = await olivia.ok(
                "POST",
                "/v1/replay-requests",
                {"event_ids": [event_id], "reason": "billing reachable again"},
                status=201,
            )
            request = asked["request"]
            assert request["finance_sensitive"] is True and request["status"] == "pending"
            status, refused = await olivia.call(
                "POST", f"/v1/replay-requests/{request['id']}/approve", {"note": "mine"}
            )
            assert status == 403, refused
            await asyncio.to_thread(
                explained, hub, lambda: prometheus.wait_for_alert(FINANCE_ALERT, "firing", 5)
            )
            approved = await fiona.ok(
                "POST", f"/v1/replay-requests/{request['id']}/approve", {"note": "checked"}
            )
            assert approved["request"]["status"] == "executed"
            assert approved["request"]["decided_by"] == "fiona"

            await workers.start(stripe_emulator)

            async def event() -> dict[str, Any]:
                answer: dict[str, Any] = await viewer.ok("GET", f"/v1/events/{event_id}")
                return answer

            handled = await until(
                event, lambda e: e["event"]["status"] == "done", "replay", hub, more=workers.tail
            )
            assert [s["name"] for s in handled["steps"]] == ["billing.get_invoice"]
            assert handled["steps"][0]["result"]["external_ids"]["billing"] == invoice_id
            await asyncio.to_thread(
                explained, hub, lambda: prometheus.wait_for_no_alert(FINANCE_ALERT)
            )
            assert number(prometheus, 'q2c_events_dead_lettered{event_class="finance"}') == 0
    finally:
        await workers.stop()
        await asyncio.to_thread(prometheus_cm.__exit__, None, None, None)
