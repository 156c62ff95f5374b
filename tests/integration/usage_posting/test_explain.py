"""``q2c usage explain``: a metered invoice line, read from billing, is the sum of the records
the hub posted into it, times the unit price, to the cent; late usage adjusted into a later
invoice is explained by the records of the batch that brought it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from quote2cash.cli import app
from quote2cash.engine.errors import DataError
from quote2cash.usage.explain import explain
from quote2cash.usage.wiring import use_ledger
from support.usage_ledger import MemoryUsageLedger

from .conftest import FEB, JAN, MAR, UNIT_MINOR, UsageWorld

DAY = timedelta(days=1)
UNIT = Decimal(UNIT_MINOR) / 100


def cents(quantities: list[str]) -> int:
    """What the records are worth in cents, computed here from the records alone."""
    total = sum((Decimal(q) for q in quantities), Decimal(0)) * UNIT
    return int((total * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture
def wired(world: UsageWorld) -> Iterator[UsageWorld]:
    use_ledger(lambda _runtime: world.ledger)
    yield world
    use_ledger(None)


async def test_a_line_is_the_sum_of_its_records_to_the_cent(wired: UsageWorld) -> None:
    world = wired
    jan = ["1000", "336.5", "0.25"]
    late = ["99.75", "1"]
    feb = ["12", "13.5"]
    await world.accept((jan[0], JAN + DAY), (jan[1], JAN + 9 * DAY))
    await world.accept((jan[2], JAN + 20 * DAY))
    world.advance(FEB + timedelta(hours=1))
    await world.accept((late[0], JAN + 25 * DAY), (late[1], JAN + 26 * DAY))  # adjusted
    await world.accept((feb[0], FEB + DAY), (feb[1], FEB + 2 * DAY))
    world.advance(MAR + timedelta(hours=1))
    jan_line, feb_line = world.usage_invoice_lines()
    assert jan_line.amount == cents(jan)
    assert feb_line.amount == cents(late + feb)

    explained = await explain(world.billing, world.deps.usage_postings, world.ledger, jan_line.id)
    assert explained.agrees
    assert explained.line.invoice_id == jan_line.invoice
    assert [r.quantity for p in explained.parts for r in p.records] == [Decimal(q) for q in jan]
    assert explained.records_amount.stripe_amount == jan_line.amount

    feb_explained = await explain(
        world.billing, world.deps.usage_postings, world.ledger, feb_line.id
    )
    assert feb_explained.agrees
    by_aggregate = {
        (p.posting.period_start, p.posting.version): sorted(str(r.quantity) for r in p.records)
        for p in feb_explained.parts
    }
    assert by_aggregate == {(JAN, 3): sorted(late), (FEB, 1): sorted(feb)}
    assert feb_explained.records_amount.stripe_amount == feb_line.amount


async def test_the_command_explains_by_line_id_or_invoice_and_line_number(
    wired: UsageWorld, tmp_path: Path
) -> None:
    world = wired
    await world.accept(("500", JAN + DAY), ("250.5", JAN + 2 * DAY))
    world.advance(FEB + timedelta(hours=1))
    (line,) = world.usage_invoice_lines()
    config = str(world.systems_yaml(tmp_path))
    runner = CliRunner()

    async def q2c(*args: str) -> Result:
        """The command in a thread: it runs its own event loop, as from a shell."""
        return await asyncio.to_thread(runner.invoke, app, list(args))

    common = ["--db", world.db_url, "--config", config, "--format", "json"]
    by_id = await q2c("usage", "explain", line.id, *common)
    assert by_id.exit_code == 0, by_id.output
    data = json.loads(by_id.output)
    assert data["agrees"] is True
    assert data["line"]["line"] == line.id and data["line"]["amount"] == "2.78"
    (aggregate,) = data["aggregates"]
    assert [r["quantity"] for r in aggregate["records"]] == ["500", "250.5"]
    assert aggregate["batches"] == ["batch-1"]
    invoice = world.sdk.v1.invoices.retrieve(line.invoice)
    position = [x.id for x in invoice.lines.data].index(line.id) + 1
    by_number = await q2c("usage", "explain", f"{line.invoice}#{position}", *common)
    assert by_number.exit_code == 0, by_number.output
    assert json.loads(by_number.output)["aggregates"] == data["aggregates"]
    table = await q2c("usage", "explain", line.id, "--db", world.db_url, "--config", config)
    assert table.exit_code == 0 and "agrees" in table.output
    wrong = await q2c("usage", "explain", f"{line.invoice}#99", *common)
    assert wrong.exit_code == 2 and "line 99 is not a metered usage line" in wrong.output


async def test_a_ledger_without_the_posted_aggregate_is_a_clear_error(world: UsageWorld) -> None:
    await world.accept(("5", JAN + DAY))
    world.advance(FEB + timedelta(hours=1))
    (line,) = world.usage_invoice_lines()
    with pytest.raises(DataError) as raised:
        await explain(world.billing, world.deps.usage_postings, MemoryUsageLedger(), line.id)
    assert line.id in str(raised.value) and "does not hold it" in str(raised.value)
