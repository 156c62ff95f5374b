"""Finance's onboarding policy (``config/onboarding.yaml``), validated at load.

By default deals keep flowing while the ERP is unavailable: billing customer and subscription go
ahead and the ERP customer follows, in order, when the ERP is back. ``erp_first: true`` makes
the ERP customer the first write of every deal instead (e.g. for a credit check there), so
nothing reaches billing while the ERP is away.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from quote2cash.masterdata.config import StrictModel, parse_yaml, read_yaml, validate_model


class OnboardingPolicy(StrictModel):
    erp_first: bool = False


class OnboardingConfig(StrictModel):
    """``config/onboarding.yaml``."""

    version: int = Field(default=1, ge=1)
    onboarding: OnboardingPolicy = Field(default_factory=OnboardingPolicy)


def load_onboarding(path: str | Path) -> OnboardingPolicy:
    """The policy in ``path``; a missing file is the default (billing does not wait for the ERP)."""
    if not Path(path).exists():
        return OnboardingPolicy()
    return validate_model(OnboardingConfig, read_yaml(path)).onboarding


def parse_onboarding(text: str, source: str = "<onboarding.yaml>") -> OnboardingPolicy:
    return validate_model(OnboardingConfig, parse_yaml(text, source)).onboarding
