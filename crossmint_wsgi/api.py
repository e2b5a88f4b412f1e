"""Crossmint's auth API: requests built and answers parsed once, for both drivers.

The drivers in :mod:`crossmint_wsgi.auth` only send an :class:`ApiRequest`
and hand the status and body back to a parser here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any
from urllib.parse import quote

from .config import Crossmint
from .errors import CrossmintAuthError, ErrorCode
from .models import AuthMaterial, RefreshToken, User, parse_timestamp
from .tokens import TokenInvalid, trusted_claims

__all__ = [
    "API_VERSION",
    "ApiRequest",
    "jwks_request",
    "logout_request",
    "parse_jwks_answer",
    "parse_refresh_answer",
    "parse_user_answer",
    "refresh_request",
    "upstream_unavailable",
    "user_request",
]

logger = logging.getLogger("crossmint_wsgi.api")

API_VERSION = "2024-09-26"
CLIENT_NAME = "crossmint-wsgi"


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    """One call to Crossmint; headers and body hold secrets and stay out of ``repr``."""

    name: str
    method: str
    url: str
    headers: dict[str, str] = dataclasses.field(repr=False)
    body: bytes | None = dataclasses.field(default=None, repr=False)


def _headers(crossmint: Crossmint, *, body: bool) -> dict[str, str]:
    from . import __version__

    headers = {
        "x-api-key": crossmint.api_key,
        "x-client-name": CLIENT_NAME,
        "x-client-version": __version__,
        "accept": "application/json",
    }
    if crossmint.app_id:
        headers["x-app-identifier"] = crossmint.app_id
    if body:
        headers["content-type"] = "application/json"
    return headers


def _post_secret(crossmint: Crossmint, name: str, secret: str) -> ApiRequest:
    return ApiRequest(
        name=name,
        method="POST",
        url=f"{crossmint.base_url}/api/{API_VERSION}/session/sdk/auth/{name}",
        headers=_headers(crossmint, body=True),
        body=json.dumps({"refresh": secret}).encode(),
    )


def refresh_request(crossmint: Crossmint, secret: str) -> ApiRequest:
    """Trade a refresh secret (or a login's one-time secret) for new material."""
    return _post_secret(crossmint, "refresh", secret)


def logout_request(crossmint: Crossmint, secret: str) -> ApiRequest:
    """Revoke a refresh secret."""
    return _post_secret(crossmint, "logout", secret)


def user_request(crossmint: Crossmint, user_id: str) -> ApiRequest:
    """Fetch one user; the path has no ``session/`` segment."""
    return ApiRequest(
        name="user",
        method="GET",
        url=f"{crossmint.base_url}/api/{API_VERSION}/sdk/auth/user/{quote(user_id, safe='')}",
        headers=_headers(crossmint, body=False),
    )


def jwks_request(crossmint: Crossmint) -> ApiRequest:
    """Fetch Crossmint's JWK Set."""
    return ApiRequest(
        name="key set",
        method="GET",
        url=f"{crossmint.base_url}/.well-known/jwks.json",
        headers=_headers(crossmint, body=False),
    )


def upstream_unavailable(call: str, why: str) -> CrossmintAuthError:
    """The error for a Crossmint call that got no usable answer."""
    return CrossmintAuthError(
        ErrorCode.UPSTREAM_UNAVAILABLE, f"Crossmint {call} call failed: {why}"
    )


def _json_object(call: str, status: int, body: bytes) -> dict[str, Any]:
    if status >= 500:
        raise upstream_unavailable(call, f"HTTP {status}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeError):
        raise upstream_unavailable(call, f"HTTP {status} with a body that is not JSON") from None
    if not isinstance(data, dict):
        raise upstream_unavailable(call, f"HTTP {status} with JSON that is not an object")
    return data


def parse_refresh_answer(status: int, body: bytes) -> AuthMaterial:
    """Read Crossmint's refresh answer.

    :raises CrossmintAuthError: ``SESSION_EXPIRED`` on any 4xx (the refresh
        token is not accepted); ``UPSTREAM_UNAVAILABLE`` on a 5xx or an
        answer that is not the expected JSON.
    """
    if status in (408, 429):
        # Too slow or too many requests: Crossmint is busy, the token may be fine.
        raise upstream_unavailable("refresh", f"HTTP {status}")
    if 400 <= status < 500:
        if status in (401, 403):
            # The same statuses also mean a wrong API key; say so once in the log.
            logger.info("Crossmint refused a refresh with HTTP %d", status)
        raise CrossmintAuthError(
            ErrorCode.SESSION_EXPIRED,
            f"Crossmint did not accept the refresh token (HTTP {status})",
        )
    data = _json_object("refresh", status, body)
    if status != 200 and status != 201:
        raise upstream_unavailable("refresh", f"unexpected HTTP {status}")
    try:
        refresh = data["refresh"]
        jwt = data["jwt"]
        secret = refresh["secret"]
        if not isinstance(jwt, str) or not jwt or not isinstance(secret, str) or not secret:
            raise TypeError("jwt and refresh.secret must be non-empty strings")
        # Refused here, a JWT no session can be made of never reaches the
        # coordinators, which would serve it again to every retry for a while.
        trusted_claims(jwt)
        expires_at = parse_timestamp(refresh["expiresAt"])
        user_data = data.get("user")
        user = User.from_json(user_data) if isinstance(user_data, dict) else None
    except (KeyError, TypeError, ValueError, AttributeError, TokenInvalid) as error:
        raise upstream_unavailable("refresh", f"answer has an unexpected shape ({error})") from None
    return AuthMaterial(jwt=jwt, refresh_token=RefreshToken(secret, expires_at), user=user)


def parse_user_answer(status: int, body: bytes) -> User:
    """Read Crossmint's get-user answer.

    :raises CrossmintAuthError: ``INVALID_REQUEST`` on a 4xx (no such user,
        or the key may not read it); ``UPSTREAM_UNAVAILABLE`` otherwise.
    """
    if 400 <= status < 500:
        raise CrossmintAuthError(
            ErrorCode.INVALID_REQUEST, f"Crossmint did not return the user (HTTP {status})"
        )
    data = _json_object("user", status, body)
    try:
        return User.from_json(data)
    except ValueError as error:
        raise upstream_unavailable("user", str(error)) from None


def parse_jwks_answer(status: int, body: bytes) -> dict[str, Any]:
    """Read the JWK Set answer (its keys are checked by the key cache).

    :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` unless a 200 with a JSON object.
    """
    if status != 200:
        raise upstream_unavailable("key set", f"HTTP {status}")
    return _json_object("key set", status, body)
