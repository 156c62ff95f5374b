"""Catalog mapping: resolve by date, fan out order lines, bad files, the check against systems."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quote2cash.canonical import Interval, Money, Order, OrderLine, PricePlan, Product, Ref
from quote2cash.engine.errors import Category, MappingError
from quote2cash.masterdata import cli
from quote2cash.masterdata.catalog import check_catalog, load_catalog, parse_catalog, product_codes
from quote2cash.masterdata.config import ConfigError
from unit.masterdata.accounts_data import CONFIG

VERSIONED = """
version: 1
catalog:
  - code: PLATFORM-PRO
    kind: bundle
    versions:
      - effective_from: 2026-01-01
        effective_to: 2026-07-01
        billing:
          - {price: plat_seat_monthly}
          - {price: support_prem_monthly, per: line}
        erp:
          - {item: PLAT-SEAT}
          - {item: SUPPORT-PREM, per: line}
      - effective_from: 2026-07-01
        billing:
          - {price: plat_seat_monthly_v2, quantity: 1}
          - {price: support_prem_monthly, quantity: 2, per: line}
        erp:
          - {item: PLAT-SEAT}
          - {item: SUPPORT-PREM, quantity: 2, per: line}
  - code: API-CALLS
    versions:
      - effective_from: 2026-01-01
        billing: [{price: api_calls_metered}]
        erp: [{item: API-CALLS, quantity: 1000}]
