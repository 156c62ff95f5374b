"""Quarter-end at scale (issue 17): closed-won deals, amendments and a renewal wave carried by
1, 2 and 4 ``q2c worker`` processes on one PostgreSQL store, inside Stripe's test-mode budget.

For each process count, a fresh sandbox (``q2c sandbox up``: the Stripe and Salesforce emulators,
Tryton on PostgreSQL) and a fresh hub store. Then:
1. **raw**: Tryton's own posting rate on that server (``erp_posting.raw``: create + post, one
   invoice per call and ``--batch`` per call), before the hub starts;
2. the hub: N ``q2c worker`` processes and one ``q2c serve`` (no workers) polling the CRM and
   billing every ``--poll-seconds``, all with one systems.yaml whose budgets are Stripe's test
   mode (25 requests/s) and a Salesforce daily allocation, shared through the store;
3. the sales org (simple-salesforce) closes ``--deals`` deals at once; ``--renewals`` of their
   accounts signed up in Stripe beforehand on one test clock; once the hub has created the CRM
   subscriptions, reps request ``--amendments`` seat increases (invoiced at once), and once the
   renewal subscriptions are live the clock moves a month on: the renewal wave;
4. when the hub has nothing left to do, the three systems are read back: every deal has one
   subscription in Stripe and in the CRM, one booking in Tryton, and every Stripe invoice of the
   run is posted once in Tryton (``lost``, ``duplicated``).

The emulators count calls server-side: ``over_budget_calls`` are calls beyond the budget in any
trailing second (Stripe: rate 25 plus ``--stripe-burst``; ``sandbox/budget_window.py``), calls
Stripe's own limiter refused (429: its token bucket of the same rate and burst), and calls
Salesforce refused for its daily allocation. Every figure includes the hub's guarantees
as shipped (recorded steps, audit chain, budgets in the store).

    python benchmarks/quarter_end.py --quick                 # a tenth: 1,000 / 200 / 500
    python benchmarks/quarter_end.py --deals 50 --amendments 10 --renewals 25 --processes 1
    python benchmarks/quarter_end.py                         # 10,000 / 2,000 / 5,000; 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import requests

from _common import PG_ADMIN, SRC, pg_database

sys.path.insert(0, str(SRC))

STRIPE_RATE = 25.0
"""Stripe's test-mode limit, requests/s (docs.stripe.com/rate-limits)."""
SF_PER_DAY = 101_000
"""Salesforce: 100,000 + 1,000 per licence per 24 h (one licence)."""
ERP_CALLS = ["get_*", "upsert_*", "book_*", "apply_*", "invoice_*", "issue_*", "reverse_*"]
ERP_CALLS += ["post_customer_*"]
"""The ERP steps other than invoice postings (``erp.<operation>``)."""
TRYTON_RPC = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] INFO werkzeug .*\"POST /[^ ]*rpc/? HTTP"
)
"""One JSON-RPC request in trytond's access log (its time, the server's local time: UTC here)."""
RENEWAL_SHIFT_S = 31 * 24 * 3600 + 3600
"""The renewal clock moves a month and an hour on: every monthly subscription on it renews."""


@dataclass
class Plan:
    deals: int
    amendments: int
    renewals: int
    processes: int
    poll_seconds: float
    stripe_burst: int
    hub_burst: int
    raw_invoices: int
    batch: int
    erp_slots: int
    timeout: float
    crm_slots: int | None = None
    keep: bool = False


@dataclass
class Run:
    """One measured run's handles and timings."""

    folder: Path
    state: dict[str, Any]
    db: str = ""
    closed_at: dict[str, float] = field(default_factory=dict)
    opportunities: dict[str, str] = field(default_factory=dict)
    amended: dict[str, int] = field(default_factory=dict)
    renewing: set[str] = field(default_factory=set)
    started: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)


# --- the sandbox ------------------------------------------------------------------------------


def sandbox_up(folder: Path) -> dict[str, Any]:
    from quote2cash.sandbox import orchestrator

    orchestrator.up(folder, tryton_backend="postgresql", progress=lambda m: log(f"  {m}"))
    state = orchestrator.read_state(folder)
    assert state is not None
    return state


def sandbox_down(folder: Path) -> None:
    from quote2cash.demo.sandbox import DemoSandbox

    DemoSandbox.down(folder)


def stripe_url(run: Run) -> str:
    return str(run.state["stripe"]["base_url"])


def sf_http(run: Run) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = run.state["salesforce"]["ca_file"]
    return session


def configure_emulators(run: Run, plan: Plan) -> None:
    """Stripe refuses and counts above its test-mode rate; Salesforce counts its day."""
    answer = requests.post(
        f"{stripe_url(run)}/_emulator/config",
        json={
            "rate_limit_per_second": STRIPE_RATE,
            "rate_limit_burst": plan.stripe_burst,
            "budget_rate": STRIPE_RATE,
            "budget_burst": plan.stripe_burst,
            "budget_window_seconds": 1.0,
        },
        timeout=10,
    )
    answer.raise_for_status()
    sf = run.state["salesforce"]["instance_url"]
    with contextlib.closing(sf_http(run)) as http:
        http.patch(
            f"{sf}/_emulator/config", json={"daily_api_limit": SF_PER_DAY, "api_usage": 0}
        ).raise_for_status()


