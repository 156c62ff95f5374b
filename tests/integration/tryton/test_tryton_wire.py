"""Tryton's JSON-RPC wire format and the client's transport failures (no Tryton needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp import web

from quote2cash.connectors.tryton.client import (
    TrytonClient,
    TrytonStateConflict,
    TrytonUserError,
    TrytonWarning,
    decode_json,
    encode_json,
)
from quote2cash.engine.errors import (
    AuthError,
    Category,
    ConflictError,
    MappingError,
    TransientError,
)


def test_money_travels_as_decimal_strings_never_floats() -> None:
    body = encode_json({"amount": Decimal("12.50"), "tiny": Decimal("1E-7")})
    assert json.loads(body) == {
        "amount": {"__class__": "Decimal", "decimal": "12.50"},
        "tiny": {"__class__": "Decimal", "decimal": "0.0000001"},
    }
    assert decode_json(body) == {"amount": Decimal("12.50"), "tiny": Decimal("0.0000001")}
    assert isinstance(decode_json(body)["amount"], Decimal)


def test_dates_datetimes_and_bytes_round_trip() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    sent = {
        "day": dt.date(2026, 2, 28),
        "at": dt.datetime(2026, 2, 28, 13, 5, 7, 123, tzinfo=berlin),
        "pdf": b"%PDF-\x00\xff",
        "wait": dt.timedelta(seconds=90),
    }
    wire = json.loads(encode_json(sent))
    assert wire["day"] == {"__class__": "date", "year": 2026, "month": 2, "day": 28}
    assert wire["at"]["hour"] == 12  # sent as naive UTC, as Tryton stores it
    back = decode_json(encode_json(sent))
    assert back["day"] == dt.date(2026, 2, 28)
    assert back["at"] == sent["at"] and back["at"].tzinfo == dt.UTC
    assert back["pdf"] == b"%PDF-\x00\xff"
    assert back["wait"] == dt.timedelta(seconds=90)


def test_unknown_types_are_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="cannot send a object"):
        encode_json({"x": object()})


@pytest.mark.parametrize(
    ("error", "expected", "category"),
    [
        (["UserError", ["Missing account.", "", None]], TrytonUserError, Category.DATA),
        (
            ["UserError", ['You can not call "post" on "INV-1".', "", None]],
            TrytonStateConflict,
            Category.CONFLICT,
        ),
        (["UserWarning", ["0" * 32 + ".some_check", "Check me.", ""]], TrytonWarning, "data"),
        (["ConcurrencyException", "Record modified"], ConflictError, Category.CONFLICT),
        (["LoginException", ["totp", "Code?", "char"]], AuthError, Category.AUTH),
        (["'a.b'", ""], MappingError, Category.MAPPING),
    ],
)
def test_tryton_errors_map_onto_the_engine_taxonomy(
    error: list[object], expected: type[Exception], category: str
) -> None:
    client = TrytonClient("http://127.0.0.1:9", "db", "q2c_hub", "pw")
    mapped = client._error("model.a.b.search", error)
    assert type(mapped) is expected
    assert getattr(mapped, "category", None) == Category(category)
    assert getattr(mapped, "system", None) == "erp"


def test_a_locked_database_is_transient() -> None:
    client = TrytonClient("http://127.0.0.1:9", "db", "q2c_hub", "pw")
    mapped = client._error("model.party.party.create", ["database is locked", ""])
    assert isinstance(mapped, TransientError)


def test_warning_kind_strips_the_record_hash() -> None:
    warning = TrytonWarning("5d41402abc4b2a76b9719d911017c592.account.invoice eu_vat valid", "m")
    assert warning.kind == "account.invoice eu_vat valid"


@pytest.fixture
async def misbehaving_server() -> AsyncIterator[str]:
    """A real HTTP server on loopback that answers like an overloaded proxy in front of Tryton."""

    async def overloaded(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "7"}, text="busy")

    async def throttled(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "2"}, text="slow down")

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/busy/rpc/", overloaded)
    app.router.add_post("/throttled/rpc/", throttled)
    app.router.add_post("/silent/rpc/", silent)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_5xx_and_429_are_transient_with_retry_after(misbehaving_server: str) -> None:
    for database, retry_after in (("busy", 7.0), ("throttled", 2.0)):
        client = TrytonClient(misbehaving_server, database, "q2c_hub", "pw")
        with pytest.raises(TransientError) as failed:
            await client.login()
        await client.close()
        assert failed.value.retry_after == retry_after
        assert failed.value.system == "erp"


async def test_a_server_that_does_not_answer_times_out_as_transient(
    misbehaving_server: str,
) -> None:
    client = TrytonClient(misbehaving_server, "silent", "q2c_hub", "pw", timeout=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TransientError, match=r"Tryton .*timed out"):
        await client.login()
    await client.close()
    assert asyncio.get_running_loop().time() - started < 5


async def test_nothing_listening_is_transient() -> None:
    client = TrytonClient("http://127.0.0.1:9", "db", "q2c_hub", "pw", connect_timeout=1)
    with pytest.raises(TransientError, match=r"Tryton .*cannot connect"):
        await client.login()
    await client.close()
