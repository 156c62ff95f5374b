"""A failing ``q2c`` command prints one line saying what to do, never a traceback; ``--debug``
(or ``Q2C_DEBUG=1``) shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import quote2cash
from quote2cash.cli import main
from quote2cash.defaults import packaged_config_dir
from quote2cash.masterdata import ConfigError
from quote2cash.settings import get_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("Q2C_CONFIG_DIR", "Q2C_DEBUG", "Q2C_DATABASE_URL", "Q2C_SYSTEMS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def config_dir(tmp_path: Path, catalog: str | None) -> Path:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "entities.yaml").write_text((packaged_config_dir() / "entities.yaml").read_text())
    if catalog is not None:
        (folder / "catalog.yaml").write_text(catalog)
    return folder


def test_the_issue_case_a_missing_catalog_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("Q2C_CONFIG_DIR", str(config_dir(tmp_path, None)))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["demo", "--quick", "--workdir", str(tmp_path / "demo")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "catalog.yaml: required file is missing" in line
    assert "q2c config check" in line
    assert not (tmp_path / "demo").exists(), "no system was started for a bad configuration"


def test_bad_yaml_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = config_dir(tmp_path, "catalog:\n  - code: [unclosed\n")
    monkeypatch.setenv("Q2C_CONFIG_DIR", str(folder))
    code, _, err = run(["demo", "--quick", "--workdir", str(tmp_path / "demo")], capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"{folder / 'catalog.yaml'}: line " in line and "not valid YAML" in line


def test_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("Q2C_CONFIG_DIR", str(config_dir(tmp_path, None)))
    with pytest.raises(ConfigError):
        main(["--debug", "demo", "--quick", "--workdir", str(tmp_path / "demo")])
    monkeypatch.setenv("Q2C_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["demo", "--quick", "--workdir", str(tmp_path / "demo")])


@pytest.mark.parametrize(
    ("variables", "named", "expected"),
    [
        ({"Q2C_RETRY_MAX_ATTEMPTS": "ten-Sekr1t"}, "Q2C_RETRY_MAX_ATTEMPTS", "valid integer"),
        ({"Q2C_RETRY_MAX_ATTEMPTS": "0"}, "Q2C_RETRY_MAX_ATTEMPTS", "greater than or equal to 1"),
        (
            {"Q2C_RETRY_BASE_SECONDS": "30", "Q2C_RETRY_CAP_SECONDS": "5"},
            "Q2C_RETRY_CAP_SECONDS",
            "expected cap >= base",
        ),
        ({"Q2C_SQLITE_SYNCHRONOUS": "OFF"}, "Q2C_SQLITE_SYNCHRONOUS", "FULL|NORMAL|EXTRA"),
        ({"Q2C_METRICS_CACHE_SECONDS": "-1"}, "Q2C_METRICS_CACHE_SECONDS", "greater than"),
        ({"Q2C_METRICS_ENABLED": "maybe"}, "Q2C_METRICS_ENABLED", "valid boolean"),
    ],
)
def test_a_bad_setting_names_the_variable_and_what_was_expected(
    variables: dict[str, str],
    named: str,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(["kpis", "--db", f"sqlite:///{tmp_path}/none.sqlite"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("error: invalid setting: "), line
    assert named in line and expected in line, line
    assert "Sekr1t" not in err, "a setting's value is not repeated: it may be a secret"


def test_a_store_never_initialised_says_to_run_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["events", "list", "--db", f"sqlite:///{tmp_path}/none.sqlite"], capsys)
    assert code == 2
    assert "run `q2c init` first" in one_error_line(err)


def test_an_unreachable_store_is_one_line_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "postgresql://hub:Sup3rSecretPw@127.0.0.1:1/q2c"
    code, _, err = run(["dlq", "list", "--db", url], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "Connection refused" in line or "connection" in line.lower()
    assert "Q2C_DATABASE_URL" in line
    assert "Sup3rSecretPw" not in err


def test_an_unreachable_system_says_to_start_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "billing:\n  kind: stripe\n"
        "  settings: {api_key: sk_test_unreachable123, base_url: 'http://127.0.0.1:1'}\n"
    )
    code, _, err = run(
        ["catalog", "check", str(packaged_config_dir() / "catalog.yaml"), "--config", str(systems)],
        capsys,
    )
    assert code == 2
    line = one_error_line(err)
    assert "cannot connect" in line and "q2c sandbox" in line
    assert "sk_test_unreachable123" not in err


def test_the_installed_command_prints_one_line_too(tmp_path: Path) -> None:
    """Through the console script's entry point in a fresh process, with a hostile message."""
    env = {
        **os.environ,
        "Q2C_CONFIG_DIR": str(tmp_path / "[/bold]missing"),
        "PYTHONPATH": str(Path(quote2cash.__file__).parents[1]),
    }
    env.pop("Q2C_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-c", "from quote2cash.cli import main; main()", "config", "show"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert "[/bold]missing: no such folder" in line
