"""Crossmint sessions for Django: a middleware configured from settings, and a view decorator.

.. code-block:: python

    # settings.py
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "crossmint_wsgi.contrib.django.CrossmintMiddleware",
        ...
    ]
    CROSSMINT_API_KEY = os.environ["SERVER_CROSSMINT_API_KEY"]
    CROSSMINT_PROTECT = ["/account/:path*"]

Every request then carries ``request.crossmint_session`` (a
:class:`~crossmint_wsgi.Session` or ``None``) and ``request.crossmint_error``
(why not). ``POST /refresh`` and ``POST /logout`` are answered by the
middleware, before URL resolution (so CSRF middleware never sees them: the
middleware checks their origin itself). It runs sync under WSGI and the
test ``Client``, async under ASGI and the ``AsyncClient``.

Settings (only ``CROSSMINT_API_KEY`` or ``CROSSMINT_AUTH`` is needed):

==============================  ===============================================================
``CROSSMINT_API_KEY``           the server API key; the middleware builds its own auth from it
``CROSSMINT_BASE_URL``          with the key: another Crossmint URL
``CROSSMINT_APP_ID``            with the key: the app id sent to Crossmint
``CROSSMINT_AUTH_OPTIONS``      with the key: keyword arguments for the auth (``leeway``,
                                ``cookie_options``, ...)
``CROSSMINT_AUTH``              instead of the key: a ``CrossmintAuth`` or its dotted path;
                                under ASGI it is driven in a worker thread
``CROSSMINT_ASYNC_AUTH``        an ``AsyncCrossmintAuth`` or its dotted path, used under ASGI
``CROSSMINT_PROTECT``           path patterns (``"/account/:path*"``) or ``callable(path)``
``CROSSMINT_LOGIN_URL``         where browsers go from a protected path without a session
``CROSSMINT_REFRESH_PATH``      the refresh route (default ``"/refresh"``; ``None``: off)
``CROSSMINT_LOGOUT_PATH``       the logout route (default ``"/logout"``; ``None``: off)
``CROSSMINT_ALLOWED_ORIGINS``   other origins allowed to POST to the two routes
``CROSSMINT_MAX_BODY``          the largest body the two routes read, in bytes
``CROSSMINT_RETRY_AFTER``       the ``Retry-After`` seconds of a 503
==============================  ===============================================================

The middleware options mean what they mean for
:class:`~crossmint_wsgi.CrossmintWSGIMiddleware`; they are read in
:mod:`~crossmint_wsgi.contrib.django_conf`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Container
from http.cookies import Morsel, SimpleCookie
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from ..answers import Answer, refusal
from ..asgi import cookie_header
from ..auth import AsyncCrossmintAuth, CrossmintAuth
from ..auth_base import _AuthBase
from ..caching import uncacheable
from ..errors import CrossmintAuthError
from ..middleware import GatedMiddleware
from ..models import Session
from ..routes import HttpRequest as GateRequest
from ..routes import Proceed
from .django_conf import auth_for, middleware_options

__all__ = ["CrossmintMiddleware", "get_session", "require_session"]

F = TypeVar("F", bound=Callable[..., Any])
GetResponse = Callable[[HttpRequest], Any]

_MISSING = object()


# -- between Django and the gate ------------------------------------------------------------------


def _cookie(request: HttpRequest) -> str | bytes | None:
    """The Cookie header; under ASGI, the raw bytes of every Cookie header joined by ``"; "``.

    Django's ASGI request joins repeated headers (HTTP/2 splits cookies)
    with ``","``, which would glue a comma to a cookie's value.
    """
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        return cookie_header(scope)
    cookie = request.META.get("HTTP_COOKIE")
    return str(cookie) if cookie is not None else None


def _gate_request(request: HttpRequest, cookie: str | bytes | None) -> GateRequest:
    meta = request.META
    path = request.path or "/"
    info = request.path_info
    # Django's path is the mount prefix (SCRIPT_NAME, FORCE_SCRIPT_NAME) plus path_info.
    root_path = path[: -len(info)] if info and path.endswith(info) else ""
    length = meta.get("CONTENT_LENGTH")
    try:
        content_length = max(0, int(length)) if length else None
    except ValueError:
        content_length = None
    host = meta.get("HTTP_HOST")
    if not host and meta.get("SERVER_NAME"):
        port = str(meta.get("SERVER_PORT", ""))
        default = "443" if request.scheme == "https" else "80"
        host = f"{meta['SERVER_NAME']}:{port}" if port and port != default else meta["SERVER_NAME"]
    return GateRequest(
        request.method or "GET",
        path,
        root_path=root_path,
        query=meta.get("QUERY_STRING", ""),
        scheme=request.scheme or "http",
        host=host,
        cookie=cookie.decode("latin-1") if isinstance(cookie, bytes) else cookie,
        raw_cookie=cookie if isinstance(cookie, bytes) else None,
        origin=meta.get("HTTP_ORIGIN"),
        fetch_site=meta.get("HTTP_SEC_FETCH_SITE"),
        accept=meta.get("HTTP_ACCEPT"),
        content_length=content_length,
    )


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the body; ``None`` when there is more."""
    data = request.read(limit + 1)
    return data if len(data) <= limit else None


class _SetCookie(Morsel[str]):
    """A cookie that Django sends exactly as the library wrote it.

    Django keeps one header per name, so cookies travel in
    ``response.cookies``; re-rendering ours could change their attributes.
    """

    raw = ""

    def OutputString(self, attrs: Container[str] | None = None) -> str:
        return self.raw or super().OutputString(attrs)


