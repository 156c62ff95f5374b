"""The same smoke scenario against localstripe (separate process) and our emulator, via the SDK.

Only business results both support are compared (localstripe speaks API version 2017-08-15 and
lacks prices, prorations, meters and idempotency), not response shapes.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

from .conftest import Sandbox

LAUNCHER = Path(__file__).with_name("localstripe_launcher.py")


@pytest.fixture(scope="module")
def localstripe_url() -> Iterator[str]:
    if importlib.util.find_spec("localstripe") is None:
        if os.environ.get("Q2C_REQUIRE_SERVICES") == "1":
            pytest.fail("localstripe is not installed")
        pytest.skip("localstripe is not installed")
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), "localstripe launcher did not report a port"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/v1/customers", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, (
                    "localstripe did not become ready"
                )
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def smoke_scenario(client: stripe.StripeClient) -> dict[str, Any]:
    """Customer with metadata, card, product + plan, subscription, invoices, cancel, decline."""
    results: dict[str, Any] = {}
    customer = client.v1.customers.create(
        params={"email": "ap@acme.example", "metadata": {"crm_id": "001XYZ"}}
    )
    fetched = client.v1.customers.retrieve(customer.id)
    results["customer"] = (fetched.email, fetched.metadata.to_dict())
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    results["card"] = (pm.card.brand, pm.card.last4, pm.customer == customer.id)
    product = client.v1.products.create(params={"name": "Seat"})
    plan = client.v1.plans.create(
        params={"amount": 1500, "currency": "usd", "interval": "month", "product": product.id}
    )
    results["plan"] = (plan.amount, plan.currency, plan.interval, plan.product == product.id)
    sub = client.v1.subscriptions.create(
        params={"customer": customer.id, "items": [{"plan": plan.id, "quantity": 3}]}
    )
    results["subscription"] = (
        sub.status,
        sub["items"].data[0].quantity,
        sub["items"].data[0].plan.id == plan.id,
    )
    invoices = client.v1.invoices.list(params={"customer": customer.id}).data
    results["invoices"] = [(i.status, i.total, i.amount_paid) for i in invoices]
    ending = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    results["cancel_at_period_end"] = (ending.status, ending.cancel_at_period_end)
    canceled = client.v1.subscriptions.cancel(sub.id)
    results["canceled"] = canceled.status
    declined = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000000000000002", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    try:
        client.v1.payment_methods.attach(declined.id, params={"customer": customer.id})
        results["declined_card"] = "accepted"
    except stripe.CardError as error:
        results["declined_card"] = (error.http_status, error.code)
    for name in ("b", "c"):
        client.v1.customers.create(params={"email": f"{name}@acme.example"})
    page = client.v1.customers.list(params={"limit": 2})
    rest = client.v1.customers.list(params={"limit": 2, "starting_after": page.data[-1].id})
    results["pagination"] = (len(page.data), page.has_more, len(rest.data), rest.has_more)
    results["all_customers"] = len({c.id for c in page.data} | {c.id for c in rest.data})
    events = client.v1.events.list(params={"limit": 100}).data
    results["customer_created_event"] = any(
        e.type == "customer.created" and e.data.object.id == customer.id for e in events
    )
    return results


def test_same_business_results_as_localstripe(localstripe_url: str, sandbox: Sandbox) -> None:
    theirs = smoke_scenario(
        stripe.StripeClient(
            api_key="sk_test_cross", base_addresses={"api": localstripe_url}, max_network_retries=0
        )
    )
    ours = smoke_scenario(sandbox.client())
    assert ours == theirs
    assert ours["subscription"] == ("active", 3, True)
    assert ours["invoices"] == [("paid", 4500, 4500)]
    assert ours["declined_card"] == (402, "card_declined")


def test_src_launcher_runs_localstripe_as_a_subprocess(localstripe_url: str) -> None:
    from quote2cash.sandbox.localstripe import start_localstripe

    running = start_localstripe()
    try:
        assert (
            running.base_url.startswith("http://127.0.0.1:") and running.base_url != localstripe_url
        )
        client = stripe.StripeClient(
            api_key="sk_test_launcher",
            base_addresses={"api": running.base_url},
            max_network_retries=0,
        )
        customer = client.v1.customers.create(params={"email": "launcher@acme.example"})
        assert client.v1.customers.retrieve(customer.id).email == "launcher@acme.example"
    finally:
        running.stop()
    assert running.process.poll() is not None
    assert "localstripe" not in sys.modules
