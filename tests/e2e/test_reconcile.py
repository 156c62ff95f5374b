"""Three-way reconciliation against the real systems: deals carried through the hub reconcile
with no drift; then every kind of drift is injected directly into Salesforce (simple-salesforce),
Stripe (the stripe SDK) and Tryton (JSON-RPC), and each is found with its kind, the objects' ids
and the repair that fixes it; a repair filed through the engine and approved by a finance
approver brings the CRM back. The CLI (three formats) and the scheduled run behind
``GET /v1/reconciliation`` read the same state."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from contract.crm.salesforce_harness import Line
from e2e.conftest import Hub, World, sf_products
from integration.api.conftest import served
from quote2cash.api.app import build_app
from quote2cash.api.serve import reconcile_forever
from quote2cash.cli import app as q2c
from quote2cash.connectors.tryton.connector import POSTING_WARNINGS
from quote2cash.engine.hub_state import RECONCILIATION, kept_state
from quote2cash.engine.queries import failed_events
from quote2cash.engine.replay import approve_replay, list_requests, reject_replay
from quote2cash.flows.intake import poll_billing
from quote2cash.identity import Operator
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.reconcile.model import Drift, DriftKind, Report
from quote2cash.reconcile.repair import file_repair
from quote2cash.reconcile.run import reconcile
from support.identity import first_admin, new_operator, token_of

DEALS = 7
ADDRESS = {
    "BillingStreet": "1 Ledger Lane",
    "BillingCity": "Austin",
    "BillingState": "TX",
    "BillingPostalCode": "78701",
    "BillingCountryCode": "US",
    "BillingCountry": "United States",
}


def contract(n: int) -> str:
    return f"C-RC-{n:04d}"


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def systems_yaml(hub: Hub, folder: Path) -> Path:
    """The hub's connectors as a ``systems.yaml`` the CLI loads (``--config``)."""
    kinds = {"crm": "salesforce", "erp": "tryton", "billing": "stripe"}
    data = {
        role: {
            "kind": kind,
            "settings": _plain(getattr(hub.systems, role).config.model_dump(mode="python")),
        }
        for role, kind in kinds.items()
    }
    path = folder / "systems.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data, default=str))))
    return path


async def erp_invoice(world: World, number: str) -> dict[str, Any]:
    async with world.erp_client() as erp:
        [row] = await erp.model("account.invoice").search_read(
            [("reference", "=", number), ("type", "=", "out"), ("state", "=", "posted")],
            ["id", "company", "lines"],
        )
    return dict(row)


async def erp_copy(world: World, number: str, reference: str, change: dict[str, Any]) -> str:
    """A posted copy of the ERP invoice ``number`` under ``reference``, its first line changed
    by ``change`` (made in the ERP alone, as a person would)."""
    original = await erp_invoice(world, number)
    async with world.erp_client() as erp:
        ctx = erp.context_for(company=original["company"])
        invoices = erp.model("account.invoice")
        [copy] = await invoices.call(
            "copy", [original["id"]], {"reference": reference}, context=ctx
        )
        if change:
            [line] = (await invoices.read([int(copy)], ["lines"], context=ctx))[0]["lines"][:1]
            await invoices.write([int(copy)], {"lines": [("write", [line], change)]}, context=ctx)
        await invoices.execute_button(
            "post", [int(copy)], context=ctx, allow_warnings=(*POSTING_WARNINGS, "invoice_similar")
        )
    return str(copy)


async def erp_reissue(world: World, number: str, change: dict[str, Any]) -> tuple[str, str]:
    """Cancel the ERP's invoice ``number`` and post a changed copy in its place: (old, new)."""
    original = await erp_invoice(world, number)
    async with world.erp_client() as erp:
        ctx = erp.context_for(company=original["company"])
        await erp.model("company.company").write(
            [original["company"]], {"cancel_invoice_out": True}, context=ctx
        )
        await erp.model("account.invoice").execute_button("cancel", [original["id"]], context=ctx)
    async with world.erp_client() as erp:
        [row] = await erp.model("account.invoice").read([original["id"]], ["state"])
    assert row["state"] == "cancelled"
    return str(original["id"]), await _copy_cancelled(world, original, number, change)


