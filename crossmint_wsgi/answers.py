"""Answers the library sends itself: one value, one JSON rendering, one status table.

Every refusal (the middlewares', the routes', the framework helpers') is made
by :func:`refusal`, so a ``401`` reads the same wherever it comes from. The
refresh route's answer is a flow (it may need a Crossmint call): see
:func:`refresh_answer`.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable
from typing import Any

from .caching import uncacheable
from .cookies import AuthCookies, ambiguity, is_token_text
from .effects import Effect
from .errors import CrossmintAuthError, ErrorCode
from .flows import AuthCore
from .models import AuthMaterial
from .tokens import TokenExpired, TokenInvalid, TokenRevoked, trusted_claims

__all__ = [
    "MAX_BODY",
    "STATUS_FOR",
    "Answer",
    "invalid_request",
    "json_answer",
    "redirect",
    "refresh_answer",
    "refusal",
]

#: Bodies of the refresh and logout routes are tiny; refuse anything larger unread.
MAX_BODY = 64 * 1024

#: The HTTP status each outcome is answered with.
STATUS_FOR = {
    ErrorCode.MISSING_SESSION: 401,
    ErrorCode.SESSION_EXPIRED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.UPSTREAM_UNAVAILABLE: 503,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
}

_STATUS_TEXT = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    503: "Service Unavailable",
}

_NO_SESSION = CrossmintAuthError(ErrorCode.MISSING_SESSION, "the request carries no session")


class Answer:
    """A complete HTTP answer: status, headers (``Set-Cookie`` included) and body.

    The middlewares send these without calling the app; ``handle_custom_refresh``
    returns one for an app to copy into its own response.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        # Headers may carry Set-Cookie values (secrets): the status alone.
        return f"<Answer {self.status}>"

    @property
    def status_line(self) -> str:
        """``"401 Unauthorized"``: the status as WSGI's ``start_response`` takes it."""
        return f"{self.status} {_STATUS_TEXT.get(self.status, 'Error')}"

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


def json_answer(
    status: int,
    payload: Any,
    *,
    cookies: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
) -> Answer:
    """Compact JSON, never cached (``private, no-store``, ``Vary: Cookie``), with
    ``Set-Cookie`` for each of ``cookies``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    out = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *headers,
    ]
    out.extend(("Set-Cookie", cookie) for cookie in cookies)
    # Every answer of ours depends on the request's cookies, and may set them.
    return Answer(status, uncacheable(out), body)


def refusal(
    error: CrossmintAuthError | None = None,
    *,
    cookies: Iterable[str] = (),
    retry_after: int = 5,
) -> Answer:
    """The answer for an error: its status, ``{"error", "message"}``, and
    ``Retry-After`` when Crossmint is unavailable.

    :param error: why; ``None`` means the request carries no session.
    :param cookies: ``Set-Cookie`` values to send with it (clearing a dead session).
    :param retry_after: seconds a client should wait before trying again.
    """
    error = error or _NO_SESSION
    upstream = error.code is ErrorCode.UPSTREAM_UNAVAILABLE
    return json_answer(
        STATUS_FOR[error.code],
        {"error": error.code.value, "message": error.message},
        cookies=cookies,
        headers=[("Retry-After", str(retry_after))] if upstream else [],
    )


def redirect(location: str, *, cookies: Iterable[str] = ()) -> Answer:
    """A ``302`` to ``location``, never cached (see :func:`json_answer`)."""
    headers = [("Location", location), ("Content-Length", "0")]
    headers.extend(("Set-Cookie", cookie) for cookie in cookies)
    return Answer(302, uncacheable(headers), b"")


def invalid_request(message: str) -> Answer:
    """``400 INVALID_REQUEST``: a malformed request to one of the routes."""
    return refusal(CrossmintAuthError(ErrorCode.INVALID_REQUEST, message))


def _shows_secret(core: AuthCore) -> bool:
    """Whether the refresh answer's JSON may carry the refresh secret.

    An HttpOnly cookie exists so that no script reads the secret; the body
    of an answer to the page's own ``fetch`` is readable by any script of the
    page. The browser SDK uses only ``jwt`` from a refresh route's answer.
    """
    options = core.cookie_options
    return options.expose_refresh_secret or not options.http_only


def _material_json(core: AuthCore, material: AuthMaterial) -> dict[str, Any]:
    data = material.to_json()
    if not _shows_secret(core):
        # Same shape, so onTokenRefresh still finds refreshToken.expiresAt.
        del data["refreshToken"]["secret"]
    return data


def _still_valid(core: AuthCore, jwt: str) -> Generator[Effect, Any, dict[str, Any] | None]:
    """The claims of the request's JWT when it still verifies, else ``None``."""
    try:
        return (yield from core.verify(jwt))
    except (TokenExpired, TokenInvalid, CrossmintAuthError):
        return None


