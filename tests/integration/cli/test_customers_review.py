"""``q2c customers review``: the data steward's open tasks with their evidence (table and JSON),
and the decision, taken only as the owner of an operator's ``--token``; it is audited and logs
the event that resumes the account's waiting deals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from quote2cash.canonical import Address, Customer
from quote2cash.cli import app
from quote2cash.defaults import packaged_config_dir
from quote2cash.engine.runtime import Runtime
from quote2cash.flows.customers import TASK_DECIDED, task_key
from quote2cash.flows.deps import golden_customers
from quote2cash.masterdata import CustomerCandidate, IngestOutcome
from quote2cash.masterdata.xref import Kind, XrefStore
from quote2cash.store.schema import audit_log, events
from support.identity import first_admin, new_operator, token_of

runner = CliRunner()
WIDE = {"COLUMNS": "300"}
CONFIG = str(packaged_config_dir())
AT = datetime(2026, 11, 2, tzinfo=UTC)


def _account(local_id: str, name: str, city: str, postal: str) -> CustomerCandidate:
    address = Address(line1="1 Main St", city=city, postal_code=postal, country="US")
    return CustomerCandidate("crm", local_id, Customer(name=name, address=address), AT)


def q2c(*args: str, token: str | None = None) -> tuple[int, str]:
    env = dict(WIDE, Q2C_TOKEN=token) if token else WIDE
    result = runner.invoke(app, ["customers", "review", *args, "--config", CONFIG], env=env)
    return result.exit_code, result.output


def test_review_lists_shows_and_decides_with_an_operators_token(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'q2c.sqlite'}"
    runtime = Runtime.open(db, sqlite_synchronous="NORMAL")
    admin = first_admin(runtime)
    token = token_of(runtime, new_operator(runtime, admin, "maria", "operator"))
    viewer = token_of(runtime, new_operator(runtime, admin, "vic", "viewer"))
    golden = golden_customers(runtime, packaged_config_dir())
    assert golden is not None
    known = golden.ingest(_account("001K", "Marrowgate Logistics Inc", "Austin", "73301"))
    doubtful = golden.ingest(_account("001D", "Marrowgate Logistics", "Dallas", "75201"))
    assert doubtful.outcome is IngestOutcome.REVIEW
    runtime.close()

    code, out = q2c("--db", db, "--format", "json")
    assert code == 0, out
    [task] = json.loads(out)
    assert (task["local_id"], task["options"]) == ("001D", [known.global_id])
    assert task["reviews"][0]["evidence"]["outcome"] == "review"
    code, out = q2c("--db", db)
    assert code == 0 and "crm:001D" in out and "1 open task" in out
    code, out = q2c("crm:001D", "--db", db)
    assert code == 0 and known.global_id in out and "postal code different" in out

    code, out = q2c("001D", "--same-as", known.global_id, "--db", db)
    assert code == 2 and "needs your API token" in out
    code, out = q2c("001D", "--same-as", known.global_id, "--db", db, token=viewer)
    assert code == 2 and "needs the role 'operator'" in out and "Traceback" not in out
    code, out = q2c("001D", "--same-as", "CUS-nobody", "--db", db, token=token)
    assert code == 2 and f"expected one of {known.global_id}" in out
    code, out = q2c("001D", "--new", "--same-as", known.global_id, "--db", db, token=token)
    assert code == 2 and "not both" in out

    code, out = q2c("001D", "--same-as", known.global_id, "--db", db, "--format", "json",
                    token=token)  # fmt: skip
    assert code == 0, out
    decided = json.loads(out)
    assert decided["global_id"] == known.global_id and decided["by"] == "maria"
    code, out = q2c("001D", "--new", "--db", db, token=token)
    assert code == 2 and "no open steward task" in out
    code, out = q2c("--db", db, "--format", "json")
    assert json.loads(out) == []

    runtime = Runtime.open(db)
    try:
        xref = XrefStore(runtime.engine)
        assert xref.global_id_for(Kind.CUSTOMER, "crm", "001D") == known.global_id
        with runtime.engine.connect() as conn:
            logged = conn.execute(
                select(events.c.type, events.c.subject).where(events.c.type == TASK_DECIDED)
            ).all()
            actions = [
                (r.action, r.actor)
                for r in conn.execute(
                    select(audit_log.c.action, audit_log.c.actor).where(
                        audit_log.c.action.like("masterdata.%")
                    )
                )
            ]
    finally:
        runtime.close()
    assert logged == [(TASK_DECIDED, task_key("crm", "001D"))]
    assert ("masterdata.steward_task.opened", "hub") in actions
    assert ("masterdata.steward_task.decided", "maria") in actions
    assert ("masterdata.xref.merged", "maria") in actions
