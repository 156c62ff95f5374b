"""Login variants at the token endpoint, bad credentials, session expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession

from quote2cash.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_USERNAME,
    RunningEmulator,
)

from .conftest import admin, password_login


def token_url(emulator: RunningEmulator) -> str:
    return f"{emulator.instance_url}/services/oauth2/token"


def test_password_login_returns_salesforce_token_shape(http, emulator):
    body = password_login(http, emulator)
    assert set(body) >= {
        "access_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
        "signature",
    }
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == emulator.instance_url
    expected = base64.b64encode(
        hmac.new(
            DEFAULT_CLIENT_SECRET.encode(),
            (body["id"] + body["issued_at"]).encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert body["signature"] == expected
    assert abs(int(body["issued_at"]) / 1000 - time.time()) < 60


@pytest.mark.parametrize("field,value", [("password", "wrong"), ("username", "nobody@x.org")])
def test_password_login_with_bad_credentials_is_invalid_grant(http, emulator, field, value):
    form = {
        "grant_type": "password",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME,
        "password": "emulator-password",
        field: value,
    }
    response = http.post(token_url(emulator), data=form)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "authentication failure",
    }


def test_client_credentials_login_in_form_and_basic_auth(http, emulator):
    form = {
        "grant_type": "client_credentials",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }
    assert http.post(token_url(emulator), data=form).status_code == 200
    basic = http.post(
        token_url(emulator),
        data={"grant_type": "client_credentials"},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    assert basic.status_code == 200
    sf = Salesforce(
        instance_url=emulator.instance_url, session_id=basic.json()["access_token"], session=http
    )
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    bad = http.post(token_url(emulator), data={**form, "client_secret": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_client"


def test_unknown_grant_type_is_refused(http, emulator):
    response = http.post(token_url(emulator), data={"grant_type": "authorization_code"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.fixture(scope="module")
def rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem.decode()


def jwt_login(http, emulator, private_pem, **overrides):
    claims = {
        "iss": DEFAULT_CLIENT_ID,
        "sub": DEFAULT_USERNAME,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    }
    claims.update(overrides)
    assertion = jwt.encode(claims, private_pem, algorithm="RS256")
    return http.post(
        token_url(emulator),
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )


def test_jwt_bearer_login_verifies_rs256_signature_and_claims(http, emulator, rsa_key):
    private_pem, public_pem = rsa_key
    admin(http, emulator, "PATCH", "config", {"jwt_certificates": {DEFAULT_CLIENT_ID: public_pem}})
    ok = jwt_login(http, emulator, private_pem)
    assert ok.status_code == 200, ok.text
    sf = Salesforce(
        instance_url=emulator.instance_url, session_id=ok.json()["access_token"], session=http
    )
    assert sf.Account.create({"Name": "Via JWT"})["success"] is True

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = {
        "forged": (jwt_login(http, emulator, other_key), "invalid assertion"),
        "expired": (
            jwt_login(http, emulator, private_pem, exp=int(time.time()) - 10),
            "expired authorization code",
        ),
        "audience": (
            jwt_login(http, emulator, private_pem, aud="https://evil.example"),
            "audience is invalid",
        ),
        "subject": (
            jwt_login(http, emulator, private_pem, sub="nobody@x.org"),
            "user hasn't approved this consumer",
        ),
    }
    for name, (response, description) in cases.items():
        assert response.status_code == 400, name
        assert response.json()["error_description"] == description, name


def test_missing_or_unknown_token_is_invalid_session(http, emulator):
    url = f"{emulator.instance_url}/services/data/v59.0/sobjects"
    for headers in ({}, {"Authorization": "Bearer 00Dnot-a-session"}):
        response = http.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == [
            {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
        ]


def test_session_expires_after_ttl(http, emulator, sf):
    admin(http, emulator, "PATCH", "config", {"session_ttl_seconds": 600})
    fresh = password_login(http, emulator)
    short = Salesforce(
        instance_url=emulator.instance_url, session_id=fresh["access_token"], session=http
    )
    assert short.query("SELECT COUNT() FROM Account")["done"] is True
    admin(http, emulator, "POST", "clock", {"advance_seconds": 601})
    with pytest.raises(SalesforceExpiredSession) as excinfo:
        short.query("SELECT COUNT() FROM Account")
    assert excinfo.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    # the session issued before the TTL change still lives its original two hours
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True


def test_admin_can_expire_all_sessions(http, emulator, sf):
    admin(http, emulator, "POST", "sessions/expire")
    with pytest.raises(SalesforceExpiredSession):
        sf.Account.create({"Name": "Too late"})


def test_revoke_ends_a_session(http, emulator):
    token = password_login(http, emulator)["access_token"]
    assert (
        http.post(
            f"{emulator.instance_url}/services/oauth2/revoke", data={"token": token}
        ).status_code
        == 200
    )
    response = http.get(
        f"{emulator.instance_url}/services/data/v59.0/limits",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401


def test_plain_http_is_not_served(emulator):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.instance_url.replace("https", "http") + "/services/data/", timeout=5)


def test_activity_extends_the_session(http, emulator):
    admin(http, emulator, "PATCH", "config", {"session_ttl_seconds": 600})
    token = password_login(http, emulator)["access_token"]
    sf = Salesforce(instance_url=emulator.instance_url, session_id=token, session=http)
    for _ in range(3):
        admin(http, emulator, "POST", "clock", {"advance_seconds": 400})
        assert sf.query("SELECT COUNT() FROM Account")["done"] is True
    admin(http, emulator, "POST", "clock", {"advance_seconds": 601})
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT COUNT() FROM Account")
