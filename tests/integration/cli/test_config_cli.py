"""``q2c config``: the packaged defaults are used when Q2C_CONFIG_DIR is unset, ``init`` writes
an editable copy (never over one without --force), ``check`` names the first problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quote2cash.cli import app
from quote2cash.configuration import active_config_dir
from quote2cash.defaults import CONFIG_FILES, packaged_config_dir
from quote2cash.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("Q2C_CONFIG_DIR", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_without_q2c_config_dir_the_packaged_defaults_are_read(tmp_path: Path) -> None:
    assert active_config_dir() == packaged_config_dir()
    assert "site-packages" in str(packaged_config_dir()) or "src/quote2cash" in str(
        packaged_config_dir()
    )
    shown = runner.invoke(app, ["config", "show", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [r["file"] for r in rows] == [
        "catalog.yaml",
        "entities.yaml",
        "tax.yaml",
        "onboarding.yaml",
        "ownership.yaml",
        "survivorship.yaml",
        "matching.yaml",
    ]
    assert {tuple(sorted(r)) for r in rows} == {("detail", "file", "status")}
    assert all(r["status"] == "valid" for r in rows)
    table = runner.invoke(app, ["config", "show"])
    assert "the packaged defaults" in table.output


def test_init_writes_an_editable_copy_and_refuses_to_overwrite_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "my-config"
    first = runner.invoke(app, ["config", "init", str(target)])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in target.iterdir()) == sorted(CONFIG_FILES)
    for name in CONFIG_FILES:
        assert (target / name).read_text() == (packaged_config_dir() / name).read_text()
    (target / "onboarding.yaml").write_text("onboarding:\n  erp_first: true\n")
    again = runner.invoke(app, ["config", "init", str(target)])
    assert again.exit_code == 2
    assert "--force" in again.output
    assert "erp_first: true" in (target / "onboarding.yaml").read_text()
    monkeypatch.setenv("Q2C_CONFIG_DIR", str(target))
    get_settings.cache_clear()
    assert active_config_dir() == target
    shown = runner.invoke(app, ["config", "show", "--format", "json"])
    onboarding = next(r for r in json.loads(shown.output) if r["file"] == "onboarding.yaml")
    assert onboarding["detail"] == "ERP first"
    forced = runner.invoke(app, ["config", "init", str(target), "--force"])
    assert forced.exit_code == 0, forced.output
    assert "erp_first: false" in (target / "onboarding.yaml").read_text()


@pytest.mark.parametrize(
    ("file", "text", "expected"),
    [
        ("catalog.yaml", "catalog: [\n", "catalog.yaml: line 2: not valid YAML"),
        ("tax.yaml", "version: 1\nrates: 7\n", "tax.yaml: line 2: rates"),
        ("onboarding.yaml", "onboarding:\n  erp_frist: true\n", "erp_frist: unknown key"),
    ],
)
def test_check_names_file_line_and_problem(
    tmp_path: Path, file: str, text: str, expected: str
) -> None:
    target = tmp_path / "c"
    runner.invoke(app, ["config", "init", str(target)])
    (target / file).write_text(text)
    checked = runner.invoke(app, ["config", "check", str(target)])
    assert checked.exit_code == 1
    assert expected in checked.output.replace("\n", ""), checked.output


def test_check_of_a_folder_without_the_catalog(tmp_path: Path) -> None:
    checked = runner.invoke(app, ["config", "check", str(tmp_path)])
    assert checked.exit_code == 1
    assert "catalog.yaml: required file is missing" in checked.output.replace("\n", "")


def test_catalog_check_defaults_to_the_catalog_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = runner.invoke(app, ["catalog", "check", "--offline"])
    assert packaged.exit_code == 0, packaged.output
    assert str(packaged_config_dir() / "catalog.yaml") in packaged.output
    target = tmp_path / "mine"
    runner.invoke(app, ["config", "init", str(target)])
    monkeypatch.setenv("Q2C_CONFIG_DIR", str(target))
    get_settings.cache_clear()
    mine = runner.invoke(app, ["catalog", "check", "--offline"])
    assert mine.exit_code == 0, mine.output
    assert str(target / "catalog.yaml") in mine.output.replace("\n", "")
