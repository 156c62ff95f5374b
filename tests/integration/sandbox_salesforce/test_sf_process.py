"""``python -m quote2cash.sandbox.salesforce`` as a separate process, and the YAML loader."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SchemaError,
)
from quote2cash.sandbox.salesforce.schema import build_schema


def test_module_runs_as_a_process(tmp_path: Path):
    ca = tmp_path / "ca.pem"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quote2cash.sandbox.salesforce",
            "--port",
            "0",
            "--ca-out",
            str(ca),
            "--batch-size",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in line, line + process.stderr.read()
        url = line.split("listening on ", 1)[1].split(" ", 1)[0]
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        session = requests.Session()
        session.trust_env = False
        session.verify = str(ca)
        token = session.post(
            f"{url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
            timeout=10,
        ).json()["access_token"]
        response = session.get(
            f"{url}/services/data/v59.0/query",
            params={"q": "SELECT COUNT() FROM Account"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.json() == {"totalSize": 0, "done": True, "records": []}
    finally:
        process.terminate()
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode == 0


def test_process_reports_a_bad_schema(tmp_path: Path):
    schema = tmp_path / "bad.yaml"
    schema.write_text("objects:\n  Thing:\n    label: no suffix\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "quote2cash.sandbox.salesforce",
            "--ca-out",
            str(tmp_path / "ca.pem"),
            "--schema",
            str(schema),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{schema}: objects.Thing" in result.stderr


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("objects: [1, 2]", "objects"),
        (
            "objects:\n  Thing__c:\n    fields:\n      Size: {type: int}\n",
            "objects.Thing__c.fields.Size",
        ),
        (
            "objects:\n  Thing__c:\n    fields:\n      Size__c: {type: integer}\n",
            "objects.Thing__c.fields.Size__c.type",
        ),
        ("fields:\n  Nope:\n    X__c: {type: string}\n", "fields.Nope"),
        (
            "fields:\n  Account:\n    X__c: {type: reference, reference_to: Ghost__c}\n",
            "Account.X__c.reference_to",
        ),
        (
            "fields:\n  Account:\n    X__c: {type: currency, external_id: true}\n",
            "fields.Account.X__c.external_id",
        ),
        ("fields:\n  Account:\n    X__c: {type: string, colour: red}\n", "fields.Account.X__c"),
        ("objects:\n  A__c: {key_prefix: '001'}\n", "objects.A__c.key_prefix"),
        ("surprise: 1", "<root>"),
        ("objects: {a: [}", "not valid YAML"),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path: Path, yaml_text: str, key: str):
    path = tmp_path / "custom.yaml"
    path.write_text(yaml_text)
    with pytest.raises(SchemaError) as excinfo:
        build_schema(path)
    assert str(excinfo.value).startswith(f"{path}: ")
    assert key in str(excinfo.value)


def test_custom_schema_file_adds_objects_and_fields(tmp_path: Path):
    path = tmp_path / "custom.yaml"
    path.write_text(
        "objects:\n"
        "  Usage_Record__c:\n"
        "    label: Usage Record\n"
        "    fields:\n"
        "      Account__c: {type: reference, reference_to: Account,"
        " child_relationship_name: Usage_Records__r}\n"
        "      Units__c: {type: double, precision: 16, scale: 4}\n"
        "fields:\n"
        "  Contact:\n"
        "    Portal_Id__c: {type: string, external_id: true}\n"
    )
    schema = build_schema(path)
    usage = schema.get("usage_record__c")
    assert usage is not None and usage.key_prefix.startswith("a")
    assert usage.field("Units__c").scale == 4  # type: ignore[union-attr]
    assert schema.objects["Account"].child("Usage_Records__r") is not None
    assert schema.objects["Contact"].field("Portal_Id__c").external_id  # type: ignore[union-attr]
    assert schema.get("Invoice__c") is None


def test_missing_schema_file(tmp_path: Path):
    with pytest.raises(SchemaError, match="cannot be read"):
        build_schema(tmp_path / "absent.yaml")
