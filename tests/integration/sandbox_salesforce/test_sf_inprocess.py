"""The in-process runner on the test's own loop, driven with aiohttp over HTTPS."""

from __future__ import annotations

from decimal import Decimal

import aiohttp

from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SalesforceEmulator,
)
from quote2cash.sandbox.salesforce.values import loads


async def test_in_process_emulator_over_https():
    emulator = SalesforceEmulator(query_batch_size=2)
    await emulator.start()
    try:
        assert emulator.port > 0 and emulator.instance_url.startswith("https://127.0.0.1:")
        connector = aiohttp.TCPConnector(ssl=emulator.client_ssl_context())
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.post(
                f"{emulator.instance_url}/services/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET,
                },
            ) as response:
                token = (await response.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            base = f"{emulator.instance_url}/services/data/v60.0"
            for n in range(5):
                async with http.post(
                    f"{base}/sobjects/Product2",
                    headers=headers,
                    data=b'{"Name": "P%d", "IsActive": true}' % n,
                ) as response:
                    assert response.status == 201
            url = f"{base}/query?q=SELECT+Name+FROM+Product2+ORDER+BY+Name"
            names = []
            while url:
                async with http.get(url, headers=headers) as response:
                    page = loads(await response.read())
                names += [r["Name"] for r in page["records"]]
                url = f"{emulator.instance_url}{page['nextRecordsUrl']}" if not page["done"] else ""
            assert names == ["P0", "P1", "P2", "P3", "P4"]
            async with http.post(
                f"{base}/sobjects/Invoice__c",
                headers=headers,
                data=b'{"Amount__c": 0.30000000000000004}',
            ) as response:
                record_id = (await response.json())["id"]
            async with http.get(
                f"{base}/sobjects/Invoice__c/{record_id}", headers=headers
            ) as response:
                raw = await response.read()
            assert loads(raw)["Amount__c"] == Decimal("0.30")
            async with http.post(
                f"{base}/sobjects/Account", headers=headers, data=b"{not json"
            ) as response:
                assert response.status == 400
                assert (await response.json())[0]["errorCode"] == "JSON_PARSER_ERROR"
    finally:
        await emulator.stop()


def test_running_emulator_call_runs_on_its_loop(emulator):
    account_id = emulator.call(
        lambda: emulator.emulator.store.create("Account", {"Name": "Direct"})
    )
    assert (
        emulator.call(lambda: emulator.emulator.store.get("Account", account_id)["Name"])
        == "Direct"
    )