def _authentic_user(core: AuthCore, jwt: str | None) -> Generator[Effect, Any, str | None]:
    """The user the request's JWT proves it is, expired or not, else ``None``.

    A refresh that brings one is that user's: counted against them, never
    against the address it came from, and it may use the upstream slots
    kept for users (:mod:`~crossmint_wsgi.limits`). A forged, misdirected
    or logged-out JWT proves nobody.
    """
    if not jwt:
        return None
    try:
        claims = yield from core.verify(jwt)
    except TokenRevoked:
        return None
    except TokenExpired:
        # Raised only once the signature and every other claim held.
        return str(trusted_claims(jwt)["sub"])
    except (TokenInvalid, CrossmintAuthError):
        return None
    return str(claims["sub"])


def _kept_session(core: AuthCore, cookies: AuthCookies, claims: dict[str, Any]) -> Answer:
    """``200`` with the JWT the request already holds, and no new cookies.

    Crossmint's browser SDK logs the user out on any answer that is not a
    2xx, and it asks 120 s before ``exp``, while that JWT is still good. So
    when Crossmint cannot be reached and the JWT is good, it gets the JWT it
    has: it keeps the session and schedules no refresh; the server refreshes
    the cookies on a later request, once Crossmint answers.
    """
    refresh_token: dict[str, Any] = {"expiresAt": None}
    if _shows_secret(core) and cookies.refresh:
        refresh_token["secret"] = cookies.refresh
    assert cookies.jwt is not None
    body = {"jwt": cookies.jwt, "refreshToken": refresh_token, "user": {"id": claims["sub"]}}
    return json_answer(200, body)


def refresh_answer(
    core: AuthCore,
    body: bytes | None,
    cookies: AuthCookies,
    *,
    secure: bool,
    limit: int = MAX_BODY,
    retry_after: int = 5,
    client: str | None = None,
) -> Generator[Effect, Any, Answer]:
    """The refresh route's answer to a body (``None``: too large) and the request's cookies.

    The browser SDK posts ``{"refresh": secret}``, or ``{}`` when the refresh
    cookie is HttpOnly and it cannot read it: then the cookie is used. The
    answer is the browser SDK's ``{"jwt", "refreshToken", "user"}``, without
    ``refreshToken.secret`` when the cookie is HttpOnly (see
    :class:`~crossmint_wsgi.CookieOptions`). When Crossmint is unavailable
    and the request's own session JWT is still valid, that JWT is answered
    with ``200`` and no cookies, so the browser SDK does not log the user
    out; ``503`` only when nothing valid is left.
    """
    if body is None:
        return invalid_request(f"body is larger than {limit} bytes")
    secret = None
    if body.strip():
        try:
            data = json.loads(body)
        except (ValueError, UnicodeError, RecursionError):
            return invalid_request("body is not valid JSON")
        if not isinstance(data, dict):
            return invalid_request("body must be a JSON object")
        secret = data.get("refresh")
        if secret is not None and not isinstance(secret, str):
            return invalid_request("'refresh' must be a string")
        if secret and not is_token_text(secret):
            return invalid_request("'refresh' must be printable ASCII")
    unsure = ambiguity(cookies)
    if unsure is not None and not secret:
        # No secret of the body's own: the cookies' would be a guess.
        error = CrossmintAuthError(ErrorCode.INVALID_TOKEN, unsure)
        return refusal(error, cookies=core.clear_cookies(secure=secure, names=cookies.names))
    # Only the session the request holds may be kept through an outage: a
    # login's one-time secret must not be answered with another session's JWT.
    own = not secret or secret == cookies.refresh
    secret = secret or cookies.refresh
    if not secret:
        return refusal(
            CrossmintAuthError(
                ErrorCode.MISSING_SESSION, "no refresh token in the body or the cookies"
            )
        )
    user = yield from _authentic_user(core, cookies.jwt)
    try:
        material = yield from core.refresh(secret, client, user=user)
    except CrossmintAuthError as error:
        if error.code is ErrorCode.UPSTREAM_UNAVAILABLE and own and cookies.jwt:
            claims = yield from _still_valid(core, cookies.jwt)
            if claims is not None:
                return _kept_session(core, cookies, claims)
        cleared = (
            core.clear_cookies(secure=secure, names=cookies.names) if error.clears_cookies else []
        )
        return refusal(error, cookies=cleared, retry_after=retry_after)
    return json_answer(
        200,
        _material_json(core, material),
        cookies=core.session_cookies(material, secure=secure, names=cookies.names),
    )
