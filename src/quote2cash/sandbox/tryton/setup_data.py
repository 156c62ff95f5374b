"""The business setup every sandbox ERP database starts from, written over JSON-RPC.

Two legal entities in one database (Q2C Inc., US/USD and Q2C GmbH, DE/EUR), each with a chart of
accounts, fiscal years for this year and the next, sequences, its taxes (named by the group's tax
codes of ``config/tax.yaml``; tax rounded per line, as billing rounds it), a deferred-revenue
account and a cash payment method; shared countries, currencies, a service product category and
the item master; plus the hub's own non-admin API user. Bump ``SETUP_VERSION`` when this changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Final

from quote2cash.connectors.tryton.client import TrytonClient

SETUP_VERSION: Final = 2

COUNTRIES: Final = (
    ("US", "USA", "840", "United States"),
    ("DE", "DEU", "276", "Germany"),
    ("GB", "GBR", "826", "United Kingdom"),
    ("FR", "FRA", "250", "France"),
    ("NL", "NLD", "528", "Netherlands"),
    ("CA", "CAN", "124", "Canada"),
    ("JP", "JPN", "392", "Japan"),
)

CURRENCIES: Final = (
    # code, numeric, name, symbol, rate against the reference (USD = 1)
    ("USD", "840", "US Dollar", "$", Decimal("1")),
    ("EUR", "978", "Euro", "€", Decimal("0.92")),
)


@dataclass(frozen=True)
class ItemSpec:
    """One item of the sandbox item master; prices are per company currency."""

    code: str
    name: str
    price_usd: Decimal
    price_eur: Decimal


ITEM_MASTER: Final = (
    ItemSpec("PLAT-SEAT", "Platform seat (monthly)", Decimal("50.00"), Decimal("46.00")),
    ItemSpec("SUPPORT-PREM", "Premium support (monthly)", Decimal("500.00"), Decimal("460.00")),
    ItemSpec("API-CALLS", "API calls (per 1,000)", Decimal("0.25"), Decimal("0.23")),
    ItemSpec("ONBOARD", "Onboarding (one-time)", Decimal("2500.00"), Decimal("2300.00")),
)


@dataclass(frozen=True)
class TaxSpec:
    """A further tax of a legal entity, named by the group's tax code (``config/tax.yaml``)."""

    code: str
    name: str
    rate: Decimal
    legal_notice: str | None = None


@dataclass(frozen=True)
class EntitySpec:
    """A legal entity the sandbox creates."""

    key: str
    name: str
    country: str
    currency: str
    street: str
    city: str
    postal_code: str
    tax_name: str
    tax_rate: Decimal
    vat_code: str | None = None
    tax_code: str | None = None
    other_taxes: tuple[TaxSpec, ...] = ()


LEGAL_ENTITIES: Final = (
    EntitySpec(
        "inc",
        "Q2C Inc.",
        "US",
        "USD",
        "1 Market Street",
        "San Francisco",
        "94105",
        "US Sales Tax 0%",
        Decimal("0"),
    ),
    EntitySpec(
        "gmbh",
        "Q2C GmbH",
        "DE",
        "EUR",
        "Friedrichstrasse 1",
        "Berlin",
        "10117",
        "DE VAT 19%",
        Decimal("0.19"),
        vat_code="DE136695976",
        tax_code="DE-VAT-19",
        other_taxes=(
            TaxSpec(
                "EU-VAT-RC",
                "EU VAT reverse charge",
                Decimal("0"),
                "Reverse charge: VAT to be accounted for by the recipient "
                "(Art. 196 Directive 2006/112/EC)",
            ),
        ),
    ),
)

ACCOUNT_CODES: Final = {
    # codes of Tryton's universal chart (account_template_root_en)
    "receivable": "1.2.1",
    "payable": "2.1.1",
    "revenue": "4.2.2",
    "expense": "5.1.3",
    "cash": "1.1.1",
    "tax": "6.3.4",
    "deferred_revenue": "2.2.2",
}

