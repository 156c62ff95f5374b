"""ID token validation for OpenID Connect sign-in: signature by the provider's JWKS, then claims.

Guaranteed: a token is accepted only if an asymmetric algorithm the provider announces signed
it with a key from its JWKS, ``iss`` is the configured issuer, ``aud`` names this client (and
``azp`` does when there are several audiences), ``exp``/``iat`` hold within the leeway and
``nonce`` is the one this sign-in sent. Every refusal says which check failed, never the token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from quote2cash.identity import NotAuthenticated

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


class IdTokenRejected(NotAuthenticated):
    """The provider's ID token failed a check; the message names the check."""


class UnknownSigningKey(IdTokenRejected):
    """The token names a key the cached JWKS lacks (the provider may have rotated its keys)."""


@dataclass(frozen=True)
class VerifiedIdentity:
    """Who the provider says signed in, after every check passed."""

    issuer: str
    subject: str
    email: str | None
    email_verified: bool | None
    name: str | None


@dataclass(frozen=True)
class Expectations:
    """What this sign-in expects of the token."""

    issuer: str
    client_id: str
    nonce: str
    now: datetime
    leeway: timedelta
    algorithms: tuple[str, ...] = ("RS256",)


def verify_signature(raw: str, keys: KeySet, algorithms: tuple[str, ...]) -> dict[str, Any]:
    """The token's claims if one of ``keys`` signed it with an allowed algorithm."""
    allowed = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS] or ["RS256"]
    try:
        token = jwt.decode(raw, keys, algorithms=allowed)
    except InvalidKeyIdError:
        raise UnknownSigningKey(
            "ID token is signed with a key the provider does not publish"
        ) from None
    except BadSignatureError:
        raise IdTokenRejected(
            "ID token signature does not verify against the provider's keys"
        ) from None
    except (JoseError, ValueError, TypeError) as exc:
        raise IdTokenRejected(
            f"ID token is malformed or uses a refused algorithm ({exc})"
        ) from None
    return dict(token.claims)


def check_claims(claims: dict[str, Any], expected: Expectations) -> VerifiedIdentity:
    """Apply the OpenID Connect Core 3.1.3.7 checks that matter for a confidential client."""
    if claims.get("iss") != expected.issuer:
        raise IdTokenRejected(f"ID token issuer is not {expected.issuer!r}")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or expected.client_id not in audiences:
        raise IdTokenRejected("ID token audience does not include this client")
    if len(audiences) > 1 and claims.get("azp") != expected.client_id:
        raise IdTokenRejected("ID token has several audiences and azp is not this client")
    now = expected.now.timestamp()
    leeway = expected.leeway.total_seconds()
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp is None or iat is None:
        raise IdTokenRejected("ID token lacks a numeric exp or iat")
    if now > exp + leeway:
        raise IdTokenRejected("ID token has expired")
    if iat > now + leeway:
        raise IdTokenRejected("ID token is issued in the future")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce, expected.nonce):
        raise IdTokenRejected("ID token nonce does not match this sign-in")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise IdTokenRejected("ID token has no subject")
    email = claims.get("email")
    verified = claims.get("email_verified")
    name = claims.get("name")
    return VerifiedIdentity(
        issuer=expected.issuer,
        subject=subject,
        email=email if isinstance(email, str) and email else None,
        email_verified=verified if isinstance(verified, bool) else None,
        name=name if isinstance(name, str) else None,
    )


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
