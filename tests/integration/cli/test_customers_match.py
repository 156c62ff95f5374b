"""``q2c customers match``: clusters and review pairs written 0600, bad rows reported by record,
field and expectation and kept in rejected.csv, never a crash; a JSON summary for machines."""

from __future__ import annotations

import csv
import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from quote2cash.cli import app

runner = CliRunner()
HEADER = "record_id,source,name,website,tax_id,country,postal_code,city,street\n"


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_match_writes_clusters_and_reviews_and_reports_bad_rows(tmp_path: Path) -> None:
    accounts = _write(
        tmp_path / "accounts.csv",
        [
            "a1,crm,Nordwind Handel GmbH,nordwind.de,DE123456789,DE,20095,Hamburg,Hafenweg 4",
            "a2,erp,NORDWIND HANDEL G.m.b.H.,,DE 123 456 789,,,Hamburg,",
            "a3,crm,Nordwind Handel LLC,,,,,,",
            "b1,crm,Siebert Holding AG,siebert.de,,DE,10115,Berlin,Hauptstrasse 1",
            "b2,crm,Siebert AG,www.siebert.de,,DE,10115,Berlin,Hauptstrasse 1",
            "c1,crm,Atlas Logistics GmbH,,,DE,80331,München,",
            "x1,crm,Bad Country GmbH,,,Germany,,,",
            "x2,crm,,,,DE,,,",
            "a1,crm,Duplicate Id GmbH,,,DE,,,",
            "x3,crm,Bad Site GmbH,not a site,,DE,,,",
        ],
    )
    out = tmp_path / "out"
    result = runner.invoke(app, ["customers", "match", str(accounts), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "record 'x1': country: expected an ISO 3166 two-letter code" in result.output
    assert "record 'x2': name: expected the account's legal name" in result.output
    assert "record 'a1': record_id: expected an id not used by an earlier row" in result.output
    assert "record 'x3': website: expected a web address" in result.output
    for name in ("clusters.csv", "review.csv", "rejected.csv"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600, name
    clusters = {r["record_id"]: r for r in _read(out / "clusters.csv")}
    assert set(clusters) == {"a1", "a2", "a3", "b1", "b2", "c1"}
    assert clusters["a1"]["cluster_id"] == clusters["a2"]["cluster_id"]
    assert clusters["a1"]["outcome"] == clusters["a2"]["outcome"] == "auto"
    assert clusters["a3"]["cluster_id"] != clusters["a1"]["cluster_id"]
    assert clusters["b1"]["cluster_id"] != clusters["b2"]["cluster_id"]
    assert clusters["b1"]["outcome"] == clusters["b2"]["outcome"] == "review"
    assert clusters["c1"]["outcome"] == "new"
    reviews = _read(out / "review.csv")
    siebert = next(
        r for r in reviews if {r["left_record_id"], r["right_record_id"]} == {"b1", "b2"}
    )
    assert siebert["domain"] == "same" and "score" in siebert["reason"]
    rejected = {r["record_id"]: r["problem"] for r in _read(out / "rejected.csv")}
    assert set(rejected) == {"x1", "x2", "a1", "x3"}
    assert rejected["x1"].endswith(
        "country: expected an ISO 3166 two-letter code such as DE, or empty"
    )


def test_json_summary_counts_every_outcome(tmp_path: Path) -> None:
    accounts = _write(
        tmp_path / "a.csv",
        ["1,crm,Acme GmbH,acme.de,,DE,10115,Berlin,", "2,erp,ACME GmbH,acme.de,,DE,10115,Berlin,"],
    )
    result = runner.invoke(
        app, ["customers", "match", str(accounts), "--out", str(tmp_path / "o"), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["records"] == 2 and summary["clusters"] == 1
    assert summary["outcomes"] == {"auto": 2, "review": 0, "new": 0}


def test_an_unreadable_file_is_an_error_naming_it_not_a_crash(tmp_path: Path) -> None:
    no_name = tmp_path / "no_name.csv"
    no_name.write_text("record_id,source\n1,crm\n", encoding="utf-8")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "1,crm,M\xfcller GmbH,,,DE,,,\n".encode("latin-1"))
    for path, problem in ((no_name, "missing column(s) name"), (latin, "not UTF-8")):
        result = runner.invoke(app, ["customers", "match", str(path), "--out", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert problem in result.output and str(path) in result.output
        assert "Traceback" not in result.output