"""
CATALOG = parse_catalog(VERSIONED, "catalog.yaml")


@pytest.mark.parametrize(
    ("code", "on", "prices", "items"),
    [
        (
            "PLATFORM-PRO",
            date(2026, 1, 1),
            ["plat_seat_monthly", "support_prem_monthly"],
            ["PLAT-SEAT", "SUPPORT-PREM"],
        ),
        (
            "PLATFORM-PRO",
            date(2026, 6, 30),
            ["plat_seat_monthly", "support_prem_monthly"],
            ["PLAT-SEAT", "SUPPORT-PREM"],
        ),
        (
            "PLATFORM-PRO",
            date(2026, 7, 1),
            ["plat_seat_monthly_v2", "support_prem_monthly"],
            ["PLAT-SEAT", "SUPPORT-PREM"],
        ),
        (
            "PLATFORM-PRO",
            date(2030, 1, 1),
            ["plat_seat_monthly_v2", "support_prem_monthly"],
            ["PLAT-SEAT", "SUPPORT-PREM"],
        ),
        ("API-CALLS", date(2026, 3, 3), ["api_calls_metered"], ["API-CALLS"]),
    ],
)
def test_resolve_gives_the_mapping_in_force(
    code: str, on: date, prices: list[str], items: list[str]
) -> None:
    mapping = CATALOG.resolve(code, on)
    assert [b.price for b in mapping.version.billing] == prices
    assert [e.item for e in mapping.version.erp] == items


@pytest.mark.parametrize(
    ("code", "on", "message"),
    [
        ("PLATFORM-PRO", date(2025, 12, 31), "no catalog mapping in force on 2025-12-31"),
        ("GOLD", date(2026, 1, 1), "product code 'GOLD' has no catalog mapping in catalog.yaml"),
    ],
)
def test_resolve_failures_are_mapping_errors(code: str, on: date, message: str) -> None:
    with pytest.raises(MappingError, match=message) as caught:
        CATALOG.resolve(code, on)
    assert caught.value.category is Category.MAPPING


def line(code: str, quantity: int, currency: str = "USD") -> OrderLine:
    price = Money(Decimal("10.00"), currency)
    return OrderLine(
        product=Ref(external_ids={"product_code": code, "crm": "01t000"}),
        quantity=quantity,
        unit_price=price,
        amount=price * quantity,
    )


def order(*lines: OrderLine, start: date = date(2026, 8, 1), currency: str = "USD") -> Order:
    if currency != "USD":
        lines = tuple(
            line(each.product.external_ids["product_code"], each.quantity, currency)
            for each in lines
        )
    return Order(
        number="Q-1", customer=Ref.to("CUS-1"), currency=currency, start_date=start, lines=lines
    )


def test_map_order_lines_fans_bundles_out_with_multipliers() -> None:
    mapped = CATALOG.map_order_lines(order(line("PLATFORM-PRO", 10), line("API-CALLS", 3)))
    assert mapped[0].billing == (("plat_seat_monthly_v2", 10), ("support_prem_monthly", 2))
    assert mapped[0].erp == (("PLAT-SEAT", 10), ("SUPPORT-PREM", 2))
    assert mapped[1].billing == (("api_calls_metered", 3),)
    assert mapped[1].erp == (("API-CALLS", 3000),)
    earlier = CATALOG.map_order_lines(order(line("PLATFORM-PRO", 10)), on_date=date(2026, 2, 1))
    assert earlier[0].billing == (("plat_seat_monthly", 10), ("support_prem_monthly", 1))


def test_map_order_lines_names_every_unmapped_code_at_once() -> None:
    bad = order(line("PLATFORM-PRO", 1), line("GOLD", 1), line("SILVER", 2))
    with pytest.raises(MappingError) as caught:
        CATALOG.map_order_lines(bad)
    message = str(caught.value)
    assert "Order Q-1: 2 of 3 lines cannot be mapped" in message
    assert "lines[1]: product code 'GOLD'" in message
    assert "lines[2]: product code 'SILVER'" in message
    no_code = OrderLine(
        product=Ref.to("PRD-1"), quantity=1, unit_price=Money("1", "USD"), amount=Money("1", "USD")
    )
    with pytest.raises(MappingError, match=r"lines\[0\]: no product code"):
        CATALOG.map_order_lines(order(no_code))


def test_the_shipped_catalog_is_valid_and_maps_the_sandbox_items() -> None:
    catalog = load_catalog(CONFIG / "catalog.yaml")
    mapped = catalog.map_order_lines(order(line("PLATFORM-PRO", 5), line("ONBOARD", 1)))
    # A support plan with every seat, as the CRM prices the bundle (248.00 = 49.00 + 199.00).
    assert mapped[0].erp == (("PLAT-SEAT", 5), ("SUPPORT-PREM", 5))
    assert mapped[0].billing == (("plat_seat_monthly_usd", 5), ("support_prem_monthly_usd", 5))
    assert mapped[1].erp == (("ONBOARD", 1),)
    in_euro = catalog.map_order_lines(order(line("PLAT-SEAT", 2), currency="EUR"))
    assert in_euro[0].billing == (("plat_seat_monthly_eur", 2),)
    items = {e.item for m in catalog.config.catalog for v in m.versions for e in v.erp}
    assert items == {"PLAT-SEAT", "SUPPORT-PREM", "API-CALLS", "ONBOARD"}


def line_of(text: str, needle: str) -> int:
    """The last line containing ``needle`` (a duplicate is reported where it repeats)."""
    return max(n for n, text_line in enumerate(text.splitlines(), 1) if needle in text_line)


BAD = [
    # (text, needle marking the expected line, key path, problem)
    (
        VERSIONED.replace(
            "      - effective_from: 2026-07-01", "      - effective_from: 2026-06-01"
        ),
        "effective_from: 2026-06-01",
        "catalog[0].versions[1].effective_from",
        "version from 2026-06-01 of 'PLATFORM-PRO' overlaps the version 2026-01-01..2026-07-01",
    ),
    (
        VERSIONED.replace("effective_to: 2026-07-01", "effective_to: 2025-07-01"),
        "effective_to: 2025-07-01",
        "catalog[0].versions[0].effective_to",
        "must be after effective_from",
    ),
    (
        VERSIONED.replace("quantity: 1000}", "quantity: 0}"),
        "quantity: 0}",
        "catalog[1].versions[0].erp[0].quantity",
        "greater than or equal to 1",
    ),
    (
        VERSIONED.replace("quantity: 1000}", "quantity: 1.5}"),
        "quantity: 1.5}",
        "catalog[1].versions[0].erp[0].quantity",
        "valid integer",
    ),
    (
        VERSIONED.replace("  - code: API-CALLS", "  - code: PLATFORM-PRO"),
        "  - code: PLATFORM-PRO",
        "catalog[1].code",
        "code 'PLATFORM-PRO' is already mapped at catalog[0]",
    ),
    (
        VERSIONED.replace("billing: [{price: api_calls_metered}]", "billing: []"),
        "billing: []",
        "catalog[1].versions[0].billing",
        "at least 1 item",
    ),
    (
        VERSIONED.replace(
            "{price: support_prem_monthly, per: line}", "{price: support_prem_monthly, per: seat}"
        ),
        "per: seat",
        "catalog[0].versions[0].billing[1].per",
        "'unit' or 'line'",
    ),
    (
        VERSIONED.replace("    kind: bundle\n", "    kind: product\n"),
        "  - code: PLATFORM-PRO",
        "catalog[0].versions[0]",
        "declare it kind 'bundle'",
    ),
    (
        VERSIONED.replace(
            "effective_from: 2026-01-01\n        effective_to",
            "effective_from: someday\n        effective_to",
        ),
        "effective_from: someday",
        "catalog[0].versions[0].effective_from",
        "valid date",
    ),
    (
        VERSIONED.replace("        erp: [{item: API-CALLS", "        erpp: [{item: API-CALLS"),
        "erpp:",
        "catalog[1].versions[0].erpp",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "key", "problem"), BAD, ids=[b[2] + ":" + b[3][:20] for b in BAD]
)
def test_bad_catalog_names_file_key_line_and_problem(
    text: str, needle: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_catalog(text, "config/catalog.yaml")
    assert caught.value.key_path == key
    assert problem in str(caught.value)
    if key != "catalog[0].versions[0]":
        assert caught.value.line == line_of(text, needle)
    assert str(caught.value).startswith(f"config/catalog.yaml: line {caught.value.line}: {key}: ")


PER_CURRENCY = """
catalog:
  - code: SEAT
    versions:
      - effective_from: 2026-01-01
        billing: [{price: {USD: seat_usd, EUR: seat_eur}}]
        erp: [{item: PLAT-SEAT}]
