"""``python -m quote2cash.sandbox.stripe`` as its own process, accepting exactly one key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import stripe


def test_module_runs_as_a_process_with_a_single_key() -> None:
    env = {**os.environ, "Q2C_TEST_STRIPE_KEY": "sk_test_only_this_one"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quote2cash.sandbox.stripe",
            "--port",
            "0",
            "--api-key-env",
            "Q2C_TEST_STRIPE_KEY",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Stripe emulator listening on http://127.0.0.1:")
        base_url = line.rsplit(" ", 1)[1].strip()
        good = stripe.StripeClient(
            api_key="sk_test_only_this_one", base_addresses={"api": base_url}
        )
        customer = good.v1.customers.create(params={"name": "Process"})
        assert good.v1.customers.retrieve(customer.id).name == "Process"
        with pytest.raises(stripe.AuthenticationError):
            stripe.StripeClient(
                api_key="sk_test_another", base_addresses={"api": base_url}
            ).v1.customers.list()
        basic = base64.b64encode(b"sk_test_only_this_one:").decode()
        request = urllib.request.Request(
            base_url + "/v1/customers", headers={"Authorization": f"Basic {basic}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
