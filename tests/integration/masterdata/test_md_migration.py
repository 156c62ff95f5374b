"""The master-data migration goes down to 0001 and up again cleanly, on both backends."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from quote2cash.store.db import MIGRATIONS, current_revision, migrate, open_engine

MD_TABLES = {
    "md_global_ids",
    "md_xrefs",
    "md_customer_parents",
    "md_customer_sources",
    "md_golden_customers",
    "md_match_reviews",
}


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_masterdata_migration_downgrades_and_upgrades(db_url: str) -> None:
    engine = open_engine(db_url)
    migrate(engine)
    assert tables(engine) >= MD_TABLES
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.downgrade(config, "0001")
    assert current_revision(engine) == "0001"
    assert not tables(engine) & MD_TABLES
    assert "events" in tables(engine)
    migrate(engine)
    assert tables(engine) >= MD_TABLES
    engine.dispose()
