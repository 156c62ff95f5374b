"""Choosing the legacy ERP is configuration only: ``kind: legacy_erp`` in systems.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from quote2cash.connectors.legacy_erp import LegacyErp
from quote2cash.connectors.registry import SystemsConfigError, from_file


def test_kind_legacy_erp_builds_the_connector_with_the_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGACY_PW", "s3cret-from-env")
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "erp:\n"
        "  kind: legacy_erp\n"
        "  settings:\n"
        "    base_url: http://erp.internal:8080\n"
        "    username: hub\n"
        '    password: "${LEGACY_PW}"\n'
        f"    drop_folder: {tmp_path / 'drop'}\n"
        "    legal_entities: {US: {code: US, currency: USD}}\n"
    )
    erp = from_file(systems).erp
    assert isinstance(erp, LegacyErp)
    assert erp.config.password.get_secret_value() == "s3cret-from-env"
    assert set(erp.config.legal_entities) == {"US"}
    assert "s3cret" not in repr(erp) and "s3cret" not in repr(erp.config)


def test_bad_legacy_erp_settings_name_the_field_never_the_password(tmp_path: Path) -> None:
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "erp:\n  kind: legacy_erp\n  settings:\n    base_url: ftp://nowhere\n"
        "    username: hub\n    password: hunter2-secret\n    drop_folder: /tmp/x\n"
    )
    with pytest.raises(SystemsConfigError) as refused:
        from_file(systems)
    assert "base_url" in str(refused.value) and "hunter2" not in str(refused.value)
