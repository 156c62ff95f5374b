"""``--ttl`` takes a number with a unit (d, h, m, s; days without one); anything else is a
clear error, never a traceback."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from quote2cash.cli_identity import parse_ttl


@pytest.mark.parametrize(
    ("given", "lifetime"),
    [
        ("30d", timedelta(days=30)),
        ("7", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("3600s", timedelta(seconds=3600)),
    ],
)
def test_lifetimes(given: str, lifetime: timedelta) -> None:
    assert parse_ttl(given) == lifetime


@pytest.mark.parametrize("given", ["", "forever", "-1d", "1w", "1.5d", "9999999d"])
def test_anything_else_is_refused(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        parse_ttl(given)
    assert "--ttl" in capsys.readouterr().err
