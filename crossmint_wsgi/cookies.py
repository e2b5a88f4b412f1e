"""The two auth cookies: reading them from a request, writing ``Set-Cookie`` values."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.http import dump_cookie, parse_cookie

from .models import AuthMaterial, CookieOptions

__all__ = [
    "JWT_COOKIE",
    "REFRESH_COOKIE",
    "AuthCookies",
    "ambiguity",
    "auth_cookie_pairs",
    "clear_cookie_headers",
    "cookie_header_from",
    "is_token_text",
    "read_auth_cookies",
    "session_cookie_headers",
    "written_names",
]

JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"


@dataclasses.dataclass(frozen=True)
class AuthCookies:
    """The auth cookies a request carried, and every auth cookie name it carried.

    ``names`` lists the unscoped and project-scoped names that held a value,
    used or not: a refresh writes under each of them (so no stale secret is
    left for the browser SDK to send) and a logout clears each of them.

    ``ambiguous`` lists the names that carried more than one distinct
    non-empty value (``crossmint-jwt=a; crossmint-jwt=b``). Frameworks disagree on which of
    them an app reads (werkzeug the first, Starlette, Django and Bottle the
    last), so none of them is used: the JWT or secret of such a name is
    ``None``, and :func:`ambiguity` says why no session comes of them.
    """

    jwt: str | None = dataclasses.field(default=None, repr=False)
    refresh: str | None = dataclasses.field(default=None, repr=False)
    names: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.jwt or self.refresh or self.ambiguous)

    def given(self, jwt: str | None, refresh: str | None) -> AuthCookies:
        """These cookies with explicit values in place of the cookies' own.

        A name whose value is replaced no longer makes the request ambiguous.
        """
        if jwt is None and refresh is None:
            return self
        replaced = {JWT_COOKIE: jwt is not None, REFRESH_COOKIE: refresh is not None}
        return AuthCookies(
            jwt or self.jwt,
            refresh or self.refresh,
            self.names,
            tuple(n for n in self.ambiguous if not replaced[_base_of(n)]),
        )


NO_COOKIES = AuthCookies()


def is_token_text(value: str) -> bool:
    """Whether a secret or token may be hashed, sent and stored in a cookie as it is.

    Crossmint's tokens are printable ASCII; anything else (a lone surrogate,
    NUL, CR or LF, non-ASCII letters) came from a client or an upstream that
    is not speaking Crossmint's protocol.
    """
    return value.isascii() and value.isprintable()


def _base_of(name: str) -> str:
    return REFRESH_COOKIE if name.startswith(REFRESH_COOKIE) else JWT_COOKIE


def read_auth_cookies(
    cookies: Mapping[str, str] | Iterable[tuple[str, str]], project_id: str
) -> AuthCookies:
    """Pick the JWT and refresh secret out of parsed cookies.

    The unscoped names the server side writes win; the project-scoped names
    the browser SDK writes when it has no refresh route come second. Empty
    values count as absent.

    :param cookies: ``(name, value)`` pairs in header order, or a mapping;
        a werkzeug ``MultiDict`` (what :func:`cookie_header_from` returns)
        is read with every value of a repeated name. A name that carries
        two distinct non-empty values is ambiguous: see :class:`AuthCookies`.
    """
    if isinstance(cookies, MultiDict):
        pairs: Iterable[tuple[str, str]] = cookies.items(multi=True)
    elif isinstance(cookies, Mapping):
        pairs = cookies.items()
    else:
        pairs = cookies
    wanted = (
        JWT_COOKIE,
        f"{JWT_COOKIE}-{project_id}",
        REFRESH_COOKIE,
        f"{REFRESH_COOKIE}-{project_id}",
    )
    seen: dict[str, str] = {}
    ambiguous: list[str] = []
    for name, value in pairs:
        # An empty value is absent to every reader (an app reading it finds
        # no token): it cannot make a name mean two things.
        if not value or name not in wanted:
            continue
        first = seen.setdefault(name, value)
        if first != value and name not in ambiguous:
            ambiguous.append(name)
    if not seen:
        return NO_COOKIES
    names = [name for name in wanted if name in seen]

    def pick(base: str) -> str | None:
        if any(_base_of(name) == base for name in ambiguous):
            return None
        return seen.get(base) or seen.get(f"{base}-{project_id}")

    return AuthCookies(pick(JWT_COOKIE), pick(REFRESH_COOKIE), tuple(names), tuple(ambiguous))


def ambiguity(cookies: AuthCookies) -> str | None:
    """Why no session may come of the request's cookies, or ``None`` when they are unambiguous.

    The message names the cookies, never their values.
    """
    if not cookies.ambiguous:
        return None
    return (
        f"the request carries the cookie {' and '.join(cookies.ambiguous)} more than once with"
        " different values (one may come from another path or subdomain): no session is read"
        " from it"
    )


def _parse(header: str) -> MultiDict[str, str]:
    """``parse_cookie`` of PEP 3333 latin-1 text, which must not fail on bytes that are not UTF-8.

    werkzeug decodes the header as UTF-8 and raises on anything else; one stray
    byte from a client must not turn a request into a server error.
    """
    try:
        return parse_cookie(header)
    except UnicodeError:
        try:
            text = header.encode("latin-1").decode("utf-8", "replace")
        except UnicodeEncodeError:
            text = header  # not latin-1 text: already decoded
        return parse_cookie(text.encode("utf-8", "replace").decode("latin-1"))


def auth_cookie_pairs(header: str) -> tuple[tuple[str, str], ...]:
    """Every auth cookie of a header, in order, read as werkzeug reads them,
    without parsing the other cookies."""
    # A request's header is read twice on its first visit (the recent
    # sessions' digest, then the session itself): once is enough. Another
    # thread may replace the memo; the comparison makes that cost a reading.
    global _last_read
    memo = _last_read
    if memo[0] == header:
        return memo[1]
    pairs = _read_auth_pairs(header)
    _last_read = (header, pairs)
    return pairs


_last_read: tuple[str, tuple[tuple[str, str], ...]] = ("", ())


def _read_auth_pairs(header: str) -> tuple[tuple[str, str], ...]:
    if '"' in header or not header.isascii():
        # A quoted value may hold a ``;``, and PEP 3333 text is UTF-8 read as
        # latin-1: only the full parser reads those as werkzeug does.
        return tuple(
            (name, value)
            for name, value in _parse(header).items(multi=True)
            if name.startswith("crossmint-")
        )
    # Without quotes, werkzeug reads each ``;``-separated part on its own:
    # blanks around the name and the value, neither holding a blank inside
    # (such a part is skipped). String methods, not a pattern: a pattern
    # steps through the JWT a character at a time.
    pairs = []
    for part in header.split(";"):
        if "crossmint-" in part:
            name, _, value = part.partition("=")
            name = name.strip(" \t")
            value = value.strip(" \t")
            if (
                name.startswith("crossmint-")
                and " " not in name
                and "\t" not in name
                and " " not in value
                and "\t" not in value
            ):
                pairs.append((name, value))
    return tuple(pairs)


def parse_auth_cookie_header(header: str | None, project_id: str) -> AuthCookies:
    """Read the auth cookies from a raw ``Cookie`` header (PEP 3333 latin-1 text)."""
    # Most requests of an app carry no auth cookie: skip the parser for them.
    if not header or "crossmint-" not in header:
        return NO_COOKIES
    return read_auth_cookies(auth_cookie_pairs(header), project_id)


def _is_scope(source: Mapping[str, Any]) -> bool:
    return "headers" in source and source.get("type") in ("http", "websocket")


def _from_scope(scope: Mapping[str, Any]) -> MultiDict[str, str]:
    header = b"; ".join(v for k, v in scope["headers"] if k.lower() == b"cookie")
    return _parse(header.decode("latin-1"))


def cookie_header_from(source: Any) -> Mapping[str, str] | None:
    """Parsed cookies from a WSGI environ, a cookie mapping, or a request object.

    Accepts a WSGI environ (``HTTP_COOKIE``), an ASGI scope (raw ``headers``),
    any object with a ``.cookies`` mapping (Flask, Bottle, Starlette, Quart
    requests) or a plain mapping of cookie names to values.
    """
    if source is None:
        return None
    if isinstance(source, Mapping):
        if "HTTP_COOKIE" in source or "wsgi.version" in source:
            return _parse(source.get("HTTP_COOKIE") or "")
        if _is_scope(source):
            return _from_scope(source)
        return source
    environ = getattr(source, "environ", None)
    if isinstance(environ, Mapping) and ("HTTP_COOKIE" in environ or "wsgi.version" in environ):
        # A WSGI request object (Flask, werkzeug, Bottle): parse its header here,
        # so the rules hold everywhere. Bottle's own .cookies keeps the last of
        # a duplicated name, and SimpleCookie drops the rest of a header at an
        # odd character.
        return _parse(environ.get("HTTP_COOKIE") or "")
    scope = getattr(source, "scope", None)
    if isinstance(scope, Mapping) and _is_scope(scope):
        # An ASGI request object (Starlette, FastAPI, Quart, Django's ASGI
        # request): its .cookies keeps one value of a repeated name, and
        # Starlette reads only the first Cookie header line. Every value of
        # every line is needed to see that a name is ambiguous.
        return _from_scope(scope)
    cookies = getattr(source, "cookies", None)
    if isinstance(cookies, Mapping):
        return cookies
    raise TypeError(
        f"cannot read cookies from {type(source).__name__}: pass a WSGI environ, an ASGI"
        " scope, a cookie mapping or a request object with a .cookies mapping"
    )


def _cookie(
    name: str,
    value: str,
    options: CookieOptions,
    *,
    secure: bool,
    http_only: bool,
    expires: datetime | int | None,
    now: float | None = None,
) -> str:
    max_age = None
    if options.max_age is not None and now is not None:
        # Max-Age wins over Expires in browsers: bound it by the token's own expiry.
        until = expires.timestamp() if isinstance(expires, datetime) else expires
        deadline = int(now) + options.max_age
        if until is not None:
            deadline = min(deadline, int(until))
        max_age, expires = max(0, deadline - int(now)), deadline
    return dump_cookie(
        name,
        value,
        max_age=max_age,
        expires=expires,
        path=options.path,
        domain=options.domain,
        secure=options.secure if options.secure is not None else secure,
        httponly=http_only,
        samesite=options.same_site,
    )


def written_names(
    options: CookieOptions, project_id: str | None, names: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The JWT and refresh cookie names new material is written under.

    The names ``options.names`` chooses, plus the scope (unscoped or
    project-scoped) of every auth cookie the request carried, so a refresh
    replaces every copy the browser holds: a scoped secret left behind would
    be sent again by the browser SDK, refused as already used, and end the
    session there.

    :param project_id: the project the scoped names carry; without it only
        the unscoped names are written.
    :param names: the auth cookie names the request carried (:attr:`AuthCookies.names`).
    """
    scoped = {
        JWT_COOKIE: f"{JWT_COOKIE}-{project_id}",
        REFRESH_COOKIE: f"{REFRESH_COOKIE}-{project_id}",
    }
    carried = set(names)
    want_unscoped = options.names != "scoped" or bool(carried & set(scoped))
    want_scoped = project_id is not None and (
        options.names != "unscoped" or bool(carried & set(scoped.values()))
    )
    jwt_names: list[str] = []
    refresh_names: list[str] = []
    for base, out in ((JWT_COOKIE, jwt_names), (REFRESH_COOKIE, refresh_names)):
        if want_unscoped or not want_scoped:
            out.append(base)
        if want_scoped:
            out.append(scoped[base])
    return jwt_names, refresh_names


