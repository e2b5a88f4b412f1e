"""Crossmint's auth API: requests built and answers parsed once, for both drivers.

The drivers in :mod:`crossmint_wsgi.auth` only send an :class:`ApiRequest`
and hand the status and body back to a parser here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from .config import Crossmint
from .cookies import REFRESH_COOKIE, is_token_text
from .errors import CrossmintAuthError, CrossmintConfigError, ErrorCode
from .keys import import_public_keys
from .models import AuthMaterial, RefreshToken, User, parse_timestamp
from .tokens import TokenInvalid, trusted_claims

__all__ = [
    "API_VERSION",
    "ApiRequest",
    "check_key_set_answer",
    "jwks_request",
    "logout_request",
    "not_crossmint",
    "parse_logout_answer",
    "parse_jwks_answer",
    "parse_refresh_answer",
    "parse_refresh_route_answer",
    "parse_user_answer",
    "refresh_call",
    "refresh_request",
    "refresh_route_request",
    "refresh_route_url",
    "shown_url",
    "unreachable",
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


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """``url`` as a message may show it: scheme, host, port and path, without
    the userinfo, query or fragment that may hold a credential."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "(a malformed URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def refresh_route_url(url: str) -> str:
    """Check a ``refresh_route`` setting: an absolute ``https`` URL (``http``
    only on a loopback host: ``localhost``, ``127.0.0.1``, ``::1``).

    A refresh secret travels to it: over plain http anyone on the path reads it.

    :raises CrossmintConfigError: ``setting == "refresh_route"``. The message
        shows the URL without its userinfo and query.
    """
    if not isinstance(url, str):
        raise CrossmintConfigError(
            f"refresh_route must be a URL string, not {type(url).__name__}",
            setting="refresh_route",
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise CrossmintConfigError(
            "refresh_route is not a valid URL", setting="refresh_route"
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise CrossmintConfigError(
            f"refresh_route must be an absolute https URL, not {shown_url(url)!r}",
            setting="refresh_route",
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise CrossmintConfigError(
            f"refresh_route must use https (http only on a loopback host), not"
            f" {shown_url(url)!r}: refresh secrets travel to it",
            setting="refresh_route",
        )
    return url


def refresh_route_request(url: str, secret: str) -> ApiRequest:
    """Trade a refresh secret at an app's own refresh route, as the browser SDK does.

    The body is the browser SDK's ``{"refresh": secret}``. The API key is not
    sent: the route belongs to another app, which holds its own.
    """
    from . import __version__

    return ApiRequest(
        name="refresh route",
        method="POST",
        url=url,
        headers={
            "x-client-name": CLIENT_NAME,
            "x-client-version": __version__,
            "accept": "application/json",
            "content-type": "application/json",
        },
        body=json.dumps({"refresh": secret}).encode(),
    )


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


def upstream_unavailable(call: str, why: str, url: str | None = None) -> CrossmintAuthError:
    """The error for a Crossmint call that got no usable answer.

    Its message reaches clients (a 503's body): it never shows a URL's
    userinfo, query or fragment.

    :param url: the URL called, named in the message (see :func:`shown_url`).
    """
    where = f" to {shown_url(url)}" if url else ""
    return CrossmintAuthError(
        ErrorCode.UPSTREAM_UNAVAILABLE, f"Crossmint {call} call{where} failed: {why}"
    )


def unreachable(request: ApiRequest, error: BaseException) -> CrossmintAuthError:
    """The error for a call that got no answer at all (refused, timed out, no such host)."""
    if isinstance(error, CrossmintAuthError):
        if request.name != "refresh route" and shown_url(request.url) in error.message:
            return error
        why = error.message.rpartition(": ")[2]
    else:
        why = type(error).__name__
    # An app's refresh route is configuration, maybe an internal host: not for
    # the clients a 503 goes to. Crossmint's URL is public.
    url = None if request.name == "refresh route" else request.url
    return upstream_unavailable(request.name, f"unreachable ({why})", url)


def not_crossmint(status: int, body: bytes) -> str | None:
    """Why an answer to the key-set call shows that Crossmint is not at that URL.

    A wrong base URL (a wrong port, host or path prefix, another server)
    answers with a redirect, a 4xx, HTML or JSON that is not a JWK Set; an
    outage answers with a 5xx, 408 or 429, or not at all.

    :returns: the reason, or ``None`` when the answer may well be Crossmint's.
    """
    if 300 <= status < 400:
        return f"HTTP {status}, a redirect"
    if 400 <= status < 500 and status not in (408, 429):
        return f"HTTP {status}"
    if status >= 400:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeError):
        start = body[:200].lstrip().lower()
        kind = "HTML" if start.startswith((b"<!doctype html", b"<html")) else "not JSON"
        return f"HTTP {status} with a body that is {kind}"
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        return f"HTTP {status} with JSON that is not a JWK Set"
    return None


def check_key_set_answer(request: ApiRequest, status: int, body: bytes) -> dict[str, Any]:
    """Judge the key-set answer at start-up: a misconfiguration, an outage, or keys.

    :raises CrossmintConfigError: ``setting == "base_url"``: the answer
        shows Crossmint is not there, or its key set is unusable; the message
        names the URL.
    :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE``: Crossmint is failing.
    """
    reason = not_crossmint(status, body)
    if reason is not None:
        raise CrossmintConfigError(
            f"Crossmint is not at {request.url}: the key set call answered {reason};"
            " check base_url (scheme, host, port and path prefix)",
            setting="base_url",
        )
    data = parse_jwks_answer(status, body, url=request.url)
    try:
        import_public_keys(data)
    except ValueError as error:
        raise CrossmintConfigError(
            f"the key set at {request.url} is unusable: {error}", setting="base_url"
        ) from None
    return data


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


def _is_json_object(body: bytes) -> bool:
    """Whether an error answer's body is a JSON object, as every answer of
    Crossmint's own API is (``{"message": ...}``). A WAF or CDN in front of
    it (an HTML 403 block page, Cloudflare's "error 1009"), a proxy, or a
    cut connection answers HTML, text or nothing: that is no verdict on a secret."""
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, UnicodeError, RecursionError):
        return False


def _not_a_verdict(call: str, status: int, body: bytes) -> CrossmintAuthError | None:
    """The error for an error answer that says nothing about the secret, or
    ``None`` when the answer is a refusal of it: a 4xx other than 408 and
    429 whose body is a JSON object."""
    if status in (408, 429):
        # Too slow or too many requests: Crossmint is busy, the token may be fine.
        return upstream_unavailable(call, f"HTTP {status}")
    if not _is_json_object(body):
        start = body[:200].lstrip().lower()
        if not start:
            kind = "empty"
        elif start.startswith(b"<"):
            kind = "HTML"
        else:
            kind = "not a JSON object"
        return upstream_unavailable(call, f"HTTP {status} with a body that is {kind}")
    return None


def parse_refresh_answer(status: int, body: bytes) -> AuthMaterial:
    """Read Crossmint's refresh answer.

    Only Crossmint itself can refuse a refresh token, and it speaks JSON; an
    error answer that is not JSON came from something in front of it (a
    WAF or CDN block page, a proxy), as ``@crossmint/common-sdk-base`` 0.11
    also holds. So:

    - a 4xx other than 408 and 429 whose body is a JSON object: the token
      is refused, ``SESSION_EXPIRED`` (cookies cleared);
    - any other 4xx (an HTML or text page, an empty body, JSON that is not
      an object such as ``null`` or a list), a 408, a 429, a 5xx, or a 2xx
      that is not the expected JSON: ``UPSTREAM_UNAVAILABLE`` (503, cookies
      kept).

    The body decides, not the ``Content-Type``: a block page labelled JSON
    is still not JSON, and a JSON refusal is read whatever its label.

    :raises CrossmintAuthError: ``SESSION_EXPIRED`` or ``UPSTREAM_UNAVAILABLE``,
        as above.
    """
    if 400 <= status < 500:
        error = _not_a_verdict("refresh", status, body)
        if error is not None:
            raise error
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
        if not is_token_text(jwt) or not is_token_text(secret):
            # They go into Set-Cookie headers and hashes as they are.
            raise ValueError("jwt and refresh.secret must be printable ASCII")
        # Refused here, a JWT no session can be made of never reaches the
        # coordinators, which would serve it again to every retry for a while.
        trusted_claims(jwt)
        expires_at = parse_timestamp(refresh["expiresAt"])
        user_data = data.get("user")
        user = User.from_json(user_data) if isinstance(user_data, dict) else None
    except (KeyError, TypeError, ValueError, AttributeError, TokenInvalid) as error:
        raise upstream_unavailable("refresh", f"answer has an unexpected shape ({error})") from None
    return AuthMaterial(jwt=jwt, refresh_token=RefreshToken(secret, expires_at), user=user)


def _secret_from_cookies(set_cookies: Iterable[str]) -> str | None:
    """The refresh secret a refresh route stored in its cookie (unscoped or scoped name)."""
    for header in set_cookies:
        name, _, rest = header.partition("=")
        name = name.strip()
        if name == REFRESH_COOKIE or name.startswith(REFRESH_COOKIE + "-"):
            value = rest.split(";", 1)[0].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                return value
    return None


def parse_refresh_route_answer(
    status: int, body: bytes, set_cookies: Iterable[str] = ()
) -> AuthMaterial:
    """Read an app's refresh route's answer: the browser SDK's
    ``{"jwt", "refreshToken": {"secret", "expiresAt"}, "user"}``.

    A route that keeps the secret of an HttpOnly cookie out of its body (as
    this library's does) still sends it in ``Set-Cookie``: it is read there.

    :raises CrossmintAuthError: ``SESSION_EXPIRED`` on a 401 whose body is
        a JSON object (the route did not accept the secret: this library's
        route and the JS SDK's answer ``{"message": ...}``);
        ``UPSTREAM_UNAVAILABLE`` on anything else that is not a new session:
        a 401 that is not JSON (a proxy's or a WAF's page, an empty body), a
        5xx, another 4xx (a wrong URL or a route that refuses us is no
        reason to log users out), JSON of another shape, or a 2xx without a
        new secret (a route keeping a session through its own outage answers
        its old JWT that way).
    """
    if status == 401:
        error = _not_a_verdict("refresh route", status, body)
        if error is not None:
            raise error
        raise CrossmintAuthError(
            ErrorCode.SESSION_EXPIRED,
            "the refresh route did not accept the refresh token (HTTP 401)",
        )
    if 400 <= status < 500:
        raise upstream_unavailable("refresh route", f"HTTP {status} (check refresh_route)")
    data = _json_object("refresh route", status, body)
    if not 200 <= status < 300:
        raise upstream_unavailable("refresh route", f"unexpected HTTP {status}")
    try:
        jwt = data["jwt"]
        refresh = data["refreshToken"]
        secret = refresh.get("secret") or _secret_from_cookies(set_cookies)
        if not isinstance(jwt, str) or not jwt:
            raise TypeError("jwt must be a non-empty string")
        if not isinstance(secret, str) or not secret:
            raise ValueError("no new refresh secret in the body or the cookies")
        if not is_token_text(jwt) or not is_token_text(secret):
            raise ValueError("jwt and the refresh secret must be printable ASCII")
        trusted_claims(jwt)
        expires = refresh.get("expiresAt")
        expires_at = parse_timestamp(expires) if expires is not None else None
        user_data = data.get("user")
        user = User.from_json(user_data) if isinstance(user_data, dict) else None
    except (KeyError, TypeError, ValueError, AttributeError, TokenInvalid) as error:
        raise upstream_unavailable(
            "refresh route", f"answer has an unexpected shape ({error})"
        ) from None
    return AuthMaterial(jwt=jwt, refresh_token=RefreshToken(secret, expires_at), user=user)


#: Reads a refresh answer: status, body and the answer's ``Set-Cookie`` values.
RefreshParser = Callable[[int, bytes, list[str]], AuthMaterial]


def _parse_crossmint_refresh(status: int, body: bytes, set_cookies: list[str]) -> AuthMaterial:
    return parse_refresh_answer(status, body)


def refresh_call(
    crossmint: Crossmint, secret: str, route: str | None = None
) -> tuple[ApiRequest, RefreshParser]:
    """The refresh call to make and how to read its answer: Crossmint's, or
    the app's own refresh route when ``route`` is set (the JS SDK's ``refreshRoute``)."""
    if route is None:
        return refresh_request(crossmint, secret), _parse_crossmint_refresh
    return refresh_route_request(route, secret), parse_refresh_route_answer


def parse_logout_answer(status: int, body: bytes) -> None:
    """Read Crossmint's logout answer: whether the secret is known to be dead.

    A 2xx (its body is ignored) revoked the secret; a 4xx other than 408
    and 429 whose body is a JSON object is Crossmint refusing a secret that
    is already dead: both are done. Anything else, a non-JSON error answer
    (a WAF or CDN page, an empty body) included, may have left the secret
    alive at Crossmint.

    :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` when the secret may
        still be alive (the logout flow logs it; the cookies are cleared anyway).
    """
    if 200 <= status < 300:
        return
    if 400 <= status < 500:
        error = _not_a_verdict("logout", status, body)
        if error is not None:
            raise error
        return
    raise upstream_unavailable(
        "logout", f"HTTP {status}" if status >= 500 else f"unexpected HTTP {status}"
    )


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


def parse_jwks_answer(status: int, body: bytes, *, url: str | None = None) -> dict[str, Any]:
    """Read the JWK Set answer (its keys are checked by the key cache).

    A request cannot be verified without keys: whatever went wrong, it is
    ``UPSTREAM_UNAVAILABLE`` (503, cookies kept), with a message that tells a
    wrong base URL from an outage. :func:`check_key_set_answer` makes the
    first a configuration error at start-up.

    :param url: the URL called, named in the message.
    :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` unless a 200 with a JWK Set.
    """
    reason = not_crossmint(status, body)
    if reason is not None:
        raise upstream_unavailable(
            "key set", f"{reason}: Crossmint is not there (check base_url)", url
        )
    if status != 200:
        raise upstream_unavailable("key set", f"HTTP {status}", url)
    return _json_object("key set", status, body)
