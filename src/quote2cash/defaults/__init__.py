"""The default configuration shipped inside the package, so an installed hub runs from any folder.

``Q2C_CONFIG_DIR`` names an editable copy (``q2c config init DIR`` writes one); unset, the hub
reads these packaged files.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

CONFIG_FILES = (
    "catalog.yaml",
    "entities.yaml",
    "matching.yaml",
    "onboarding.yaml",
    "ownership.yaml",
    "survivorship.yaml",
    "tax.yaml",
)
"""Every file of a configuration folder, as ``q2c config init`` writes them."""

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def packaged_config_dir() -> Path:
    """The folder of the packaged defaults (extracted once per process if the package is zipped)."""
    folder = resources.files(__name__) / "config"
    if isinstance(folder, Path):
        return folder
    return _extracted.enter_context(resources.as_file(folder))


def packaged_alert_rules() -> Path:
    """The shipped Prometheus alert rules (``promtool``-tested), for Prometheus's rule_files."""
    rules = resources.files(__name__) / "observability" / "alerts.yml"
    if isinstance(rules, Path):
        return rules
    return _extracted.enter_context(resources.as_file(rules))