async def _copy_cancelled(
    world: World, original: dict[str, Any], number: str, change: dict[str, Any]
) -> str:
    async with world.erp_client() as erp:
        ctx = erp.context_for(company=original["company"])
        invoices = erp.model("account.invoice")
        [copy] = await invoices.call("copy", [original["id"]], {"reference": number}, context=ctx)
        [line] = (await invoices.read([int(copy)], ["lines"], context=ctx))[0]["lines"][:1]
        await invoices.write([int(copy)], {"lines": [("write", [line], change)]}, context=ctx)
        await invoices.execute_button(
            "post", [int(copy)], context=ctx, allow_warnings=(*POSTING_WARNINGS, "invoice_similar")
        )
    return str(copy)


async def ten_percent_tax(hub: Hub, world: World, company: int) -> int:
    """A 10 % tax made in the ERP alone, on the accounts of the company's sales tax."""
    config = hub.systems.erp.config  # type: ignore[union-attr]
    [tax] = [e.sales_tax for e in config.legal_entities.values() if e.company == company]
    async with world.erp_client() as erp:
        ctx = erp.context_for(company=company)
        [row] = await erp.model("account.tax").read(
            [int(tax)], ["invoice_account", "credit_note_account"], context=ctx
        )
        created: int = await erp.model("account.tax").create_one(
            {
                "name": "Injected 10%",
                "description": "Injected 10%",
                "type": "percentage",
                "rate": Decimal("0.10"),
                "company": company,
                "invoice_account": row["invoice_account"],
                "credit_note_account": row["credit_note_account"],
            },
            context=ctx,
        )
    return created


def found(report: Report) -> set[tuple[str, str, str, str]]:
    """(kind, object, key, systems with ids) of each drift."""
    return {(d.kind.value, d.object, d.key, ",".join(sorted(d.ids))) for d in report.drifts}


def drift(report: Report, kind: DriftKind, key: str, system: str | None = None) -> Drift:
    [match] = [
        d
        for d in report.drifts
        if d.kind is kind and d.key == key and (system is None or system in d.ids)
    ] or [None]
    assert match is not None, (kind, key, system, found(report))
    return match