def emulator_usage(run: Run) -> dict[str, Any]:
    stripe = requests.get(f"{stripe_url(run)}/_emulator/usage", timeout=30).json()
    sf = run.state["salesforce"]["instance_url"]
    with contextlib.closing(sf_http(run)) as http:
        crm = http.get(f"{sf}/_emulator/usage", timeout=30).json()
    return {"stripe": stripe, "crm": crm}


# --- the hub's configuration ------------------------------------------------------------------


def systems_yaml(run: Run, plan: Plan) -> tuple[Path, dict[str, str]]:
    """The connectors of the sandbox and the deployment's budgets; secrets as ``${ENV}``
    references, their values returned for the children's environment (file 0600)."""
    import yaml

    from quote2cash.connectors.stripe import StripeConfig
    from quote2cash.connectors.stripe.config import CollectionMethod
    from quote2cash.sandbox.systems import salesforce_config, tryton_config
    from quote2cash.sandbox.tryton import load_endpoint

    st, sf = run.state["stripe"], run.state["salesforce"]
    endpoint = load_endpoint(run.state["tryton"]["workdir"])
    assert endpoint is not None
    crm = salesforce_config(sf["instance_url"], sf["ca_file"]).model_dump(mode="json")
    crm.update(client_secret="${Q2C_BENCH_SF_SECRET}", password="${Q2C_BENCH_SF_PASSWORD}")
    if plan.crm_slots is not None:  # requests in flight per process (else the connector's)
        crm["max_concurrency"] = plan.crm_slots
    erp = tryton_config(endpoint, max_concurrency=plan.erp_slots, timeout=300.0).model_dump(
        mode="json"
    )
    erp["password"] = "${Q2C_BENCH_ERP_PASSWORD}"
    billing = StripeConfig.for_sandbox(
        st["base_url"],
        api_key=st["api_key"],
        webhook_secret=None,
        collection_method=CollectionMethod.SEND_INVOICE,
    ).model_dump(mode="json")
    billing["api_key"] = "${Q2C_BENCH_STRIPE_KEY}"
    billing.pop("webhook_secret", None)
    data = {
        "crm": {"kind": "salesforce", "settings": crm, "budgets": {"api": {"per_day": SF_PER_DAY}}},
        "erp": {
            "kind": "tryton",
            "settings": erp,
            # Tryton's calls in flight across every process; postings have slots of their own,
            # twice as many: a posting step waiting to join a micro-batch holds its slot
            # without a request of its own, and a batch of 8 costs Tryton half per invoice
            "budgets": {
                "calls": {"concurrency": plan.erp_slots, "operations": ERP_CALLS},
                "posting": {"concurrency": 2 * plan.erp_slots, "operations": ["post_invoice*"]},
            },
        },
        "billing": {
            "kind": "stripe",
            "settings": billing,
            "budgets": {"api": {"rate": STRIPE_RATE, "burst": plan.hub_burst}},
        },
    }
    path = run.folder / "systems.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    from quote2cash.sandbox.salesforce import DEFAULT_CLIENT_SECRET, DEFAULT_PASSWORD

    env = {
        "Q2C_BENCH_SF_SECRET": DEFAULT_CLIENT_SECRET,
        "Q2C_BENCH_SF_PASSWORD": DEFAULT_PASSWORD,
        "Q2C_BENCH_ERP_PASSWORD": endpoint.password,
        "Q2C_BENCH_STRIPE_KEY": st["api_key"],
    }
    return path, env


