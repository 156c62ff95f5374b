"""The batch file interface: ack and error files, archive, duplicate references, waiting."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from contract.erp import builders
from integration.legacy_erp.conftest import config_for
from quote2cash.canonical import CreditMemo, CreditMemoLine, InvoiceStatus, Money, Ref
from quote2cash.connectors.legacy_erp import DropFolder, LegacyErp
from quote2cash.connectors.roles import LedgerKind
from quote2cash.engine.errors import TransientError
from quote2cash.sandbox.legacy_erp import LegacyErpEndpoint, LegacyErpSandbox


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


async def _answer(folder: DropFolder, name: str, reference: str) -> None:
    assert await folder.wait(name, reference, seconds=30, poll=0.05) is not None


async def test_one_file_is_acknowledged_per_line_refusals_go_to_err_and_it_is_archived(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str
) -> None:
    party = await erp.upsert_customer(
        builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
    )
    posted = await erp.post_invoice(
        builders.invoice(unique, party, "USD", "PLAT-SEAT"),
        legal_entity="US",
        idempotency_key=unique,
    )
    folder = DropFolder(Path(endpoint.drop_folder))
    good = {"invoice": posted.erp_id, "currency": "USD", "amount": "10.00"}
    rows = [
        {**good, "record_type": "payment", "reference": f"ok-{unique}"},
        {**good, "record_type": "payment", "reference": f"eur-{unique}", "currency": "EUR"},
        {**good, "record_type": "payment", "reference": f"nan-{unique}", "amount": "ten"},
    ]
    # one file with three records (the connector writes one per file; the ERP takes many)
    name = folder.drop("payment", f"ok-{unique}", rows[:1])
    inbox = Path(endpoint.drop_folder) / "in" / name
    with inbox.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_rows(inbox)[0]))
        writer.writerows(rows[1:])
    await _answer(folder, name, f"ok-{unique}")
    stem = name.removesuffix(".csv")
    root = Path(endpoint.drop_folder)
    acks = _rows(root / "ack" / f"{stem}.ack.csv")
    errors = {row["reference"]: row for row in _rows(root / "err" / f"{stem}.err.csv")}
    assert [a["reference"] for a in acks] == [f"ok-{unique}"] and acks[0]["document"]
    assert errors[f"eur-{unique}"]["code"] == "Client.CurrencyMismatch"
    assert "EUR" in errors[f"eur-{unique}"]["message"]
    assert errors[f"nan-{unique}"]["code"] == "Client.Validation"
    assert "'ten'" in errors[f"nan-{unique}"]["message"]
    assert (root / "archive" / name).exists() and not inbox.exists()
    for path in (root / "ack" / f"{stem}.ack.csv", root / "archive" / name):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    status = await erp.invoice_status(posted.erp_id)
    assert status.amount_paid == Money("10.00", "USD")


async def test_a_reference_seen_before_answers_with_the_same_document(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str
) -> None:
    party = await erp.upsert_customer(
        builders.customer(unique, "DE"), legal_entity="DE", idempotency_key=unique
    )
    posted = await erp.post_invoice(
        builders.invoice(unique, party, "EUR", "PLAT-SEAT"),
        legal_entity="DE",
        idempotency_key=unique,
    )
    folder = DropFolder(Path(endpoint.drop_folder))
    row = {"invoice": posted.erp_id, "currency": "EUR", "amount": "87.65"}
    first = folder.drop("payment", f"pay-{unique}", [row])
    second = folder.drop("payment", f"pay-{unique}", [row])
    answers = []
    for name in (first, second):
        await _answer(folder, name, f"pay-{unique}")
        answers.append(folder.answer(name, f"pay-{unique}"))
    assert answers[0] is not None and answers[0].document
    assert answers[1] == answers[0]
    status = await erp.invoice_status(posted.erp_id)
    assert status.status is InvoiceStatus.PAID and status.amount_paid == posted.total


async def test_an_unanswered_file_is_transient_and_a_retry_never_writes_a_second(
    tmp_path: Path, unique: str
) -> None:
    """With a batch that has not run, the call waits then is retried; once it ran, the retry
    finds the one document."""
    sandbox = LegacyErpSandbox(tmp_path, batch_seconds=3600)
    endpoint = sandbox.start()
    try:
        async with LegacyErp(config_for(endpoint, ack_wait_seconds=0.2)) as erp:
            party = await erp.upsert_customer(
                builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
            )
            invoice = builders.invoice(unique, party, "USD", "PLAT-SEAT")
            for _ in range(2):
                with pytest.raises(TransientError, match="waiting for the legacy ERP's batch"):
                    await erp.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
            assert len(list((Path(endpoint.drop_folder) / "in").glob("*.csv"))) == 1
    finally:
        sandbox.stop()
    sandbox = LegacyErpSandbox(tmp_path, batch_seconds=0.05)
    endpoint = sandbox.start()
    try:
        async with LegacyErp(config_for(endpoint)) as erp:
            posted = await erp.post_invoice(invoice, legal_entity="US", idempotency_key="other")
            again = await erp.post_invoice(invoice, legal_entity="US", idempotency_key=unique)
            assert again == posted and posted.total == invoice.total
            page = await erp.ledger(LedgerKind.INVOICE)
            assert [e.number for e in page.items] == [invoice.number]
    finally:
        sandbox.stop()


async def test_state_survives_a_restart_and_numbering_continues(
    tmp_path: Path, unique: str
) -> None:
    sandbox = LegacyErpSandbox(tmp_path)
    endpoint = sandbox.start()
    try:
        async with LegacyErp(config_for(endpoint)) as erp:
            party = await erp.upsert_customer(
                builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
            )
            posted = await erp.post_invoice(
                builders.invoice(unique, party, "USD", "ONBOARD"),
                legal_entity="US",
                idempotency_key=unique,
            )
            await erp.apply_payment(
                builders.payment(Money("20.00", "USD")),
                erp_invoice_id=posted.erp_id,
                idempotency_key="p" + unique,
            )
    finally:
        sandbox.stop()
    books = Path(endpoint.data) / "books.sqlite"
    assert stat.S_IMODE(books.stat().st_mode) == 0o600
    sandbox = LegacyErpSandbox(tmp_path)
    endpoint = sandbox.start()
    try:
        async with LegacyErp(config_for(endpoint)) as erp:
            stored = await erp.get_customer(party)
            assert stored.global_id == f"cus-{unique}"
            status = await erp.invoice_status(posted.erp_id)
            assert status.amount_paid == Money("20.00", "USD")
            assert status.amount_due == posted.total - Money("20.00", "USD")
            other = await erp.upsert_customer(
                builders.customer("b" + unique, "US"), legal_entity="US", idempotency_key="b"
            )
            assert other != party and other > party
            customers = await erp.ledger(LedgerKind.CUSTOMER)
            assert [e.id for e in customers.items] == [party, other]
    finally:
        sandbox.stop()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe not csv at all \x00", "not readable CSV"),
        (b"record_type,reference\nrefund,r1\n", "record_type 'refund'"),
        (b"record_type,reference,amount\npayment,r2,1.001\n", "more than 2 decimals"),
        (b"record_type,reference\npayment,r3\n", "amount"),
    ],
)
async def test_a_bad_file_is_answered_with_errors_and_the_batch_goes_on(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str, content: bytes, expected: str
) -> None:
    root = Path(endpoint.drop_folder)
    name = f"{unique}-bad.csv"
    (root / "in" / name).write_bytes(content)
    folder = DropFolder(root)
    await _answer(folder, name, "")
    errors = _rows(root / "err" / f"{unique}-bad.err.csv")
    assert errors and expected in errors[0]["message"]
    assert (root / "archive" / name).exists()
    assert (await erp.check()).reachable


async def test_two_hub_processes_posting_the_same_invoice_at_once_make_one_document(
    endpoint: LegacyErpEndpoint, unique: str
) -> None:
    async with LegacyErp(config_for(endpoint)) as first, LegacyErp(config_for(endpoint)) as other:
        party = await first.upsert_customer(
            builders.customer(unique, "US"), legal_entity="US", idempotency_key=unique
        )
        invoice = builders.invoice(unique, party, "USD", "PLAT-SEAT")
        posted = await asyncio.gather(
            *(
                erp.post_invoice(invoice, legal_entity="US", idempotency_key=f"{n}{unique}")
                for n, erp in enumerate((first, other, first, other))
            )
        )
        assert len({p.erp_id for p in posted}) == 1
        pays = [
            erp.apply_payment(
                builders.payment(Money("10.00", "USD")),
                erp_invoice_id=posted[0].erp_id,
                idempotency_key=f"p{n % 3}{unique}",
            )
            for n, erp in enumerate((first, other, first, other, first, other))
        ]
        assert len(set(await asyncio.gather(*pays))) == 3
        status = await first.invoice_status(posted[0].erp_id)
        assert status.amount_paid == Money("30.00", "USD")


@pytest.mark.parametrize("kind", ["customer_credit", "credit_note"])
async def test_a_credit_keeps_the_tax_it_reverses_and_a_tax_over_its_amount_is_refused(
    erp: LegacyErp, endpoint: LegacyErpEndpoint, unique: str, kind: str
) -> None:
    """A credit of a taxed invoice (a downgrade's proration, a goodwill credit note) shows the
    tax it reverses, as the invoice it offsets shows its tax; found by the lifecycle model on
    Q2C GmbH's downgrades, where the ERP had booked such credits with tax 0."""
    party = await erp.upsert_customer(
        builders.customer(unique, "DE"), legal_entity="DE", idempotency_key=unique
    )
    posted = await erp.post_invoice(
        builders.invoice(unique, party, "EUR", "PLAT-SEAT", tax_rate=Decimal("0.19")),
        legal_entity="DE",
        idempotency_key=unique,
    )
    total, tax = Money("23.80", "EUR"), Money("3.80", "EUR")
    memo = CreditMemo(
        number=f"CN-{unique}",
        customer=Ref(global_id=f"cus-{unique}", external_ids={"erp": party}),
        invoice=Ref.external("erp", posted.erp_id),
        currency="EUR",
        issued_at=dt.datetime.now(dt.UTC),
        lines=(CreditMemoLine(description="Unused time", amount=total - tax, tax=tax),),
        tax=tax,
        total=total,
    )
    if kind == "credit_note":
        number = await erp.issue_credit_note(
            memo, erp_invoice_id=posted.erp_id, idempotency_key=unique
        )
    else:
        credit = await erp.post_customer_credit(memo, legal_entity="DE", idempotency_key=unique)
        number = credit.erp_id
    entries = {e.id: e for e in (await erp.ledger(LedgerKind.INVOICE, limit=500)).items}
    assert (entries[number].total, entries[number].tax) == (-total, -tax)

    folder = DropFolder(Path(endpoint.drop_folder))
    row = {"invoice": posted.erp_id, "entity": "DE", "customer": party, "currency": "EUR"}
    name = folder.drop(kind, f"over-{unique}", [{**row, "amount": "5.00", "line_tax": "6.00"}])
    answer = await folder.wait(name, f"over-{unique}", seconds=30, poll=0.05)
    assert answer is not None and answer.code == "Client.Validation"
    assert "tax 6.00 must be between 0 and the amount 5.00" in (answer.message or "")
