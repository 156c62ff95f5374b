"""TrytonConfig: from the sandbox, YAML or env; validated with clear errors; password hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quote2cash.connectors.tryton import TrytonConfig, TrytonConfigError, TrytonErp
from quote2cash.sandbox.systems import tryton_config
from quote2cash.sandbox.tryton import CompanySetup, SandboxSetup, TrytonEndpoint

SECRET = "s3cret-never-shown-4711"


def _company(company: int, currency: str, country: str, offset: int) -> CompanySetup:
    return CompanySetup(
        company=company,
        party=company + 10,
        currency=currency,
        country=country,
        receivable_account=offset + 1,
        payable_account=offset + 2,
        revenue_account=offset + 3,
        expense_account=offset + 4,
        cash_account=offset + 5,
        tax_account=offset + 6,
        deferred_revenue_account=offset + 7,
        sales_tax=company,
        revenue_journal=1,
        cash_journal=2,
        payment_method=company,
    )


def _endpoint(backend: str = "sqlite") -> TrytonEndpoint:
    setup = SandboxSetup(
        companies={"inc": _company(1, "USD", "US", 100), "gmbh": _company(2, "EUR", "DE", 200)},
        currencies={"USD": 1, "EUR": 2},
        countries={"US": 1, "DE": 2},
        products={"PLAT-SEAT": 1},
        product_category=1,
        unit_uom=1,
        api_user=2,
        years=[2026, 2027],
    )
    return TrytonEndpoint(
        base_url="http://127.0.0.1:8000",
        database="q2c_test",
        username="q2c_hub",
        password=SECRET,
        admin_username="admin",
        admin_password="admin-" + SECRET,
        setup=setup,
        backend=backend,  # type: ignore[arg-type]
    )


def test_from_sandbox_maps_us_to_inc_and_de_to_gmbh() -> None:
    config = tryton_config(_endpoint())
    assert set(config.legal_entities) == {"US", "DE"}
    us, de = config.legal_entities["US"], config.legal_entities["DE"]
    assert (us.company, us.currency, us.receivable_account, us.revenue_account) == (
        1,
        "USD",
        101,
        103,
    )
    assert (de.company, de.currency, de.deferred_revenue_account, de.payment_method) == (
        2,
        "EUR",
        207,
        2,
    )
    assert config.max_concurrency == 1
    assert tryton_config(_endpoint("postgresql")).max_concurrency == 4


def test_the_password_never_shows() -> None:
    config = tryton_config(_endpoint())
    erp = TrytonErp(config)
    shown = [repr(config), str(config), config.model_dump_json(), repr(erp), str(erp)]
    assert all(SECRET not in text for text in shown)
    assert config.password.get_secret_value() == SECRET


def test_from_yaml_reads_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "erp.yaml"
    path.write_text(
        "base_url: https://erp.example.com\n"
        "database: prod\n"
        "username: q2c_hub\n"
        "password_env: Q2C_TEST_ERP_PASSWORD\n"
        "max_concurrency: 4\n"
        "legal_entities:\n"
        "  US: {company: 1, currency: USD, receivable_account: 3, revenue_account: 4,\n"
        "       revenue_journal: 1, payment_method: 1}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("Q2C_TEST_ERP_PASSWORD", SECRET)
    config = TrytonConfig.from_yaml(path)
    assert config.password.get_secret_value() == SECRET
    assert config.legal_entities["US"].sales_tax is None
    assert config.max_concurrency == 4
    monkeypatch.delenv("Q2C_TEST_ERP_PASSWORD")
    with pytest.raises(TrytonConfigError, match="Q2C_TEST_ERP_PASSWORD"):
        TrytonConfig.from_yaml(path)


def test_from_env_parses_the_entity_map_as_json() -> None:
    entities = {
        "DE": {
            "company": 2,
            "currency": "EUR",
            "receivable_account": 5,
            "revenue_account": 6,
            "sales_tax": 2,
            "revenue_journal": 1,
            "payment_method": 2,
        }
    }
    config = TrytonConfig.from_env(
        {
            "Q2C_ERP_BASE_URL": "http://127.0.0.1:8000",
            "Q2C_ERP_DATABASE": "q2c",
            "Q2C_ERP_USERNAME": "q2c_hub",
            "Q2C_ERP_PASSWORD": SECRET,
            "Q2C_ERP_LEGAL_ENTITIES": json.dumps(entities),
            "Q2C_ERP_PAGE_SIZE": "50",
        }
    )
    assert config.legal_entities["DE"].sales_tax == 2
    assert config.page_size == 50


def test_invalid_configuration_names_the_field_and_never_the_password() -> None:
    with pytest.raises(TrytonConfigError) as refused:
        TrytonConfig.from_mapping(
            {
                "base_url": "ftp://nope",
                "database": "q2c",
                "username": "q2c_hub",
                "password": SECRET,
                "legal_entities": {"US": {"company": 1, "currency": "usd"}},
            },
            source="erp.yaml",
        )
    message = str(refused.value)
    assert "erp.yaml" in message
    assert "base_url" in message
    assert "legal_entities.US.currency" in message
    assert "legal_entities.US.receivable_account" in message
    assert SECRET not in message


def test_an_empty_entity_map_is_refused() -> None:
    with pytest.raises(TrytonConfigError, match="at least one entity"):
        TrytonConfig.from_env(
            {
                "Q2C_ERP_BASE_URL": "http://127.0.0.1:8000",
                "Q2C_ERP_DATABASE": "q2c",
                "Q2C_ERP_USERNAME": "u",
                "Q2C_ERP_PASSWORD": SECRET,
                "Q2C_ERP_LEGAL_ENTITIES": "{}",
            }
        )
