"""ID tokens the hub must refuse, checked against the sandbox provider's real JWKS over HTTP.

Forged tokens are signed here: with the provider's own key (read from its 0600 file) to get
past the signature and test each claim check, or with another key to test the signature.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from quote2cash.identity.oidc_tokens import IdTokenRejected
from quote2cash.sandbox.oidc.keys import load_or_create_signing_key

from .conftest import Hub, begin, call_back, log_in

NONCE = "the-nonce-this-sign-in-sent"


def _claims(hub: Hub, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": hub.provider.issuer,
        "sub": "subject-1",
        "aud": hub.credentials["client_id"],
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "email": hub.email("alice"),
        "email_verified": True,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed_by_provider(hub: Hub, **changes: Any) -> str:
    key = load_or_create_signing_key(hub.folder)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, _claims(hub, **changes), key)


async def test_a_token_signed_with_the_provider_key_passes(hub: Hub) -> None:
    identity = await hub.client.verify_id_token(_signed_by_provider(hub), NONCE)
    assert (identity.subject, identity.email, identity.email_verified) == (
        "subject-1",
        hub.email("alice"),
        True,
    )


async def test_a_token_signed_by_another_key_under_the_same_kid_is_refused(hub: Hub) -> None:
    kid = load_or_create_signing_key(hub.folder).kid
    other = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": kid}, _claims(hub), other)
    with pytest.raises(IdTokenRejected, match="signature does not verify"):
        await hub.client.verify_id_token(forged, NONCE)


async def test_a_token_signed_by_an_unpublished_key_is_refused_after_a_refetch(hub: Hub) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "rogue"}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": "rogue"}, _claims(hub), other)
    await hub.client.verify_id_token(_signed_by_provider(hub), NONCE)
    hub.client.jwks_min_refresh_seconds = 0.0
    with pytest.raises(IdTokenRejected, match="key the provider does not publish"):
        await hub.client.verify_id_token(forged, NONCE)


async def test_a_rotated_provider_key_is_fetched_when_a_token_names_it(
    hub: Hub, browser: aiohttp.ClientSession
) -> None:
    hub.add_operator("alice", "operator")
    hub.client.jwks_min_refresh_seconds = 0.0
    await hub.client.verify_id_token(_signed_by_provider(hub), NONCE)
    hub.provider.provider.key = RSAKey.generate_key(
        2048, parameters={"kid": "rotated", "use": "sig", "alg": "RS256"}, private=True
    )
    callback_url = await log_in(browser, await begin(browser, hub), "alice", hub.password("alice"))
    status, body = await call_back(browser, callback_url)
    assert (status, body["operator"]) == (200, "alice")


async def test_a_symmetric_token_keyed_with_public_material_is_refused(hub: Hub) -> None:
    public = load_or_create_signing_key(hub.folder).as_dict(private=False)
    hmac_key = OctKey.import_key(str(public["n"]))
    forged = jwt.encode({"alg": "HS256"}, _claims(hub), hmac_key)
    with pytest.raises(IdTokenRejected, match="refused algorithm"):
        await hub.client.verify_id_token(forged, NONCE)


async def test_an_unsigned_token_is_refused(hub: Hub) -> None:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    forged = f"{part({'alg': 'none'})}.{part(_claims(hub))}."
    with pytest.raises(IdTokenRejected):
        await hub.client.verify_id_token(forged, NONCE)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "has expired"),
        ({"iat": int(time.time()) + 3600}, "issued in the future"),
        ({"aud": "another-client"}, "audience does not include this client"),
        ({"aud": ["another-client", "q2c-console"]}, "azp is not this client"),
        ({"iss": "http://127.0.0.1:1"}, "issuer is not"),
        ({"nonce": "another-nonce"}, "nonce does not match"),
        ({"nonce": None}, "nonce does not match"),
        ({"exp": None}, "lacks a numeric exp"),
        ({"exp": True}, "lacks a numeric exp"),
        ({"sub": ""}, "has no subject"),
    ],
)
async def test_a_token_failing_a_claim_check_is_refused(
    hub: Hub, changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(IdTokenRejected, match=reason):
        await hub.client.verify_id_token(_signed_by_provider(hub, **changes), NONCE)


async def test_a_token_expired_within_the_leeway_passes(hub: Hub) -> None:
    token = _signed_by_provider(hub, exp=int(time.time()) - 30)
    assert (await hub.client.verify_id_token(token, NONCE)).subject == "subject-1"


async def test_several_audiences_pass_when_azp_is_this_client(hub: Hub) -> None:
    client_id = hub.credentials["client_id"]
    token = _signed_by_provider(hub, aud=["another-client", client_id], azp=client_id)
    assert (await hub.client.verify_id_token(token, NONCE)).subject == "subject-1"