API_USER_LOGIN: Final = "q2c_hub"

API_USER_GROUPS: Final = (
    # every group of the business modules, none of ir/res (system administration)
    ("account", "group_account"),
    ("account", "group_account_admin"),
    ("account_product", "group_account_product_admin"),
    ("company", "group_company_admin"),
    ("company", "group_employee_admin"),
    ("currency", "group_currency_admin"),
    ("party", "group_party_admin"),
    ("product", "group_product_admin"),
    ("sale", "group_sale"),
    ("sale", "group_sale_admin"),
)


@dataclass
class CompanySetup:
    """Ids of what one legal entity got, for tests and the connector's mapping."""

    company: int
    party: int
    currency: str
    country: str
    receivable_account: int
    payable_account: int
    revenue_account: int
    expense_account: int
    cash_account: int
    tax_account: int
    deferred_revenue_account: int
    sales_tax: int
    revenue_journal: int
    cash_journal: int
    payment_method: int
    fiscal_years: list[int] = field(default_factory=list)
    taxes: dict[str, int] = field(default_factory=dict)
    """Tax code -> ``account.tax`` id (the sales tax under its code too)."""


@dataclass
class SandboxSetup:
    """Everything the template holds that callers look up by business key."""

    companies: dict[str, CompanySetup]
    currencies: dict[str, int]
    countries: dict[str, int]
    products: dict[str, int]
    product_category: int
    unit_uom: int
    api_user: int | None
    years: list[int]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SandboxSetup:
        companies = {k: CompanySetup(**v) for k, v in data["companies"].items()}
        return cls(**{**data, "companies": companies})


async def _data_id(erp: TrytonClient, module: str, fs_id: str) -> int:
    return int(await erp.call("model.ir.model.data.get_id", module, fs_id))


async def build_sandbox_setup(
    erp: TrytonClient, *, api_password: str, today: dt.date | None = None
) -> SandboxSetup:
    """Write the sandbox's business setup into a freshly initialised database (as admin)."""
    today = today or dt.datetime.now(dt.UTC).date()
    years = [today.year, today.year + 1]

    countries: dict[str, int] = {}
    for code, code3, numeric, name in COUNTRIES:
        countries[code] = await erp.model("country.country").create_one(
            {"name": name, "code": code, "code3": code3, "code_numeric": numeric}
        )

    currencies: dict[str, int] = {}
    for code, numeric, name, symbol, rate in CURRENCIES:
        currencies[code] = await erp.model("currency.currency").create_one(
            {
                "name": name,
                "code": code,
                "numeric_code": numeric,
                "symbol": symbol,
                "rounding": Decimal("0.01"),
                "digits": 2,
                "rates": [("create", [{"date": dt.date(today.year - 1, 1, 1), "rate": rate}])],
            }
        )

    company_ids: dict[str, int] = {}
    party_ids: dict[str, int] = {}
    for entity in LEGAL_ENTITIES:
        party: dict[str, Any] = {
            "name": entity.name,
            "addresses": [
                (
                    "create",
                    [
                        {
                            "street_unstructured": entity.street,
                            "city": entity.city,
                            "postal_code": entity.postal_code,
                            "country": countries[entity.country],
                        }
                    ],
                )
            ],
        }
        if entity.vat_code:
            party["identifiers"] = [("create", [{"type": "eu_vat", "code": entity.vat_code}])]
        party_ids[entity.key] = await erp.model("party.party").create_one(party)
        company_ids[entity.key] = await erp.model("company.company").create_one(
            {"party": party_ids[entity.key], "currency": currencies[entity.currency]}
        )

    first = company_ids[LEGAL_ENTITIES[0].key]
    await erp.model("res.user").write(
        [erp.user_id or 1],
        {
            "companies": [("add", list(company_ids.values()))],
            "company": first,
            "company_filter": "all",
        },
    )
    await erp.login()

    unit = await _data_id(erp, "product", "uom_unit")
    category = await erp.model("product.category").create_one(
        {"name": "SaaS services", "accounting": True}
    )

    companies: dict[str, CompanySetup] = {}
    for entity in LEGAL_ENTITIES:
        companies[entity.key] = await _set_up_company(
            erp,
            entity,
            company=company_ids[entity.key],
            party=party_ids[entity.key],
            category=category,
            years=years,
        )

    await erp.model("product.category").write(
        [category],
        {"customer_taxes": [("add", [c.sales_tax for c in companies.values()])]},
    )

    products: dict[str, int] = {}
    for item in ITEM_MASTER:
        template = await erp.model("product.template").create_one(
            {
                "name": item.name,
                "code": item.code,
                "type": "service",
                "default_uom": unit,
                "sale_uom": unit,
                "list_price": item.price_usd,
                "salable": True,
                "account_category": category,
                "products": [("create", [{}])],
            },
            context=erp.context_for(company=companies["inc"].company),
        )
        await erp.model("product.template").write(
            [template],
            {"list_price": item.price_eur},
            context=erp.context_for(company=companies["gmbh"].company),
        )
        [variant] = await erp.model("product.product").search([("template", "=", template)])
        products[item.code] = variant

    api_user = await _create_api_user(erp, list(company_ids.values()), first, api_password)

    return SandboxSetup(
        companies=companies,
        currencies=currencies,
        countries=countries,
        products=products,
        product_category=category,
        unit_uom=unit,
        api_user=api_user,
        years=years,
    )