def _add_cookie(response: HttpResponseBase, header: str) -> None:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(header)
    if len(parsed) != 1:
        raise ValueError("not a single Set-Cookie value")
    (morsel,) = parsed.values()
    cookie = _SetCookie()
    cookie.set(morsel.key, morsel.value, morsel.coded_value)
    cookie.update(morsel)
    cookie.raw = header
    response.cookies[morsel.key] = cookie


def _response(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        if name.lower() == "set-cookie":
            _add_cookie(response, value)
        else:
            response[name] = value
    return response


def _publish(
    request: HttpRequest, session: Session | None, error: CrossmintAuthError | None
) -> None:
    request.crossmint_session = session  # type: ignore[attr-defined]
    request.crossmint_error = error  # type: ignore[attr-defined]


def _finish(response: HttpResponseBase, cookies: list[str]) -> HttpResponseBase:
    if cookies:
        # An answer with our cookies must not be kept by a shared cache.
        mine = [(k, response[k]) for k in ("Cache-Control", "Vary") if response.has_header(k)]
        for name, value in uncacheable(mine):
            response[name] = value
    for header in cookies:
        _add_cookie(response, header)
    return response


# -- the middleware -------------------------------------------------------------------------------


class CrossmintMiddleware(GatedMiddleware[GetResponse, "CrossmintAuth | AsyncCrossmintAuth"]):
    """Crossmint sessions for Django, configured from the settings (see the module doc).

    Sync and async capable: Django runs it sync under WSGI and the test
    ``Client`` (with ``CROSSMINT_AUTH`` or the key), async under ASGI (with
    ``CROSSMINT_ASYNC_AUTH`` or the key, else ``CROSSMINT_AUTH`` in a thread).

    :raises ImproperlyConfigured: when the settings give no usable auth.
    """

    sync_capable = True
    async_capable = True
    #: Either kind: the settings give the one for the mode Django runs this in.
    AUTH = _AuthBase

    def __init__(self, get_response: GetResponse) -> None:
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        super().__init__(get_response, auth_for(self.is_async), **middleware_options())

    def _shortcut(self, request: HttpRequest, cookie: str | bytes | None) -> Proceed | None:
        path = request.path or "/"
        info = request.path_info
        return self.gate.shortcut(
            request.method or "GET",
            path,
            cookie,
            path[: -len(info)] if info and path.endswith(info) else "",
        )

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        cookie = _cookie(request)
        quick = self._shortcut(request, cookie)
        if quick is not None:
            _publish(request, quick.session, quick.error)
            return self.app(request)
        auth = self.auth
        assert isinstance(auth, CrossmintAuth)
        flow = self.gate.handle(_gate_request(request, cookie))
        outcome = auth.run(flow, lambda limit: _read_body(request, limit))
        if isinstance(outcome, Answer):
            return _response(outcome)
        _publish(request, outcome.session, outcome.error)
        return _finish(self.app(request), outcome.set_cookies)

    async def __acall__(self, request: HttpRequest) -> Any:
        cookie = _cookie(request)
        quick = self._shortcut(request, cookie)
        if quick is not None:
            _publish(request, quick.session, quick.error)
            return await self.app(request)
        auth = self.auth
        flow = self.gate.handle(_gate_request(request, cookie))
        outcome: Answer | Proceed
        if isinstance(auth, AsyncCrossmintAuth):

            async def read_body(limit: int) -> bytes | None:
                # Django's ASGI handler has received the whole body already.
                return _read_body(request, limit)

            outcome = await auth.run(flow, read_body)
        else:
            outcome = await sync_to_async(auth.run, thread_sensitive=False)(
                flow, lambda limit: _read_body(request, limit)
            )
        if isinstance(outcome, Answer):
            return _response(outcome)
        _publish(request, outcome.session, outcome.error)
        return _finish(await self.app(request), outcome.set_cookies)


# -- for views ------------------------------------------------------------------------------------


def get_session(request: HttpRequest) -> Session | None:
    """The session :class:`CrossmintMiddleware` published for ``request``, or ``None``.

    :raises RuntimeError: when the middleware is not in ``MIDDLEWARE``.
    """
    session = getattr(request, "crossmint_session", _MISSING)
    if session is _MISSING:
        raise RuntimeError(
            "no Crossmint session on this request: add"
            " 'crossmint_wsgi.contrib.django.CrossmintMiddleware' to MIDDLEWARE"
        )
    return session if isinstance(session, Session) else None


def _refused(request: HttpRequest, kwargs: dict[str, Any], accepts: bool) -> HttpResponse | None:
    session = get_session(request)
    if session is None:
        error = getattr(request, "crossmint_error", None)
        retry_after = getattr(settings, "CROSSMINT_RETRY_AFTER", None)
        answer = refusal(error) if retry_after is None else refusal(error, retry_after=retry_after)
        return _response(answer)
    if accepts:
        kwargs["session"] = session
    return None


def require_session(view: F) -> F:
    """Decorate a Django view (sync or async) so it runs only with a session.

    Without one it answers as the middleware does: 401 JSON, or 503 with
    ``Retry-After`` when Crossmint is unavailable. The session is passed as
    the keyword ``session`` when the view takes it. On a class-based view's
    method, use ``method_decorator(require_session)``.
    """
    accepts = "session" in inspect.signature(view).parameters

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = _refused(request, kwargs, accepts)
            if refused is not None:
                return refused
            return await view(request, *args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = _refused(request, kwargs, accepts)
        if refused is not None:
            return refused
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
