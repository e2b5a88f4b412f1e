"""What the middlewares decide for one request, written once for WSGI and ASGI.

:meth:`Gate.handle` is a flow (see :mod:`crossmint_wsgi.flows`): it answers
the refresh and logout routes, enforces protection, and otherwise says which
session to publish and which cookies to append to the app's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from .answers import (
    MAX_BODY,
    Answer,
    invalid_request,
    json_answer,
    redirect,
    refresh_answer,
    refusal,
)
from .cookies import AuthCookies, parse_auth_cookie_header
from .effects import Effect, ReadBody
from .errors import CrossmintAuthError, ErrorCode
from .flows import AuthCore, Resolution
from .models import AuthMaterial, Session
from .paths import PathMatcher
from .recent import RecentSessions


class HttpRequest:
    """The parts of a request the decisions need, read by the layer from environ or scope."""

    __slots__ = (
        "accept",
        "client",
        "content_length",
        "cookie",
        "fetch_site",
        "host",
        "method",
        "origin",
        "path",
        "query",
        "raw_cookie",
        "root_path",
        "scheme",
        "script_name",
    )

    def __init__(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        scheme: str = "http",
        host: str | None = None,
        cookie: str | None = None,
        origin: str | None = None,
        fetch_site: str | None = None,
        accept: str | None = None,
        content_length: int | None = None,
        raw_cookie: bytes | None = None,
        root_path: str = "",
        client: str | None = None,
        script_name: str = "",
    ) -> None:
        self.method = method
        #: The path as the server gave it; under a mount it may carry ``root_path``.
        self.path = path
        #: Where the app is mounted (ASGI ``root_path``); ``""`` at the top.
        self.root_path = root_path
        #: Where a WSGI app is mounted (``SCRIPT_NAME``): never part of
        #: :attr:`path` (PEP 3333), only put in front of it for the browser.
        self.script_name = script_name
        #: The client's address (see :func:`client_address`), for the flood bounds.
        self.client = client
        self.query = query
        self.scheme = scheme
        self.host = host
        self.cookie = cookie
        self.origin = origin
        self.fetch_site = fetch_site
        self.accept = accept
        self.content_length = content_length
        #: The header as the server gave it (ASGI bytes), another key for the cache.
        self.raw_cookie = raw_cookie

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")

    @property
    def route_path(self) -> str:
        """The path the app routes: :attr:`path` without the mount prefix."""
        return route_path(self.path, self.root_path)

    @property
    def full_path(self) -> str:
        """The path the browser asked for: with the mount prefix."""
        if self.script_name:
            return self.script_name + self.path
        if self.root_path and self.route_path is self.path:
            return self.root_path + self.path
        return self.path


def client_address(peer: str | None, forwarded: str | None) -> str | None:
    """The address a request came from: the last hop of the trusted proxy
    header when the deployer named one and it is there, else the peer's.

    The last hop is the one the trusted proxy added; earlier ones are what
    the client claimed.
    """
    if forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer


def route_path(path: str, root_path: str) -> str:
    """``path`` without the mount prefix ``root_path``, when it carries it.

    Servers and frameworks differ on whether an ASGI ``path`` includes
    ``root_path`` (uvicorn and Starlette's ``Mount`` do today, older servers
    did not); routers strip it when it is there, and so do we. The prefix
    must end at a segment boundary: ``/app`` is not a prefix of ``/apple``.
    """
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if not rest:
            return "/"
        if rest[0] == "/":
            return rest
    return path


class Proceed:
    """Call the app with this session (or none, and why), then append these cookies."""

    __slots__ = ("error", "session", "set_cookies")

    def __init__(
        self,
        session: Session | None,
        error: CrossmintAuthError | None,
        set_cookies: list[str],
    ) -> None:
        self.session = session
        self.error = error
        self.set_cookies = set_cookies


_NO_COOKIES_PROCEED = Proceed(None, None, [])


def _without_default_port(host: str) -> str:
    """``example.com:443`` and ``example.com`` are one origin host for our purpose."""
    for default in (":80", ":443"):
        if host.endswith(default):
            return host[: -len(default)]
    return host


class Gate:
    """The middleware's decisions for one app; both layers hold one.

    See :class:`~crossmint_wsgi.CrossmintWSGIMiddleware` for the parameters.
    """

    def __init__(
        self,
        core: AuthCore,
        *,
        refresh_path: str | None = "/refresh",
        logout_path: str | None = "/logout",
        protect: str | Iterable[str] | Callable[[str], bool] = (),
        login_url: str | None = None,
        allowed_origins: Iterable[str] = (),
        max_body: int = MAX_BODY,
        retry_after: int = 5,
        client_ip_header: str | None = None,
    ) -> None:
        self.core = core
        self.refresh_path = refresh_path
        self.logout_path = logout_path
        self.protect = PathMatcher(protect)
        # None when nothing is protected: one test per request instead of a call.
        self._protects = self.protect if self.protect else None
        self.login_url = login_url
        self.allowed_origins = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)
        self.max_body = max_body
        self.retry_after = retry_after
        #: The header a trusted proxy puts the client's address in, lower case.
        self.client_ip_header = client_ip_header.lower() if client_ip_header else None
        self._post_paths = frozenset(p for p in (refresh_path, logout_path) if p)
        #: Sessions verified moments ago: a returning browser costs a lookup.
        self.recent: RecentSessions[Proceed] = RecentSessions(
            core.session_budget, core.tokens.max_size, core.revoked
        )
        self._clock = core.clock

    # -- the entry points ---------------------------------------------------------------

    def shortcut(
        self, method: str, path: str, cookie: str | bytes | None, root_path: str = ""
    ) -> Proceed | None:
        """The decision for requests that need neither I/O nor parsing, or ``None``.

        Most requests of an app end here: no auth cookie on an unprotected
        path, or a cookie header whose session was verified moments ago.
        Both layers try this before building an :class:`HttpRequest`.
        """
        route = route_path(path, root_path) if root_path else path
        if method == "POST" and (route in self._post_paths or path in self._post_paths):
            return None
        if cookie:
            found = self.recent.find(cookie, self._clock())
            if found is not None:
                return found
            if (b"crossmint-" if isinstance(cookie, bytes) else "crossmint-") in cookie:  # type: ignore[operator]
                return None
        if self._is_protected(route, path):
            return None
        return _NO_COOKIES_PROCEED

    def _remember(self, request: HttpRequest, proceed: Proceed) -> None:
        session = proceed.session
        if session is None or session.refreshed:
            return
        deadline = float(session.claims["exp"]) + self.core.leeway
        self.recent.remember(
            request.cookie or "", request.raw_cookie, proceed, session, deadline, self._clock()
        )

    def handle(self, request: HttpRequest) -> Generator[Effect, Any, Answer | Proceed]:
        """Decide an HTTP request: answer it, or let the app run with a session."""
        route = request.route_path
        if request.method == "POST":
            if self.refresh_path in (route, request.path):
                return (yield from self._refresh_route(request))
            if self.logout_path in (route, request.path):
                return (yield from self._logout_route(request))
        protected = self._is_protected(route, request.path)
        resolution = yield from self._resolve(request, protected)
        if resolution is None:
            return _NO_COOKIES_PROCEED
        if resolution.session is None and protected:
            return self._refuse(request, resolution)
        proceed = Proceed(
            resolution.session, resolution.error, self._cookies_for(request, resolution)
        )
        if request.cookie is not None:
            self._remember(request, proceed)
        return proceed

    def handle_websocket(self, request: HttpRequest) -> Generator[Effect, Any, Proceed | None]:
        """Decide a websocket handshake: ``None`` means close it (protected, no session).

        No cookie can be set on a websocket: a refreshed session is published
        but its new cookies are dropped. A handshake from another site gets no
        session: browsers send cookies with cross-site websockets, so the
        cookies alone prove nothing.
        """
        protected = self._is_protected(request.route_path, request.path)
        if not self._same_origin(request):
            if protected:
                return None
            error = CrossmintAuthError(
                ErrorCode.FORBIDDEN_ORIGIN, "cross-site websockets get no session"
            )
            return Proceed(None, error, [])
        resolution = yield from self._resolve(request, protected)
        if resolution is None:
            return _NO_COOKIES_PROCEED
        if resolution.session is None and protected:
            return None
        return Proceed(resolution.session, resolution.error, [])

    # -- pieces -------------------------------------------------------------------------

    def _is_protected(self, route: str, path: str) -> bool:
        """Whether the app path ``route`` is protected, failing closed.

        ``path`` as the server gave it is checked too when it differs: an app
        that routes on the raw ``scope["path"]`` under a mount sees that one.
        """
        protects = self._protects
        if protects is None:
            return False
        return protects(route) or (route is not path and protects(path))

    def _resolve(
        self, request: HttpRequest, protected: bool
    ) -> Generator[Effect, Any, Resolution | None]:
        """The request's session, or ``None`` when it has no auth cookie and needs none."""
        cookies = parse_auth_cookie_header(request.cookie, self.core.crossmint.project_id)
        if not cookies and not protected:
            return None
        return (yield from self.core.resolve(cookies, request.client))

    def _cookies_for(self, request: HttpRequest, resolution: Resolution) -> list[str]:
        session = resolution.session
        if session is not None:
            if session.refreshed and session.refresh_token is not None:
                material = AuthMaterial(session.jwt, session.refresh_token, session.user)
                return self.core.session_cookies(
                    material, secure=request.secure, names=resolution.cookies.names
                )
            return []
        if resolution.error is not None and resolution.error.clears_cookies:
            return self.core.clear_cookies(secure=request.secure, names=resolution.cookies.names)
        return []

    def _refuse(self, request: HttpRequest, resolution: Resolution) -> Answer:
        error = resolution.error or CrossmintAuthError(
            ErrorCode.MISSING_SESSION, "the request carries no session"
        )
        cookies = self._cookies_for(request, resolution)
        if (
            error.code is not ErrorCode.UPSTREAM_UNAVAILABLE
            and self.login_url
            and request.method in ("GET", "HEAD")
            and "text/html" in (request.accept or "")
        ):
            target = request.full_path + (f"?{request.query}" if request.query else "")
            joiner = "&" if "?" in self.login_url else "?"
            # surrogatepass: a path a server decoded loosely must not raise here.
            quoted = quote(target, safe="/", errors="surrogatepass")
            location = f"{self.login_url}{joiner}next={quoted}"
            return redirect(location, cookies=cookies)
        return refusal(error, cookies=cookies, retry_after=self.retry_after)

    def _same_origin(self, request: HttpRequest) -> bool:
        """Whether a POST to an auth route comes from this site or an allowed origin.

        Cookies are credentials: a cross-site page must not trigger a refresh
        or a logout with them.
        """
        origin = request.origin
        if origin is not None:
            origin = origin.rstrip("/").lower()
            if origin in self.allowed_origins:
                return True
            if origin == "null" or request.host is None:
                return False
            try:
                netloc = urlsplit(origin).netloc
            except ValueError:
                # Not a URL (``http://[::1``): no site of ours sent it.
                return False
            # Host only, not scheme: behind a TLS-terminating proxy the app may
            # see http while the browser's Origin says https.
            return _without_default_port(netloc) == _without_default_port(request.host.lower())
        # No Origin: a non-browser client, or a browser that would send Sec-Fetch-Site.
        return request.fetch_site in (None, "same-origin", "none")

    def _why_cross_site(self, request: HttpRequest) -> str:
        """What was compared, for the deployer behind a proxy that rewrites ``Host``.

        Neither header is a secret; both are shortened, and JSON escapes them.
        """
        start = "cross-site requests may not use the session routes: "
        if request.origin is None:
            return start + f"Sec-Fetch-Site is {request.fetch_site!r:.40}"
        allowed = ", ".join(sorted(self.allowed_origins)) or "none"
        return start + (
            f"Origin {request.origin!r:.120} is not this host ({request.host!r:.120})"
            f" nor in allowed_origins ({allowed:.200})"
        )

    def _check_post(self, request: HttpRequest) -> Answer | None:
        if not self._same_origin(request):
            error = CrossmintAuthError(ErrorCode.FORBIDDEN_ORIGIN, self._why_cross_site(request))
            return refusal(error)
        if request.content_length is not None and request.content_length > self.max_body:
            return invalid_request(f"body is larger than {self.max_body} bytes")
        return None

    def _refresh_route(self, request: HttpRequest) -> Generator[Effect, Any, Answer]:
        refused = self._check_post(request)
        if refused is not None:
            return refused
        body = yield ReadBody(self.max_body)
        cookies = parse_auth_cookie_header(request.cookie, self.core.crossmint.project_id)
        return (
            yield from refresh_answer(
                self.core,
                body,
                cookies,
                secure=request.secure,
                limit=self.max_body,
                retry_after=self.retry_after,
                client=request.client,
            )
        )

    def _logout_route(self, request: HttpRequest) -> Generator[Effect, Any, Answer]:
        refused = self._check_post(request)
        if refused is not None:
            return refused
        cookies: AuthCookies = parse_auth_cookie_header(
            request.cookie, self.core.crossmint.project_id
        )
        if cookies.refresh or cookies.jwt:
            yield from self.core.logout(cookies.refresh, cookies.jwt, request.client)
        return json_answer(
            200,
            {"ok": True},
            cookies=self.core.clear_cookies(secure=request.secure, names=cookies.names),
        )
