"""The amendment how-to in docs/getting-started.md works as written: its simple-salesforce
snippet, run against the sandbox's Salesforce emulator, files a request the hub then reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from quote2cash.connectors.salesforce import SalesforceCrm
from quote2cash.sandbox.salesforce import run_in_thread
from quote2cash.sandbox.systems import salesforce_config

DOC = Path(__file__).resolve().parents[3] / "docs" / "getting-started.md"


def snippet() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## How a sales rep asks for an amendment or a cancellation", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the how-to has its python snippet"
    return match.group(1)


async def test_the_documented_snippet_files_an_approved_seat_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = run_in_thread()
    try:
        state = tmp_path / ".q2c" / "sandbox"
        state.mkdir(parents=True)
        (state / "state.json").write_text(
            json.dumps(
                {"salesforce": {"instance_url": running.instance_url, "ca_file": running.ca_path}}
            )
        )
        crm = SalesforceCrm(salesforce_config(running.instance_url, running.ca_path))
        async with crm:
            client = crm.client
            account = await client.create("Account", {"Name": "Docs GmbH"})
            opportunity = await client.create(
                "Opportunity",
                {
                    "Name": "Docs deal",
                    "AccountId": account,
                    "StageName": "Closed Won",
                    "CloseDate": "2026-12-01",
                    "Contract_Number__c": "C-1001",
                },
            )
            await client.create("Product2", {"Name": "Platform seat", "ProductCode": "PLAT-SEAT"})
            subscription = await client.create(
                "Subscription__c",
                {"Account__c": account, "Opportunity__c": opportunity, "Quantity__c": 10},
            )
            monkeypatch.chdir(tmp_path)
            namespace: dict[str, object] = {}
            exec(compile(snippet(), str(DOC), "exec"), namespace)
            page = await crm.amendment_requests()
        (amendment,) = page.items
        assert amendment.subscription.id_in("crm") == subscription
        assert amendment.new_quantity == 15
        assert amendment.reason == "team grows"
        assert amendment.effective_at.isoformat() == "2026-12-15T00:00:00+00:00"
    finally:
        running.stop()