async def test_reconciliation_finds_every_injected_drift(
    world: World, hub: Hub, tmp_path: Path
) -> None:
    desk, client = world.desk, world.stripe()
    seat = sf_products(desk)["PLAT-SEAT"]
    accounts, opportunities = {}, {}
    for n in range(1, DEALS + 1):
        accounts[n] = desk.account(f"Ledger {n} Corp", currency="USD", **ADDRESS)
        opportunities[n] = desk.deal(
            accounts[n],
            "USD",
            [Line(seat, n + 1, "49.00")],
            name=f"Ledger {n}",
            Contract_Number__c=contract(n),
        )
    await hub.settle()
    assert failed_events(hub.runtime) == []

    started = datetime.now(UTC)
    clean = await reconcile(hub.runtime, hub.systems)
    assert clean.clean, [d.detail for d in clean.drifts]
    assert clean.counts["billing"]["invoice"] == DEALS
    assert clean.counts["erp"]["invoice"] == DEALS
    assert clean.counts["crm"]["contract"] == DEALS

    subs = {
        s.metadata["contract_number"]: s
        for s in client.v1.subscriptions.list(params={"status": "all"}).auto_paging_iter()
    }
    invoices = {
        n: client.v1.invoices.list(params={"subscription": subs[contract(n)].id}).data[0]
        for n in range(1, DEALS + 1)
    }
    number = {n: str(inv.number) for n, inv in invoices.items()}
    xref = XrefStore(hub.runtime.engine)

    # ERP: an amount and a tax edited on posted invoices, a duplicate and an orphan document
    _, amount_doc = await erp_reissue(world, number[1], {"unit_price": Decimal("50.00")})
    second = await erp_invoice(world, number[2])
    _, tax_doc = await erp_reissue(
        world,
        number[2],
        {"taxes": [("add", [await ten_percent_tax(hub, world, second["company"])])]},
    )
    sixth = await erp_invoice(world, number[6])
    duplicate = await erp_copy(world, number[6], number[6], {})
    orphan_erp = await erp_copy(world, number[7], "ERP-ONLY-1", {})
    # ERP: the onboarded customer of deal 2 loses its hub identity (no customer any more)
    gid2 = xref.global_id_for(Kind.CUSTOMER, "crm", accounts[2])
    assert gid2 is not None
    async with world.erp_client() as erp:
        ids = await erp.model("party.identifier").search([("code", "like", f"%{gid2}")])
        await erp.model("party.identifier").delete(ids)

    # CRM: an invoice deleted, a status changed, an account's currency changed, an orphan record
    sf = desk.sf
    [crm3] = desk.invoices(number[3])
    sf.Invoice__c.delete(crm3["Id"])
    [crm4] = desk.invoices(number[4])
    sf.Invoice__c.update(crm4["Id"], {"Status__c": "Paid", "Balance__c": 0})
    sf.Account.update(accounts[7], {"CurrencyIsoCode": "EUR"})
    orphan_crm = sf.Invoice__c.create(
        {"Invoice_Number__c": "CRM-ONLY-[bold]1", "Account__c": accounts[1], "Amount__c": 10}
    )["id"]
    sf.Opportunity.update(opportunities[6], {"Subscription_Status__c": "Canceled"})

    # Billing: paid in billing only, an invoice the hub never carried, a duplicate customer
    client.v1.invoices.pay(invoices[5].id, params={"paid_out_of_band": True})
    customer3 = str(invoices[3].customer)
    client.v1.invoice_items.create(
        params={"customer": customer3, "amount": 12500, "currency": "usd", "description": "Setup"}
    )
    extra = client.v1.invoices.create(
        params={
            "customer": customer3,
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "pending_invoice_items_behavior": "include",
        }
    )
    extra = client.v1.invoices.finalize_invoice(str(extra.id))
    customer4 = client.v1.customers.retrieve(str(invoices[4].customer))
    twin = client.v1.customers.create(
        params={"name": customer4.name, "metadata": customer4.metadata.to_dict()}
    )
    # the hub hears billing's events (logged, not yet processed): repairs can name them
    assert await poll_billing(hub.runtime, hub.systems.billing) > 0

    report = await reconcile(hub.runtime, hub.systems)
    gid4 = customer4.metadata["hub_global_id"]
    assert found(report) == {
        ("amount", "invoice", number[1], "billing,erp"),
        ("amount", "invoice", number[2], "billing,erp"),
        ("tax", "invoice", number[2], "billing,erp"),
        ("missing", "invoice", number[3], "billing"),
        ("status", "invoice", number[4], "billing,crm"),
        ("status", "invoice", number[5], "billing,erp"),
        ("status", "invoice", number[5], "billing,crm"),
        ("duplicate", "invoice", number[6], "billing,erp"),
        ("currency_or_entity", "invoice", number[7], "billing,crm"),
        ("orphan", "invoice", "ERP-ONLY-1", "erp"),
        ("orphan", "invoice", "CRM-ONLY-[bold]1", "crm"),
        ("missing", "invoice", str(extra.number), "billing"),
        ("missing", "invoice", str(extra.number), "billing"),
        ("missing", "customer", "Ledger 2 Corp", "crm"),
        ("duplicate", "customer", f"global id {gid4}", "billing"),
        ("status", "contract", contract(6), "billing,crm"),
    }
    assert len(report.drifts) == 16

    amount = drift(report, DriftKind.AMOUNT, number[1])
    assert amount.ids == {"billing": (invoices[1].id,), "erp": (amount_doc,)}
    assert amount.repair.event_type is None and amount_doc in amount.repair.action
    tax = drift(report, DriftKind.TAX, number[2])
    assert tax.ids["erp"] == (tax_doc,) and tax.values["billing"] == "0.00 USD"
    missing_crm = drift(report, DriftKind.MISSING, number[3])
    assert missing_crm.values == {"missing_in": "crm"}
    assert missing_crm.repair.event_type == "billing.invoice.finalized"
    assert missing_crm.repair.event_id is not None and missing_crm.repair.finance_sensitive
    status_crm = drift(report, DriftKind.STATUS, number[4], "crm")
    assert status_crm.ids["crm"] == (crm4["Id"],)
    assert status_crm.repair.event_type == "billing.invoice.finalized"
    paid_erp = drift(report, DriftKind.STATUS, number[5], "erp")
    assert paid_erp.repair.event_type == "billing.payment.succeeded"
    assert paid_erp.repair.event_id is not None and paid_erp.repair.event_status == "pending"
    assert "still pending in the hub" in paid_erp.repair.describe()
    assert drift(report, DriftKind.DUPLICATE, number[6]).ids["erp"] == (
        str(sixth["id"]),
        duplicate,
    )
    assert drift(report, DriftKind.CURRENCY_OR_ENTITY, number[7]).values == {
        "billing": "USD",
        "crm": "EUR",
    }
    assert drift(report, DriftKind.ORPHAN, "ERP-ONLY-1").ids == {"erp": (orphan_erp,)}
    assert drift(report, DriftKind.ORPHAN, "CRM-ONLY-[bold]1").ids == {"crm": (orphan_crm,)}
    extra_erp = next(
        d for d in report.drifts if d.key == extra.number and d.values["missing_in"] == "erp"
    )
    assert extra_erp.ids == {"billing": (extra.id,)}
    assert extra_erp.repair.event_type == "billing.invoice.finalized"
    assert extra_erp.repair.event_id is not None
    onboarding = drift(report, DriftKind.MISSING, "Ledger 2 Corp")
    assert onboarding.repair.event_type == "crm.opportunity.closed_won"
    assert onboarding.repair.event_id == f"closed_won:{opportunities[2]}"
    assert set(drift(report, DriftKind.DUPLICATE, f"global id {gid4}").ids["billing"]) == {
        customer4.id,
        twin.id,
    }
    canceled = drift(report, DriftKind.STATUS, contract(6))
    assert canceled.ids == {"billing": (subs[contract(6)].id,), "crm": (opportunities[6],)}
    assert canceled.repair.event_type == "billing.subscription.activated"

    admin = first_admin(hub.runtime)
    olga = new_operator(hub.runtime, admin, "olga", "operator")
    fiona = new_operator(hub.runtime, admin, "fiona", "finance_approver")
    await _cli_reads_the_same(hub, tmp_path, report, olga, fiona)
    await _since_reads_only_newer_objects(hub, report, started)
    await _scheduled_run_is_served(hub, report)

    # the repair goes through the engine: filed by one operator, approved by a finance approver
    request = file_repair(hub.runtime, missing_crm, by=olga)
    assert request.finance_sensitive and request.status == "pending"
    assert desk.invoices(number[3]) == []
    approve_replay(hub.runtime, request.id, by=fiona, note="CRM record deleted by mistake")
    await hub.settle()
    [back] = desk.invoices(number[3])
    assert back["Status__c"] == "Open"
    after = await reconcile(hub.runtime, hub.systems)
    assert missing_crm.id not in {d.id for d in after.drifts}
    assert amount.id in {d.id for d in after.drifts}


