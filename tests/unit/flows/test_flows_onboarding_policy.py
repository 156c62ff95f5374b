"""The onboarding policy file (config/onboarding.yaml): validated at load, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from quote2cash.defaults import packaged_config_dir
from quote2cash.flows.policy import OnboardingPolicy, load_onboarding, parse_onboarding
from quote2cash.masterdata.config import ConfigError

CONFIG = packaged_config_dir()


def test_the_shipped_policy_lets_deals_flow_while_the_erp_is_away() -> None:
    assert load_onboarding(CONFIG / "onboarding.yaml") == OnboardingPolicy(erp_first=False)


def test_a_missing_file_is_the_default_and_erp_first_can_be_required(tmp_path: Path) -> None:
    assert load_onboarding(tmp_path / "onboarding.yaml").erp_first is False
    assert parse_onboarding("version: 1\nonboarding: {erp_first: true}\n").erp_first is True


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("onboarding: {erp_frist: true}\n", "line 1: onboarding.erp_frist", "unknown key"),
        ("onboarding:\n  erp_first: maybe\n", "line 2: onboarding.erp_first", "valid boolean"),
        ("version: 0\n", "line 1: version", "greater than or equal to 1"),
        ("- erp_first\n", "onboarding.yaml", "expected a mapping"),
    ],
)
def test_a_bad_policy_names_file_line_key_and_problem(text: str, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_onboarding(text, "config/onboarding.yaml")
    message = str(raised.value)
    assert message.startswith("config/onboarding.yaml: ")
    assert where in message and problem in message, message
