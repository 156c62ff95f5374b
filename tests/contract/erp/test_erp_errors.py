"""ERP contract: credentials, an unreachable server and the health check."""

from __future__ import annotations

import pytest

from contract.erp import builders
from contract.erp.harness import ErpWorld
from quote2cash.connectors.roles import Erp
from quote2cash.engine.errors import AuthError, TransientError


async def test_the_role_is_the_erp_and_its_check_passes(erp: Erp) -> None:
    assert isinstance(erp, Erp)
    assert erp.system == "erp"
    check = await erp.check()
    assert (check.system, check.reachable, check.authenticated) == ("erp", True, True)
    assert check.latency_ms is not None and check.latency_ms >= 0


async def test_a_wrong_password_is_an_auth_error_that_never_shows_a_password(
    erp_world: ErpWorld, unique: str
) -> None:
    wrong = f"not-the-password-{unique}"
    async with erp_world.connect_with_password(wrong) as erp:
        with pytest.raises(AuthError) as refused:
            await erp.get_customer("1")
        check = await erp.check()
        shown = [str(refused.value), repr(refused.value), repr(erp), check.detail]
    assert refused.value.system == "erp"
    assert (check.reachable, check.authenticated) == (True, False)
    for secret in (wrong, *erp_world.secrets):
        assert all(secret not in text for text in shown)


async def test_a_server_that_is_down_is_a_transient_error(erp_world: ErpWorld, unique: str) -> None:
    async with erp_world.connect_unreachable() as erp:
        with pytest.raises(TransientError) as down:
            await erp.upsert_customer(
                builders.customer(unique), legal_entity="US", idempotency_key=unique
            )
        check = await erp.check()
    assert down.value.system == "erp"
    assert (check.reachable, check.authenticated) == (False, False)
    assert all(secret not in str(down.value) for secret in erp_world.secrets)