async def _cli_reads_the_same(
    hub: Hub, folder: Path, report: Report, olga: Operator, fiona: Operator
) -> None:
    """``q2c reconcile`` in a thread (it runs its own event loop), as an operator runs it."""
    config = systems_yaml(hub, folder)
    db = str(hub.runtime.engine.url)
    runner = CliRunner()
    common = ["--db", db, "--config", str(config)]
    olga_token = token_of(hub.runtime, olga)
    as_json = await asyncio.to_thread(
        runner.invoke, q2c, ["reconcile", "--format", "json", *common]
    )
    assert as_json.exit_code == 1, (as_json.output, as_json.exception)
    parsed = json.loads(as_json.stdout)
    assert parsed["drift_count"] == len(report.drifts)
    assert {d["id"] for d in parsed["drifts"]} == {d.id for d in report.drifts}
    as_csv = await asyncio.to_thread(runner.invoke, q2c, ["reconcile", "--format", "csv", *common])
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["id"] for r in rows} == {d.id for d in report.drifts}
    table = await asyncio.to_thread(
        runner.invoke, q2c, ["reconcile", *common], env={"COLUMNS": "400"}
    )
    assert "16 drift(s)" in table.stdout
    assert "CRM-ONLY-[bold]1" in table.stdout  # escaped, not taken as rich markup
    bad = await asyncio.to_thread(runner.invoke, q2c, ["reconcile", "--format", "xml", *common])
    assert bad.exit_code == 2 and "--format" in bad.output

    status_crm = next(
        d
        for d in report.drifts
        if d.kind is DriftKind.STATUS and d.values == {"billing": "open", "crm": "paid"}
    )
    filed = await asyncio.to_thread(
        runner.invoke, q2c, ["reconcile", "repair", status_crm.id, "--token", olga_token, *common]
    )
    assert filed.exit_code == 0, filed.output
    assert "finance-sensitive" in filed.stdout
    [pending] = list_requests(hub.runtime, "pending")
    assert pending.requested_by == "olga" and status_crm.id in pending.reason
    reject_replay(hub.runtime, pending.id, by=fiona, note="the CRM is fixed by hand")
    by_hand = next(d for d in report.drifts if d.kind is DriftKind.ORPHAN)
    refused = await asyncio.to_thread(
        runner.invoke, q2c, ["reconcile", "repair", by_hand.id, "--token", olga_token, *common]
    )
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "not repaired by a replay" in said
    assert "CRM-ONLY-[bold]1" in said  # the system's text is escaped, never markup


