"""The claims of a JWT whose signature holds: the checks, and the errors of verification."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["TokenExpired", "TokenInvalid", "TokenRevoked", "check_claims", "shared_strings"]


class TokenInvalid(Exception):
    """The token failed verification for a reason other than expiry."""


class TokenExpired(Exception):
    """The token is genuine but its ``exp`` has passed."""


class TokenRevoked(TokenExpired):
    """The token is genuine but its session was logged out: treated as expired."""


def _numeric_date(value: object) -> bool:
    # NumericDate: a JSON number, never a bool, never NaN or infinite (NaN would never expire).
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    )


def _refuse(error: str, claim: str) -> TokenInvalid:
    return TokenInvalid(f"token claims are not accepted: {error} ({claim})")


def check_claims(
    claims: Mapping[str, Any], *, audience: str, issuer: str | None, leeway: int, now: float
) -> None:
    """The claim checks of joserfc's ``JWTClaimsRegistry``, for Crossmint's claims.

    Equivalent to a registry with ``sub`` essential, ``aud`` valued
    ``audience`` when present, ``iss`` essential and valued ``issuer`` when
    configured, and ``exp`` essential and checked last (a forged or
    misdirected token that is also expired reads as invalid, not expired);
    tests hold the two to the same answers. Written out because the registry
    costs a tenth of an RSA verification per token.

    :raises TokenExpired: ``exp`` has passed (everything else being right).
    :raises TokenInvalid: anything else.
    """
    whole_now = int(now)
    sub = claims.get("sub")
    if sub is None:
        raise _refuse("missing_claim", "sub")
    if issuer is not None and claims.get("iss") is None:
        raise _refuse("missing_claim", "iss")
    if not isinstance(sub, str) or not sub:
        raise _refuse("invalid_claim", "sub")
    if "iss" in claims:
        iss = claims["iss"]
        if not isinstance(iss, str) or (issuer is not None and (not iss or iss != issuer)):
            raise _refuse("invalid_claim", "iss")
    if "aud" in claims:
        aud = claims["aud"]
        if isinstance(aud, str):
            accepted = aud == audience
        else:
            # A list of strings that names us; joserfc also refuses an empty one.
            accepted = (
                isinstance(aud, list)
                and all(isinstance(value, str) for value in aud)
                and audience in aud
            )
        if not accepted:
            raise _refuse("invalid_claim", "aud")
    for name in ("nbf", "iat"):
        if name in claims:
            value = claims[name]
            if not _numeric_date(value) or value > whole_now + leeway:
                raise _refuse("invalid_claim", name)
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise _refuse("invalid_claim", "jti")
    exp = claims.get("exp")
    if exp is None:
        raise _refuse("missing_claim", "exp")
    if not _numeric_date(exp):
        raise _refuse("invalid_claim", "exp")
    if exp <= whole_now - leeway:
        raise TokenExpired("token has expired")


def shared_strings(claims: dict[str, Any], audience: str, issuer: str | None) -> dict[str, Any]:
    """The claims with their audience and issuer as the strings every cached
    token shares: a token's claims are kept as long as it lives, and the JSON
    decoder makes new copies of them for each. (Sharing the claim names too
    would cost 2 % of a signature check: rebuilding the dict.)"""
    if claims.get("aud") == audience:
        claims["aud"] = audience
    if issuer is not None and claims.get("iss") == issuer:
        claims["iss"] = issuer
    return claims