"""


def test_per_currency_prices_follow_the_order_currency() -> None:
    catalog = parse_catalog(PER_CURRENCY)
    assert catalog.map_order_lines(order(line("SEAT", 3)))[0].billing == (("seat_usd", 3),)
    assert catalog.map_order_lines(order(line("SEAT", 3), currency="EUR"))[0].billing == (
        ("seat_eur", 3),
    )
    with pytest.raises(
        MappingError, match="'SEAT' has no billing price in GBP \\(priced in EUR, USD\\)"
    ):
        catalog.map_order_lines(order(line("SEAT", 1), currency="GBP"))
    with pytest.raises(ConfigError, match=r"line 6: catalog\[0\].versions\[0\].billing\[0\].price"):
        parse_catalog(PER_CURRENCY.replace("EUR: seat_eur", "EURO: seat_eur"))


def test_product_codes_finds_codes_by_the_crm_product_id() -> None:
    products = [Product(name="Seat", sku="PLAT-SEAT", external_ids={"crm": "01tAAA"})]
    by_id = OrderLine(
        product=Ref(external_ids={"crm": "01tAAA", "erp": "PLAT-SEAT"}),
        quantity=2,
        unit_price=Money("1", "USD"),
        amount=Money("2", "USD"),
    )
    catalog = load_catalog(CONFIG / "catalog.yaml")
    mapped = catalog.map_order_lines(order(by_id), code_of=product_codes(products))
    assert mapped[0].code == "PLAT-SEAT" and mapped[0].erp == (("PLAT-SEAT", 2),)
    with pytest.raises(MappingError, match=r"lines\[0\]: no product code"):
        catalog.map_order_lines(order(by_id))


# Honest test doubles of the role protocols' catalog reads: fixed lists, as the real connectors
# (written in parallel) will return them. Only the list methods exist; nothing else is faked.


class FixedListCrm:
    system = "crm"

    def __init__(self, codes: list[str]) -> None:
        self.products = [
            Product(name=c, sku=c, external_ids={"crm": f"01t{i}"}) for i, c in enumerate(codes)
        ]

    async def list_products(self) -> list[Product]:
        return self.products


class FixedListErp:
    system = "erp"

    def __init__(self, items: list[str], inactive: tuple[str, ...] = ()) -> None:
        self.items = [Product(name=i, sku=i, active=i not in inactive) for i in items]

    async def list_items(self) -> list[Product]:
        return self.items


class FixedListBilling:
    system = "billing"

    def __init__(self, lookup_keys: list[str]) -> None:
        self.prices = [
            PricePlan(
                external_ids={"billing": f"price_{n}", "lookup_key": key},
                product=Ref.external("billing", "prod_1"),
                currency="USD",
                unit_amount=Decimal("50"),
                interval=Interval.MONTH,
            )
            for n, key in enumerate(lookup_keys)
        ]

    async def list_prices(self) -> list[PricePlan]:
        return self.prices


SANDBOX_ITEMS = ["PLAT-SEAT", "SUPPORT-PREM", "API-CALLS", "ONBOARD"]
SHIPPED_PRICES = [
    f"{key}_{currency}"
    for key in ("plat_seat_monthly", "support_prem_monthly", "api_calls_metered", "onboarding_once")
    for currency in ("usd", "eur")
]
SHIPPED_CODES = ["PLAT-SEAT", "SUPPORT-PREM", "API-CALLS", "ONBOARD", "PLATFORM-PRO"]


async def test_check_catalog_passes_a_correct_catalog() -> None:
    catalog = load_catalog(CONFIG / "catalog.yaml")
    report = await check_catalog(
        catalog,
        crm=FixedListCrm(SHIPPED_CODES),  # type: ignore[arg-type]
        erp=FixedListErp(SANDBOX_ITEMS),  # type: ignore[arg-type]
        billing=FixedListBilling(SHIPPED_PRICES),  # type: ignore[arg-type]
    )
    assert report.ok, report.summary()
    assert report.checked_systems == ("crm", "erp", "billing")


async def test_check_catalog_reports_every_missing_item_and_price() -> None:
    report = await check_catalog(
        CATALOG,
        crm=FixedListCrm(["API-CALLS"]),  # type: ignore[arg-type]
        erp=FixedListErp(["PLAT-SEAT", "SUPPORT-PREM", "API-CALLS"], inactive=("API-CALLS",)),  # type: ignore[arg-type]
        billing=FixedListBilling(["plat_seat_monthly", "api_calls_metered"]),  # type: ignore[arg-type]
    )
    assert not report.ok
    assert report.missing("crm") == ["PLATFORM-PRO"]
    assert report.missing("erp") == ["API-CALLS"]
    assert sorted(report.missing("billing")) == ["plat_seat_monthly_v2", "support_prem_monthly"]
    text = report.summary()
    assert "erp: API-CALLS item inactive (used by API-CALLS@2026-01-01)" in text
    assert (
        "billing: support_prem_monthly price not found "
        "(used by PLATFORM-PRO@2026-01-01, PLATFORM-PRO@2026-07-01)" in text
    )


async def test_check_catalog_checks_only_the_systems_given() -> None:
    report = await check_catalog(CATALOG, erp=FixedListErp(SANDBOX_ITEMS))  # type: ignore[arg-type]
    assert report.ok and report.checked_systems == ("erp",)


def test_cli_check_validates_offline_and_names_the_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli.catalog_app, ["check", str(CONFIG / "catalog.yaml")])
    assert good.exit_code == 0, good.output
    assert "valid, 5 codes, 5 versions" in good.output
    bad_file = tmp_path / "catalog.yaml"
    bad_file.write_text(VERSIONED.replace("quantity: 1000}", "quantity: 0}"))
    bad = runner.invoke(cli.catalog_app, ["check", str(bad_file)])
    assert bad.exit_code == 2
    assert f"{bad_file}: line 26: catalog[1].versions[0].erp[0].quantity" in bad.output


def test_cli_check_against_registered_systems(tmp_path: Path) -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def systems():  # type: ignore[no-untyped-def]
        yield FixedListCrm(SHIPPED_CODES), FixedListErp(SANDBOX_ITEMS[:3]), None

    cli.use_systems(systems)
    try:
        result = CliRunner().invoke(cli.catalog_app, ["check", str(CONFIG / "catalog.yaml")])
    finally:
        cli.use_systems(None)
    assert result.exit_code == 1
    assert "erp: ONBOARD item not found (used by ONBOARD@2026-01-01)" in result.output