async def _since_reads_only_newer_objects(hub: Hub, report: Report, started: datetime) -> None:
    """A cut-off run reads what was created since, and makes no claim from absence."""
    later = await reconcile(hub.runtime, hub.systems, since=started)
    assert later.counts["billing"]["invoice"] == 1  # the invoice made in billing alone
    assert later.counts["erp"]["invoice"] == 4  # two re-issued, a duplicate, an orphan
    kinds = {d.kind for d in later.drifts}
    assert DriftKind.ORPHAN not in kinds and DriftKind.MISSING in kinds
    assert {d.id for d in later.drifts} < {d.id for d in report.drifts}


async def _scheduled_run_is_served(hub: Hub, report: Report) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(reconcile_forever(hub.runtime, hub.systems, stop, 3600))
    for _ in range(600):
        if kept_state(hub.runtime.engine, RECONCILIATION) is not None:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await task
    assert kept_state(hub.runtime.engine, RECONCILIATION) is not None
    reader = new_operator(
        hub.runtime, Operator("admin", frozenset({"admin"}), via="token"), "recon-reader", "viewer"
    )
    token = token_of(hub.runtime, reader)
    async with (
        served(build_app(hub.runtime)) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{url}/v1/reconciliation") as anonymous:
            assert anonymous.status == 401
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/v1/reconciliation", headers=headers) as answer:
            assert answer.status == 200
            body = await answer.json()
    assert body["report"]["drift_count"] == len(report.drifts)
    assert {d["id"] for d in body["report"]["drifts"]} == {d.id for d in report.drifts}