def hub_env(run: Run, secrets_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **secrets_env,
        "Q2C_DATABASE_URL": run.db,
        "Q2C_LOG_LEVEL": "WARNING",
        "Q2C_SF_CALLOUT_SECRET": secrets.token_hex(16),
        "Q2C_AUDIT_KEY": os.environ.get("Q2C_AUDIT_KEY", "benchmark-audit-key-not-secret"),
        "Q2C_AUDIT_CHECKPOINT_FILE": str(run.folder / "checkpoints.jsonl"),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


def start_hub(
    run: Run, plan: Plan, config: Path, env: dict[str, str]
) -> list[subprocess.Popen[bytes]]:
    """N workers and one polling ``q2c serve``; their logs in the run's folder."""
    from quote2cash.private_files import open_private

    q2c = [sys.executable, "-m", "quote2cash.cli"]
    processes = []
    for i in range(plan.processes):
        with open_private(run.folder / f"worker-{i}.log", "ab") as out:
            processes.append(
                subprocess.Popen(
                    [*q2c, "worker", "--config", str(config)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=run.folder,
                )
            )
    with open_private(run.folder / "serve.log", "ab") as out:
        serve = [*q2c, "serve", "--no-workers", "--no-console", "--port", "0"]
        serve += ["--poll-seconds", str(plan.poll_seconds), "--config", str(config)]
        processes.append(
            subprocess.Popen(serve, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=run.folder)
        )
    return processes


def stop_hub(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# --- the business around the hub ---------------------------------------------------------------


def book_of(plan: Plan, tag: str) -> Any:
    """``plan.deals`` accounts with one deal each, cloned from the demo's book (its entities,
    places, sizes and deal lines) under coined names and streets, so no two accounts look
    alike to customer matching; the first ``plan.renewals`` signed up in Stripe first (on the
    renewal clock). Contract numbers are this run's."""
    from quote2cash.demo.book import Book, DemoDeal, DemoLine, Payer, build_book

    base = build_book(accounts=40, deals=40, self_serve=0)
    sold_by = {d.account.key: d for d in base.deals}
    rng = random.Random(tag)
    book = Book()
    for i in range(plan.deals):
        template = base.accounts[i % len(base.accounts)]
        sold = sold_by.get(template.key)
        name = f"{coined(rng)} {coined(rng)} {template.name.split()[-1]}"
        place = replace(template.place, street=f"{rng.randint(1, 9999)} {coined(rng)} Street")
        renewing = i < plan.renewals
        account = replace(
            template,
            key=f"Q{i:05d}",
            name=name,
            place=place,
            self_serve=renewing,
            payer=Payer.CARD if renewing else template.payer,
        )
        lines = sold.lines if sold is not None else ()
        if not lines or sold is None or sold.unmapped or all(x.code != "PLAT-SEAT" for x in lines):
            lines = (DemoLine("PLAT-SEAT", 10),)
        book.accounts.append(account)
        book.deals.append(DemoDeal(f"QE-{tag}-{i:05d}", account, f"{name} platform", lines, wave=1))
    return book


def coined(rng: random.Random) -> str:
    """A made-up word of three syllables (``Ravulo``): names no matcher mistakes for another."""
    word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
    return word.capitalize()


def salesforce(run: Run) -> Any:
    from quote2cash.demo.sandbox import DemoSandbox
    from quote2cash.sandbox.tryton import load_endpoint

    sandbox = DemoSandbox(
        run.folder / "sandbox", run.state, load_endpoint(run.state["tryton"]["workdir"])
    )
    return sandbox.salesforce()


def stripe_client(run: Run) -> Any:
    import stripe

    return stripe.StripeClient(
        api_key=run.state["stripe"]["api_key"], base_addresses={"api": stripe_url(run)}
    )


def patiently(call: Any) -> Any:
    """The billing team's own call while the hub spends the budget: Stripe may refuse it (429;
    the SDK does not retry those), so it waits and asks again, as another integration would."""
    import stripe

    for _ in range(120):
        try:
            return call()
        except stripe.RateLimitError:
            time.sleep(1.0)
    return call()


def open_accounts(run: Run, book: Any) -> tuple[Any, str | None]:
    """Reps open every account; the renewing ones signed up in Stripe first, on one clock."""
    from quote2cash.demo.actors import Customers, SalesOrg

    org = SalesOrg(salesforce(run))
    client = stripe_client(run)
    clock = None
    if any(a.self_serve for a in book.accounts):
        clock = str(
            client.v1.test_helpers.test_clocks.create(
                params={"frozen_time": int(time.time()), "name": "renewal wave"}
            ).id
        )
    customers = Customers(client)
    for account in book.accounts:
        billing_id = customers.sign_up(account, clock) if account.self_serve and clock else None
        org.open_account(account, billing_id)
    return org, clock


def close_deals(run: Run, org: Any, book: Any) -> None:
    today = datetime.now(UTC).date()
    for deal in book.deals:
        run.opportunities[deal.contract_number] = org.close_deal(deal, today)
        run.closed_at[deal.contract_number] = time.time()
        if deal.account.self_serve:
            run.renewing.add(deal.contract_number)


def crm_subscriptions(sf: Any, opportunities: list[str]) -> dict[str, str]:
    """Opportunity id -> the CRM Subscription__c the hub created for it."""
    out: dict[str, str] = {}
    for i in range(0, len(opportunities), 200):
        ids = "','".join(opportunities[i : i + 200])
        for row in sf.query_all(
            f"SELECT Id, Opportunity__c FROM Subscription__c WHERE Opportunity__c IN ('{ids}')"
        )["records"]:
            out[row["Opportunity__c"]] = row["Id"]
    return out


def request_amendments(run: Run, org: Any, book: Any, plan: Plan, deadline: float) -> None:
    """Once the hub has created their CRM subscriptions, reps ask for two more seats on
    ``plan.amendments`` contracts (not renewing ones), invoiced at once."""
    targets = [d for d in book.deals if not d.account.self_serve][: plan.amendments]
    if not targets:
        return
    sf = org.sf
    product = sf.query("SELECT Id FROM Product2 WHERE ProductCode = 'PLAT-SEAT'")["records"][0][
        "Id"
    ]
    waiting = {d.contract_number: d for d in targets}
    while waiting and time.monotonic() < deadline:
        found = crm_subscriptions(sf, [run.opportunities[c] for c in waiting])
        for contract, deal in list(waiting.items()):
            sub = found.get(run.opportunities[contract])
            if sub is None:
                continue
            seats = next(line.quantity for line in deal.lines if line.code == "PLAT-SEAT")
            sf.Amendment_Request__c.create(
                {
                    "Subscription__c": sub,
                    "Product__c": product,
                    "New_Quantity__c": seats + 2,
                    "Effective_Date__c": datetime.now(UTC).date().isoformat(),
                    "Status__c": "Approved",
                    "Amendment_Number__c": 1,
                    "Previous_Quantity__c": seats,
                    "Proration__c": "always_invoice",
                }
            )
            run.amended[contract] = seats + 2
            del waiting[contract]
        if waiting:
            time.sleep(1.0)
    run.marks["amendments_requested"] = time.monotonic()


def advance_renewals(run: Run, clock: str | None, deadline: float) -> None:
    """Once every renewing contract has its subscription (the hub's store says so: no calls to
    Stripe that would count against the hub's budget), the clock moves on: one call."""
    if clock is None or not run.renewing:
        return
    subjects = [f"contract:{c}" for c in run.renewing]
    while time.monotonic() < deadline:
        with psycopg.connect(run.db, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(DISTINCT e.subject) FROM steps s "
                "JOIN events e ON e.pos = s.event_pos "
                "WHERE s.name = 'billing.create_subscription' AND e.subject = ANY(%s)",
                (subjects,),
            ).fetchone()
        if row and row[0] >= len(subjects):
            break
        time.sleep(2.0)
    client = stripe_client(run)
    clocks = client.v1.test_helpers.test_clocks
    frozen = int(patiently(lambda: clocks.retrieve(clock)).frozen_time)
    patiently(lambda: clocks.advance(clock, params={"frozen_time": frozen + RENEWAL_SHIFT_S}))
    run.marks["renewal_wave"] = time.monotonic()


# --- progress and read-back -------------------------------------------------------------------


def hub_idle(db: str) -> tuple[bool, dict[str, int]]:
    with psycopg.connect(db, autocommit=True) as conn:
        rows = dict(
            conn.execute("SELECT status, count(*) FROM event_state GROUP BY status").fetchall()
        )
    return rows.get("pending", 0) == 0 and rows.get("parked", 0) == 0, rows


def expected_invoices(run: Run) -> int:
    return len(run.closed_at) + len(run.amended) + len(run.renewing)


def stripe_documents(run: Run) -> tuple[dict[str, int], dict[str, str]]:
    """Contract -> subscriptions in Stripe; invoice number -> its contract, for this run."""
    from quote2cash.connectors.stripe.mapping import contract_number

    client = stripe_client(run)
    per_contract: dict[str, int] = {}
    params: Any = {"limit": 100, "status": "all"}
    for sub in client.v1.subscriptions.list(params=params).auto_paging_iter():
        contract = contract_number(sub.to_dict())
        if contract in run.closed_at:
            per_contract[contract] = per_contract.get(contract, 0) + 1
    invoices: dict[str, str] = {}
    for inv in client.v1.invoices.list(params={"limit": 100}).auto_paging_iter():
        contract = contract_number(inv.to_dict())
        if contract in run.closed_at and inv.status != "draft":
            invoices[str(inv.number)] = contract
    return per_contract, invoices


async def tryton_documents(run: Run) -> tuple[dict[str, int], dict[str, int]]:
    """Reference -> count of customer invoices posted, and of sales booked, in Tryton."""
    from quote2cash.sandbox.tryton import load_endpoint

    endpoint = load_endpoint(run.state["tryton"]["workdir"])
    assert endpoint is not None
    async with endpoint.client(admin=True) as erp:
        invoices = await erp.model("account.invoice").search_read(
            [("type", "=", "out"), ("state", "in", ["posted", "paid"])], ["reference"]
        )
        sales = await erp.model("sale.sale").search_read([], ["reference"])
    inv: dict[str, int] = {}
    for row in invoices:
        inv[str(row["reference"])] = inv.get(str(row["reference"]), 0) + 1
    sal: dict[str, int] = {}
    for row in sales:
        sal[str(row["reference"])] = sal.get(str(row["reference"]), 0) + 1
    return inv, sal


def read_back(run: Run, org: Any) -> dict[str, Any]:
    """Lost and duplicated, counted in the three systems (never the hub's store)."""
    sf = org.sf
    subs_crm: dict[str, int] = {}
    opps = list(run.opportunities.values())
    for i in range(0, len(opps), 200):
        ids = "','".join(opps[i : i + 200])
        for row in sf.query_all(
            f"SELECT Opportunity__c FROM Subscription__c WHERE Opportunity__c IN ('{ids}')"
        )["records"]:
            subs_crm[row["Opportunity__c"]] = subs_crm.get(row["Opportunity__c"], 0) + 1
    applied = 0
    if run.amended:
        applied = len(
            sf.query_all("SELECT Id FROM Amendment_Request__c WHERE Status__c = 'Applied'")[
                "records"
            ]
        )
    per_contract, invoices = stripe_documents(run)
    erp_invoices, erp_sales = asyncio.run(tryton_documents(run))
    contracts = list(run.closed_at)
    lost = {
        "crm_subscriptions": sum(1 for o in opps if subs_crm.get(o, 0) == 0),
        "stripe_subscriptions": sum(1 for c in contracts if per_contract.get(c, 0) == 0),
        "stripe_invoices": max(0, expected_invoices(run) - len(invoices)),
        "erp_bookings": sum(1 for c in contracts if not any(r.startswith(c) for r in erp_sales)),
        "erp_invoices": sum(1 for n in invoices if erp_invoices.get(n, 0) == 0),
        "amendments_applied": len(run.amended) - applied,
    }
    duplicated = {
        "crm_subscriptions": sum(max(0, n - 1) for n in subs_crm.values()),
        "stripe_subscriptions": sum(max(0, n - 1) for n in per_contract.values()),
        "stripe_invoices": max(0, len(invoices) - expected_invoices(run)),
        "erp_bookings": sum(max(0, erp_sales.get(c, 0) - 1) for c in contracts),
        "erp_invoices": sum(max(0, erp_invoices.get(n, 0) - 1) for n in invoices),
    }
    return {
        "lost": sum(lost.values()),
        "duplicated": sum(duplicated.values()),
        "lost_by_kind": lost,
        "duplicated_by_kind": duplicated,
        "stripe_invoices": len(invoices),
        "erp_invoices_posted": sum(1 for n in invoices if erp_invoices.get(n, 0) > 0),
    }


def store_timings(run: Run) -> dict[str, Any]:
    """Activation (Closed Won in the CRM -> booked in the ERP) per deal, and the hub's ERP
    posting rate (first to last ``erp.post_invoice``), from the store's recorded steps."""
    with psycopg.connect(run.db, autocommit=True) as conn:
        booked = conn.execute(
            "SELECT e.subject, min(s.completed_at) FROM steps s "
            "JOIN events e ON e.pos = s.event_pos "
            "WHERE s.name = 'erp.book_order' GROUP BY e.subject"
        ).fetchall()
        posts = conn.execute(
            "SELECT count(*), min(completed_at), max(completed_at) FROM steps "
            "WHERE name = 'erp.post_invoice'"
        ).fetchone()
        failures = conn.execute("SELECT kind, count(*) FROM failures GROUP BY kind").fetchall()
        post_times = conn.execute(
            "SELECT completed_at FROM steps WHERE name = 'erp.post_invoice'"
        ).fetchall()
        renewal_posts = conn.execute(
            "SELECT completed_at FROM (SELECT s.completed_at, row_number() OVER "
            "(PARTITION BY e.subject ORDER BY e.sequence) AS n FROM steps s "
            "JOIN events e ON e.pos = s.event_pos WHERE s.name = 'erp.post_invoice' "
            "AND e.subject = ANY(%s)) p WHERE n = 2 ORDER BY completed_at",
            ([f"contract:{c}" for c in run.renewing],),
        ).fetchall()
        erp_steps = conn.execute(
            "SELECT name, count(*) FROM steps WHERE system = 'erp' GROUP BY name"
        ).fetchall()
    activation = []
    for subject, at in booked:
        contract = subject.split(":", 1)[1] if ":" in subject else subject
        closed = run.closed_at.get(contract)
        if closed is not None:
            activation.append(at.timestamp() - closed)
    activation.sort()
    assert posts is not None
    count, first, last = posts
    span = (last - first).total_seconds() if count and count > 1 else 0.0
    return {
        "activation": activation,
        "booked_last": max((at.timestamp() for _, at in booked), default=0.0),
        "hub_posts": int(count or 0),
        "hub_posts_span_s": round(span, 1),
        "hub_posts_per_s": round((count - 1) / span, 3) if span > 0 else 0.0,
        "failures": {kind: int(n) for kind, n in failures},
        "erp_steps": {name: int(n) for name, n in erp_steps},
        "renewal_posts_per_s": rate_of([row[0].timestamp() for row in renewal_posts]),
        "renewal_post_times": [row[0].timestamp() for row in renewal_posts],
        "post_times": [row[0].timestamp() for row in post_times],
    }


def tryton_calls(run: Run) -> list[float]:
    """When each JSON-RPC request reached Tryton (its access log), as UTC timestamps."""
    path = Path(run.state["tryton"]["workdir"]) / "trytond.log"
    times = []
    with path.open(errors="replace") as lines:
        for line in lines:
            found = TRYTON_RPC.search(line)
            if found:
                at = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
                times.append(at.timestamp())
    return times


def tryton_call_counts(
    run: Run, timings: dict[str, Any], raw: dict[str, Any], hub_from: float, hub_to: float
) -> dict[str, Any]:
    """Tryton's requests while the hub ran, and per posting in the renewal wave (from its first
    to its last renewal posting, every posting in that window counted), against the raw phase's
    requests per invoice (create, acknowledge, post); the quick run's floor at the raw rate."""
    calls = tryton_calls(run)
    hub_calls = sum(1 for t in calls if hub_from <= t <= hub_to)
    wave = timings["renewal_post_times"]
    counts: dict[str, Any] = {"hub_calls": hub_calls, "hub_postings": timings["hub_posts"]}
    if len(wave) > 1:
        first, last = min(wave), max(wave)
        in_wave = sum(1 for t in calls if first <= t <= last)
        posts = sum(1 for t in timings["post_times"] if first <= t <= last)
        counts.update(
            renewal_wave_calls=in_wave,
            renewal_wave_postings=posts,
            renewal_wave_calls_per_posting=round(in_wave / posts, 2) if posts else None,
        )
    # the raw phase of one invoice per call (create, acknowledge, post; its values made before)
    began, ended = raw["raw_one_window"]
    raw_calls = sum(1 for t in calls if began <= t <= ended)
    counts["raw_calls"] = raw_calls
    counts["raw_calls_per_invoice"] = round(raw_calls / raw["raw_one"]["invoices"], 2)
    counts["raw_calls_per_s"] = round(raw_calls / max(ended - began, 1e-9), 3)
    return counts


def rate_of(times: list[float]) -> float:
    """Events per second from the first to the last of ``times`` (0 for fewer than two)."""
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return round((len(times) - 1) / span, 3) if span > 0 else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = max(0, min(len(values) - 1, round(q * (len(values) - 1))))
    return round(sorted(values)[k], 2)


def budget_use(stripe: dict[str, Any], start: float, end: float) -> tuple[float, int]:
    """Mean accepted Stripe calls per whole second from ``start`` to ``end`` (wall clock),
    against the allowed rate; and how many whole seconds that was."""
    per_second = {int(k): v for k, v in stripe["accepted_per_second"].items()}
    seconds = list(range(int(start) + 1, int(end)))
    if not seconds:
        return 0.0, 0
    used = sum(per_second.get(s, 0) for s in seconds) / (len(seconds) * STRIPE_RATE)
    return round(used, 3), len(seconds)


def best_window(stripe: dict[str, Any], seconds: int, since: float) -> float:
    """The busiest ``seconds`` of accepted Stripe calls after ``since``, against the rate."""
    per_second = {int(k): v for k, v in stripe["accepted_per_second"].items() if int(k) > since}
    if not per_second:
        return 0.0
    best = max(
        sum(per_second.get(s + i, 0) for i in range(seconds))
        for s in range(min(per_second), max(per_second) - seconds + 2)
    )
    return round(best / (seconds * STRIPE_RATE), 3)


def stripe_busy_window(run: Run, db: str) -> tuple[float, float]:
    """From the first Closed Won to the last ``billing.create_subscription``: Stripe work was
    waiting throughout (every deal's customer and subscription were queued at once)."""
    with psycopg.connect(db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(completed_at) FROM steps WHERE name = 'billing.create_subscription'"
        ).fetchone()
    last = row[0].timestamp() if row and row[0] else time.time()
    return min(run.closed_at.values()), last


# --- one run ----------------------------------------------------------------------------------


def measure_raw(run: Run, plan: Plan) -> dict[str, Any]:
    """Tryton's own rate on this server, as ``erp_posting.py``'s raw phase measures it."""
    import erp_posting
    from quote2cash.sandbox.tryton import load_endpoint

    endpoint = load_endpoint(run.state["tryton"]["workdir"])
    assert endpoint is not None
    args = argparse.Namespace(writers=1, invoices=plan.raw_invoices, batch=plan.batch)

    async def go() -> dict[str, Any]:
        from quote2cash.canonical import Customer
        from quote2cash.connectors.tryton import TrytonErp
        from quote2cash.sandbox.systems import tryton_config

        tag = os.urandom(3).hex()
        async with TrytonErp(tryton_config(endpoint, max_concurrency=1, timeout=300.0)) as erp:
            parties = [
                await erp.upsert_customer(
                    Customer(
                        global_id=f"raw-{tag}-{n}",
                        name=f"Raw {tag} {n}",
                        address=erp_posting.ADDRESS,
                    ),
                    legal_entity=erp_posting.ENTITY,
                    idempotency_key=f"raw-{tag}-{n}",
                )
                for n in range(8)
            ]
            made = iter(range(10**9))

            def fresh(count: int) -> list[Any]:
                return [
                    erp_posting.invoice(tag, n, parties[n % 8])
                    for n in (next(made) for _ in range(count))
                ]

            await erp_posting.raw(erp, fresh(args.batch), args.batch)  # warm-up
            invoices = fresh(args.invoices)
            began = time.time()
            one = await erp_posting.raw(erp, invoices, 1)
            window = {"raw_one_window": [began, time.time()]}
            batched = await erp_posting.raw(erp, fresh(args.invoices), args.batch)
            return {"raw_one": one, "raw_batch": batched, **window}

    return asyncio.run(go())


def run_once(plan: Plan) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="q2c-quarter-end-"))
    sandbox_dir = folder / "sandbox"
    log(f"{plan.processes} process(es): sandbox in {folder}")
    run = Run(folder, {})
    drop = None
    hub: list[subprocess.Popen[bytes]] = []
    try:
        run.state = sandbox_up(sandbox_dir)
        raw = measure_raw(run, plan)
        raw_rate = max(raw["raw_one"]["invoices_per_s"], raw["raw_batch"]["invoices_per_s"])
        log(
            f"  raw Tryton: {raw['raw_one']['invoices_per_s']} /s one per call, "
            f"{raw['raw_batch']['invoices_per_s']} /s {plan.batch} per call"
        )
        run.db, drop = pg_database("q2c_quarter_end")
        from quote2cash.engine.runtime import Runtime

        Runtime.open(run.db).close()
        config, secrets_env = systems_yaml(run, plan)
        book = book_of(plan, os.urandom(2).hex())
        org, clock = open_accounts(run, book)
        log(f"  {len(book.accounts)} accounts open ({plan.renewals} on the renewal clock)")
        # the actors' calls so far are not the hub's: the emulators count from here
        configure_emulators(run, plan)
        hub = start_hub(run, plan, config, hub_env(run, secrets_env))
        time.sleep(3.0)  # the processes import and connect before the spike
        run.started = time.monotonic()
        started_wall = time.time()
        deadline = run.started + plan.timeout
        close_deals(run, org, book)
        log(f"  {len(run.closed_at)} deals closed won in {time.monotonic() - run.started:.1f} s")
        renewals = threading.Thread(target=advance_renewals, args=(run, clock, deadline))
        renewals.start()
        request_amendments(run, org, book, plan, deadline)
        log(f"  {len(run.amended)} amendments requested")
        renewals.join()
        log("  renewal wave started" if "renewal_wave" in run.marks else "  no renewal wave")
        done = False
        rows: dict[str, int] = {}
        last_report = 0.0
        quiet_since = None
        while time.monotonic() < deadline:
            idle, rows = hub_idle(run.db)
            if idle:
                # idle in the store and for a few polls: nothing new is coming in
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 3 * plan.poll_seconds + 2:
                    done = True
                    break
            else:
                quiet_since = None
            if any(p.poll() is not None for p in hub):
                raise SystemExit(f"a hub process exited early; logs in {folder}")
            if time.monotonic() - last_report > 15:
                log(f"  {time.monotonic() - run.started:.0f} s: {rows}")
                last_report = time.monotonic()
            time.sleep(1.0)
        finished = time.monotonic()
        finished_wall = time.time()
        usage = emulator_usage(run)
        stop_hub(hub)
        hub = []
        requests.post(  # the read-back is not the hub's: no refusals
            f"{stripe_url(run)}/_emulator/config", json={"rate_limit_per_second": None}, timeout=10
        ).raise_for_status()
        timings = store_timings(run)
        calls = tryton_call_counts(run, timings, raw, started_wall, finished_wall)
        counted = read_back(run, org)
        start, end = stripe_busy_window(run, run.db)
        utilisation, busy_seconds = budget_use(usage["stripe"], start, end)
        activation = timings["activation"]
        span = (timings["booked_last"] - min(run.closed_at.values())) if activation else 0.0
        over = (  # above the budget in a sliding second, refused by Stripe's limiter, or
            int(usage["stripe"]["over_budget"])  # refused for the CRM's day allocation
            + int(usage["stripe"]["rate_limited"])
            + int(usage["crm"]["over_daily_limit"])
        )
        result = {
            "processes": plan.processes,
            "finished": done,
            "wall_s": round(finished - run.started, 1),
            "deals_activated": len(activation),
            "deals_per_min": round(60 * len(activation) / span, 1) if span > 0 else 0.0,
            "erp_raw_posts_per_s": raw_rate,
            "erp_raw": {k: raw[k]["invoices_per_s"] for k in ("raw_one", "raw_batch")},
            "erp_hub_posts_per_s": timings["hub_posts_per_s"],
            "erp_hub_posts": timings["hub_posts"],
            "erp_utilisation": round(timings["hub_posts_per_s"] / raw_rate, 3) if raw_rate else 0.0,
            # the renewal wave's invoices, ready at once: the hub's posting rate when invoices
            # wait (the whole-run rate above shares Tryton with customers and bookings)
            "erp_renewal_posts_per_s": timings["renewal_posts_per_s"],
            "erp_utilisation_renewal_wave": round(timings["renewal_posts_per_s"] / raw_rate, 3)
            if raw_rate
            else 0.0,
            "budget_utilisation_best_10s": best_window(
                usage["stripe"], 10, min(run.closed_at.values())
            ),
            "budget_utilisation": utilisation,
            "budget_window_s": busy_seconds,
            "over_budget_calls": over,
            "stripe_calls": usage["stripe"]["requests"],
            "stripe_refused_429": usage["stripe"]["rate_limited"],
            "stripe_peak_in_1s": usage["stripe"]["peak_in_window"],
            "crm_api_calls": usage["crm"]["api_usage"],
            "p50_activation_s": percentile(activation, 0.5),
            "p99_activation_s": percentile(activation, 0.99),
            "events": rows,
            "failures": timings["failures"],
            "erp_steps": timings["erp_steps"],
            "tryton_calls": calls,
            # the quick run (1,000 / 200 / 500: this run's mix, 1,000 / deals times) needs this
            # run's Tryton requests that many times over; at Tryton's raw rate it takes at least
            "quick_min_wall_s_at_raw_rate": round(
                calls["hub_calls"] * (1000 / plan.deals) / calls["raw_calls_per_s"]
            )
            if calls["raw_calls_per_s"] and plan.deals
            else None,
            # unfinished at the deadline, what is missing is work not done yet, not lost
            "lost": counted["lost"] if done else None,
            "not_done_at_deadline": 0 if done else counted["lost"],
            **{k: counted[k] for k in ("duplicated", "lost_by_kind", "duplicated_by_kind")},
            "stripe_invoices": counted["stripe_invoices"],
            "erp_invoices_posted": counted["erp_invoices_posted"],
        }
        return result
    finally:
        stop_hub(hub)
        with contextlib.suppress(Exception):
            sandbox_down(sandbox_dir)
        if drop is not None and not plan.keep:
            drop()


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the full run")
    parser.add_argument("--deals", type=int, default=None)
    parser.add_argument("--amendments", type=int, default=None)
    parser.add_argument("--renewals", type=int, default=None)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--stripe-burst", type=int, default=10, help="Stripe's own burst")
    parser.add_argument("--hub-burst", type=int, default=5, help="the hub budget's burst")
    parser.add_argument("--raw-invoices", type=int, default=16, help="per raw phase")
    parser.add_argument("--batch", type=int, default=8, help="invoices per Tryton call (raw)")
    parser.add_argument("--erp-slots", type=int, default=4, help="ERP calls in flight at once")
    parser.add_argument(
        "--crm-slots", type=int, default=None, help="CRM requests in flight per process"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per process count")
    parser.add_argument("--keep", action="store_true", help="keep the hub's store")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    deals = args.deals if args.deals is not None else 10_000 // scale
    amendments = args.amendments if args.amendments is not None else 2_000 // scale
    renewals = args.renewals if args.renewals is not None else 5_000 // scale
    timeout = args.timeout or (600.0 if args.quick else 6 * 3600.0)
    load = os.getloadavg()
    runs: dict[int, dict[str, Any]] = {}
    for n in [int(p) for p in args.processes.split(",")]:
        plan = Plan(
            deals,
            amendments,
            renewals,
            n,
            args.poll_seconds,
            args.stripe_burst,
            args.hub_burst,
            args.raw_invoices,
            args.batch,
            args.erp_slots,
            timeout,
            keep=args.keep,
            crm_slots=args.crm_slots,
        )
        result = run_once(plan)
        print(f"{n} hub process(es): {json.dumps(result)}", flush=True)
        runs[n] = result
    headline = runs[max(runs)]
    figures: dict[str, Any] = {
        "benchmark": "quarter_end",
        "deals": deals,
        "amendments": amendments,
        "renewals": renewals,
        "stripe_rate": STRIPE_RATE,
        "crm_per_day": SF_PER_DAY,
        "headline_processes": max(runs),
        **{
            k: headline[k]
            for k in (
                "deals_per_min",
                "erp_raw_posts_per_s",
                "erp_utilisation",
                "budget_utilisation",
                "p50_activation_s",
                "p99_activation_s",
                "wall_s",
                "finished",
            )
        },
        "over_budget_calls": sum(r["over_budget_calls"] for r in runs.values()),
        "lost": None
        if any(r["lost"] is None for r in runs.values())
        else sum(r["lost"] for r in runs.values()),
        "duplicated": sum(r["duplicated"] for r in runs.values()),
        "per_processes": {str(n): r for n, r in runs.items()},
        "cpus": os.cpu_count(),
        "loadavg_1m": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "store": PG_ADMIN.rsplit("/", 1)[0].split("@")[-1],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
