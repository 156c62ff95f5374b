"""The operator's path through the CLI, as the README documents it: `q2c init` prints the first
admin's one-time password once, the admin sets a password, gets a token, adds operators; every
decision authenticates the token given with --token or $Q2C_TOKEN, and no typed name decides."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from quote2cash.cli import app

runner = CliRunner()


def q2c(db_url: str, *args: str, input: str | None = None, token: str | None = None) -> object:
    env = {"Q2C_TOKEN": token} if token else {}
    result = runner.invoke(app, [*args, "--db", db_url], input=input, env=env)
    return result


def last_line(result: object) -> str:
    return str(getattr(result, "output", "")).strip().splitlines()[-1]


def ok(result: object) -> str:
    assert getattr(result, "exit_code", None) == 0, getattr(result, "output", "")
    return str(getattr(result, "output", ""))


def refused(result: object, *said: str) -> None:
    output = " ".join(str(getattr(result, "output", "")).split())
    assert getattr(result, "exit_code", None) == 2, output
    for words in said:
        assert words in output, (words, output)
    assert "Traceback" not in output


def test_from_init_to_a_decision_with_tokens_only(db_url: str) -> None:
    first = ok(q2c(db_url, "init"))
    assert "first admin 'admin' created" in first
    one_time = first.strip().splitlines()[-1]
    again = ok(q2c(db_url, "init"))
    assert "an admin exists already" in again and one_time not in again

    refused(
        q2c(
            db_url,
            "tokens",
            "create",
            "admin-cli",
            "--operator",
            "admin",
            "--password-stdin",
            input=f"{one_time}\n",
        ),
        "one-time password",
    )
    new = "the admin's own passphrase"
    ok(
        q2c(
            db_url,
            "operators",
            "password",
            "admin",
            "--password-stdin",
            input=f"{one_time}\n{new}\n",
        )
    )
    created = ok(
        q2c(
            db_url,
            "tokens",
            "create",
            "admin-cli",
            "--operator",
            "admin",
            "--password-stdin",
            input=f"{new}\n",
        )
    )
    admin_token = created.strip().splitlines()[-1]
    assert admin_token.startswith("q2c_") and new not in created

    added = ok(q2c(db_url, "operators", "add", "olga", "--role", "operator", token=admin_token))
    olga_once = added.strip().splitlines()[-1]
    ok(
        q2c(
            db_url,
            "operators",
            "add",
            "fiona",
            "--role",
            "finance_approver",
            "--email",
            "fiona@example.com",
            token=admin_token,
        )
    )
    listed = json.loads(ok(q2c(db_url, "operators", "list", "--format", "json")))
    assert [(o["name"], o["roles"], o["must_change_password"]) for o in listed] == [
        ("admin", ["admin"], False),
        ("fiona", ["finance_approver"], True),
        ("olga", ["operator"], True),
    ]
    assert olga_once not in json.dumps(listed)

    olga_new = "olga's long passphrase"
    ok(
        q2c(
            db_url,
            "operators",
            "password",
            "olga",
            "--password-stdin",
            input=f"{olga_once}\n{olga_new}\n",
        )
    )
    olga_token = last_line(
        q2c(
            db_url,
            "tokens",
            "create",
            "olga-cli",
            "--operator",
            "olga",
            "--password-stdin",
            input=f"{olga_new}\n",
        )
    )
    # olga, an operator, may not register a finance approver of her own (issue 11)
    refused(
        q2c(db_url, "operators", "add", "olga2", "--role", "finance_approver", token=olga_token),
        "needs the role 'admin'",
    )
    refused(
        q2c(db_url, "operators", "roles", "admin", "--role", "finance_approver", token=admin_token),
        "their own roles",
    )
    refused(q2c(db_url, "systems", "pause", "erp", "--reason", "close"), "needs your API token")
    refused(
        q2c(db_url, "systems", "pause", "erp", "--reason", "close", token=admin_token),
        "needs the role 'operator'",
    )
    ok(q2c(db_url, "systems", "pause", "erp", "--reason", "month-end", "--token", olga_token))
    ok(q2c(db_url, "systems", "resume", "erp", token=olga_token))
    old_flag = runner.invoke(app, ["systems", "pause", "erp", "--reason", "x", "--actor", "olga"])
    assert old_flag.exit_code == 2 and "No such option" in old_flag.output

    ok(q2c(db_url, "operators", "disable", "olga", token=admin_token))
    refused(
        q2c(db_url, "systems", "resume", "erp", token=olga_token), "unknown, revoked or expired"
    )
    tokens = json.loads(ok(q2c(db_url, "tokens", "list", "--format", "json")))
    assert {t["name"]: t["owner"] for t in tokens} == {"admin-cli": "admin", "olga-cli": "olga"}
    ok(q2c(db_url, "tokens", "revoke", "olga-cli", token=admin_token))
    audit = ok(q2c(db_url, "audit", "verify"))
    assert "intact" in audit