async def _account(erp: TrytonClient, company: int, code: str) -> int:
    ids = await erp.model("account.account").search(
        [("company", "=", company), ("code", "=", code)], limit=1
    )
    if not ids:
        raise LookupError(f"the chart of company {company} has no account {code}")
    return ids[0]


async def _set_up_company(
    erp: TrytonClient,
    entity: EntitySpec,
    *,
    company: int,
    party: int,
    category: int,
    years: list[int],
) -> CompanySetup:
    ctx = erp.context_for(company=company, companies=[company])
    template = await _data_id(erp, "account", "account_template_root_en")
    async with erp.wizard("account.create_chart", context=ctx) as chart:
        await chart.start()
        await chart.press("account", {})
        await chart.press("create_account", {"company": company, "account_template": template})
        receivable = await _account(erp, company, ACCOUNT_CODES["receivable"])
        payable = await _account(erp, company, ACCOUNT_CODES["payable"])
        revenue = await _account(erp, company, ACCOUNT_CODES["revenue"])
        expense = await _account(erp, company, ACCOUNT_CODES["expense"])
        await chart.press(
            "create_properties",
            {
                "company": company,
                "account_receivable": receivable,
                "account_payable": payable,
                "category_account_revenue": revenue,
                "category_account_expense": expense,
            },
        )

    cash = await _account(erp, company, ACCOUNT_CODES["cash"])
    tax_account = await _account(erp, company, ACCOUNT_CODES["tax"])
    deferred = await _account(erp, company, ACCOUNT_CODES["deferred_revenue"])
    await erp.model("account.configuration").write(
        [1], {"deferred_account_revenue": deferred, "tax_rounding": "line"}, context=ctx
    )

    move_type = await _data_id(erp, "account", "sequence_type_account_move")
    invoice_type = await _data_id(erp, "account_invoice", "sequence_type_account_invoice")
    prefix = entity.key.upper()
    fiscal_years: list[int] = []
    for year in years:
        move_seq, out_seq, out_cn_seq, in_seq, in_cn_seq = await erp.model(
            "ir.sequence.strict"
        ).create(
            [
                {"name": f"{entity.name} moves {year}", "sequence_type": move_type},
                {"name": f"{entity.name} invoices {year}", "sequence_type": invoice_type},
                {"name": f"{entity.name} credit notes {year}", "sequence_type": invoice_type},
                {"name": f"{entity.name} supplier inv. {year}", "sequence_type": invoice_type},
                {"name": f"{entity.name} supplier CN {year}", "sequence_type": invoice_type},
            ],
            context=ctx,
        )
        await erp.model("ir.sequence.strict").write(
            [out_seq], {"prefix": f"{prefix}-INV-{year}-", "padding": 5}, context=ctx
        )
        await erp.model("ir.sequence.strict").write(
            [out_cn_seq], {"prefix": f"{prefix}-CN-{year}-", "padding": 5}, context=ctx
        )
        fiscal_year = await erp.model("account.fiscalyear").create_one(
            {
                "name": f"{entity.name} {year}",
                "company": company,
                "start_date": dt.date(year, 1, 1),
                "end_date": dt.date(year, 12, 31),
                "move_sequence": move_seq,
                "invoice_sequences": [
                    (
                        "create",
                        [
                            {
                                "company": company,
                                "out_invoice_sequence": out_seq,
                                "out_credit_note_sequence": out_cn_seq,
                                "in_invoice_sequence": in_seq,
                                "in_credit_note_sequence": in_cn_seq,
                            }
                        ],
                    )
                ],
            },
            context=ctx,
        )
        await erp.call("model.account.fiscalyear.create_period", [fiscal_year], context=ctx)
        fiscal_years.append(fiscal_year)

    sales_tax = await erp.model("account.tax").create_one(
        {
            "name": entity.tax_name,
            "description": entity.tax_name,
            "type": "percentage",
            "rate": entity.tax_rate,
            "company": company,
            "invoice_account": tax_account,
            "credit_note_account": tax_account,
        },
        context=ctx,
    )
    taxes = {entity.tax_code: sales_tax} if entity.tax_code else {}
    for spec in entity.other_taxes:
        taxes[spec.code] = await erp.model("account.tax").create_one(
            {
                "name": spec.name,
                "description": spec.name,
                "type": "percentage",
                "rate": spec.rate,
                "company": company,
                "invoice_account": tax_account,
                "credit_note_account": tax_account,
                "legal_notice": spec.legal_notice,
            },
            context=ctx,
        )
    await erp.model("product.category").write(
        [category], {"account_revenue": revenue, "account_expense": expense}, context=ctx
    )

    [revenue_journal] = await erp.model("account.journal").search(
        [("type", "=", "revenue")], limit=1
    )
    [cash_journal] = await erp.model("account.journal").search([("type", "=", "cash")], limit=1)
    payment_method = await erp.model("account.invoice.payment.method").create_one(
        {
            "name": f"{entity.name} bank",
            "company": company,
            "journal": cash_journal,
            "credit_account": cash,
            "debit_account": cash,
        },
        context=ctx,
    )
    return CompanySetup(
        company=company,
        party=party,
        currency=entity.currency,
        country=entity.country,
        receivable_account=receivable,
        payable_account=payable,
        revenue_account=revenue,
        expense_account=expense,
        cash_account=cash,
        tax_account=tax_account,
        deferred_revenue_account=deferred,
        sales_tax=sales_tax,
        revenue_journal=revenue_journal,
        cash_journal=cash_journal,
        payment_method=payment_method,
        fiscal_years=fiscal_years,
        taxes=taxes,
    )


async def _create_api_user(
    erp: TrytonClient, companies: list[int], company: int, password: str
) -> int:
    groups = [await _data_id(erp, module, fs_id) for module, fs_id in API_USER_GROUPS]
    return await erp.model("res.user").create_one(
        {
            "name": "Quote2Cash hub",
            "login": API_USER_LOGIN,
            "password": password,
            "companies": [("add", companies)],
            "company": company,
            "company_filter": "all",
            "groups": [("add", groups)],
        }
    )