def session_cookie_headers(
    material: AuthMaterial,
    jwt_expires: int | None,
    options: CookieOptions,
    *,
    secure: bool,
    project_id: str | None = None,
    names: Iterable[str] = (),
    now: float | None = None,
) -> list[str]:
    """``Set-Cookie`` values that store a session in the browser.

    :param material: the JWT and refresh token to store.
    :param jwt_expires: the JWT's ``exp``; the JWT cookie expires with it.
    :param options: the cookie attributes.
    :param secure: whether the request came over https; used when
        ``options.secure`` is ``None``.
    :param project_id: the project id, for the project-scoped names.
    :param names: the auth cookie names the request carried: see
        :func:`written_names`. A project-scoped refresh cookie the request
        carried is written back readable by script (the browser SDK manages
        it), whatever ``options.http_only`` says.
    :param now: the current time, for ``options.max_age``.
    """
    if now is None:
        now = time.time()
    jwt_names, refresh_names = written_names(options, project_id, names)
    # A session that came in the browser SDK's project-scoped cookies is the
    # SDK's: it reads its refresh secret from script (no refreshRoute), so an
    # HttpOnly copy would log it out on the next page load. Ours stay HttpOnly.
    sdk_managed = {name for name in names if name != REFRESH_COOKIE}
    return [
        # The browser SDK reads the JWT cookie: never HttpOnly.
        *(
            _cookie(
                name,
                material.jwt,
                options,
                secure=secure,
                http_only=False,
                expires=jwt_expires,
                now=now,
            )
            for name in jwt_names
        ),
        *(
            _cookie(
                name,
                material.refresh_token.secret,
                options,
                secure=secure,
                http_only=options.http_only and name not in sdk_managed,
                expires=material.refresh_token.expires_at,
                now=now,
            )
            for name in refresh_names
        ),
    ]


def clear_cookie_headers(
    options: CookieOptions, *, secure: bool, names: tuple[str, ...] = ()
) -> list[str]:
    """``Set-Cookie`` values that delete the auth cookies: empty, expired in 1970.

    :param names: extra cookie names to clear as well (the project-scoped
        names a request carried).
    """
    every = dict.fromkeys((JWT_COOKIE, REFRESH_COOKIE, *names))
    return [_cookie(name, "", options, secure=secure, http_only=False, expires=0) for name in every]
