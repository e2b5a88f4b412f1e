"""CrossmintWSGIMiddleware: Crossmint sessions in front of any WSGI app."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .answers import Answer, refusal
from .auth import CrossmintAuth
from .caching import uncacheable
from .errors import CrossmintAuthError, ErrorCode
from .middleware import GatedMiddleware
from .models import Session
from .routes import HttpRequest, client_address

if TYPE_CHECKING:
    # WSGIApplication is named in the base class's quoted type arguments.
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment  # noqa: F401

__all__ = ["CrossmintWSGIMiddleware", "get_session", "require_session"]

SESSION_KEY = "crossmint.session"
ERROR_KEY = "crossmint.error"
#: Published with an ``UPSTREAM_UNAVAILABLE`` error: the middleware's ``retry_after``.
RETRY_KEY = "crossmint.retry_after"

F = TypeVar("F", bound=Callable[..., Any])


def _content_length(environ: WSGIEnvironment) -> int | None:
    value = environ.get("CONTENT_LENGTH")
    if not value:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        return None


def _read_body(environ: WSGIEnvironment, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the body; ``None`` when there is more."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = _content_length(environ)
    if length is not None:
        # Read exactly the declared length; a truncated body fails as bad JSON.
        return stream.read(length) if length <= limit else None
    if (
        environ.get("wsgi.input_terminated")
        or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        data = stream.read(limit + 1)
        return data if len(data) <= limit else None
    # No length and no terminated stream: reading could block, treat as empty.
    return b""


def _host(environ: WSGIEnvironment) -> str | None:
    host = environ.get("HTTP_HOST")
    if host:
        return str(host)
    name = environ.get("SERVER_NAME")
    if not name:
        return None
    port = environ.get("SERVER_PORT", "")
    default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    return f"{name}:{port}" if port and port != default else str(name)


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _send(answer: Answer, start_response: StartResponse) -> list[bytes]:
    start_response(answer.status_line, answer.headers)
    return [answer.body]


class CrossmintWSGIMiddleware(GatedMiddleware["WSGIApplication", CrossmintAuth]):
    """Crossmint sessions for any WSGI app (Flask, Bottle, Django, ...).

    Every request gets ``environ["crossmint.session"]`` (a :class:`Session`
    or ``None``) and ``environ["crossmint.error"]`` (a
    :class:`~crossmint_wsgi.CrossmintAuthError` saying why not, or ``None``).
    A session refreshed on the way has its new cookies appended to the app's
    own headers. ``POST refresh_path`` and ``POST logout_path`` are answered
    here, for Crossmint's browser SDK, without calling the app.

    .. code-block:: python

        auth = CrossmintAuth(create_crossmint(os.environ["SERVER_CROSSMINT_API_KEY"]))
        app.wsgi_app = CrossmintWSGIMiddleware(app.wsgi_app, auth, protect=["/account/:path*"])

    :param app: the WSGI application to wrap.
    :param auth: the :class:`~crossmint_wsgi.CrossmintAuth` that verifies and refreshes.
    :param refresh_path: the browser SDK's refresh route; ``None`` turns it off.
    :param logout_path: the browser SDK's logout route; ``None`` turns it off.
    :param protect: path patterns in the Next.js matcher syntax
        (``"/dashboard/:path*"``), or ``callable(path) -> bool``. A protected
        request without a session is refused: 401 JSON, 503 when Crossmint is
        unavailable, or a redirect to ``login_url`` for browsers.
    :param login_url: where browsers asking for HTML are sent from a
        protected path, with the original path in ``next``.
    :param allowed_origins: other origins (``"https://app.example.com"``)
        allowed to POST to the two routes; the app's own origin always is.
    :param max_body: the largest body the two routes read, in bytes.
    :param retry_after: the ``Retry-After`` seconds sent with a ``503``.
    :param client_ip_header: the header your trusted proxy writes the
        client's address into (``"X-Forwarded-For"``: its last value is
        used); without it, the address is the peer's (``REMOTE_ADDR``). It
        keys the bound on refused refresh tokens per client.
    """

    AUTH = CrossmintAuth

    def _forwarded(self, environ: WSGIEnvironment) -> str | None:
        header = self.gate.client_ip_header
        return environ.get(_environ_key(header)) if header else None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        cookie = environ.get("HTTP_COOKIE")
        quick = self.gate.shortcut(method, path, cookie)
        if quick is not None:
            environ[SESSION_KEY] = quick.session
            environ[ERROR_KEY] = quick.error
            return self.app(environ, start_response)
        request = HttpRequest(
            method,
            path,
            query=environ.get("QUERY_STRING", ""),
            scheme=environ.get("wsgi.url_scheme", "http"),
            host=_host(environ),
            cookie=cookie,
            origin=environ.get("HTTP_ORIGIN"),
            fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
            accept=environ.get("HTTP_ACCEPT"),
            content_length=_content_length(environ),
            client=client_address(environ.get("REMOTE_ADDR"), self._forwarded(environ)),
            script_name=environ.get("SCRIPT_NAME", "").rstrip("/"),
        )
        outcome = self.auth.run(self.gate.handle(request), lambda limit: _read_body(environ, limit))
        if isinstance(outcome, Answer):
            return _send(outcome, start_response)
        environ[SESSION_KEY] = outcome.session
        environ[ERROR_KEY] = outcome.error
        if outcome.error is not None and outcome.error.code is ErrorCode.UPSTREAM_UNAVAILABLE:
            environ[RETRY_KEY] = self.gate.retry_after
        cookies = outcome.set_cookies
        if not cookies:
            return self.app(environ, start_response)

        def start_with_cookies(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            # Append, never replace: the app's own cookies must survive. An
            # answer with our cookies must not be kept by a shared cache.
            return start_response(
                status,
                uncacheable([*headers, *(("Set-Cookie", cookie) for cookie in cookies)]),
                exc_info,
            )

        return self.app(environ, start_with_cookies)


def get_session(source: Any) -> Session | None:
    """The session the middleware published for a request.

    :param source: a WSGI environ, or a request object with an ``environ``
        attribute (Flask, Bottle, werkzeug).
    """
    environ = source if isinstance(source, dict) else getattr(source, "environ", None)
    if not isinstance(environ, dict):
        raise TypeError("pass a WSGI environ or a request object with .environ")
    if SESSION_KEY not in environ:
        raise RuntimeError(
            "no Crossmint session in this environ: is CrossmintWSGIMiddleware installed?"
        )
    session = environ[SESSION_KEY]
    return session if isinstance(session, Session) else None


def _current_environ(args: tuple[Any, ...]) -> dict[str, Any]:
    for arg in args:
        if isinstance(arg, dict) and "wsgi.version" in arg:
            return arg
    # Flask and Bottle keep the current request in a context local.
    try:
        import flask

        if flask.has_request_context():
            return flask.request.environ
    except ImportError:
        pass
    try:
        import bottle

        environ = bottle.request.environ
        if isinstance(environ, dict) and "wsgi.version" in environ:
            return environ
    except (ImportError, RuntimeError):
        pass
    raise RuntimeError(
        "require_session: no current WSGI request found (Flask and Bottle views only;"
        " Django has crossmint_wsgi.contrib.django.require_session)"
    )


def require_session(view: F) -> F:
    """Decorate a Flask or Bottle view so it runs only with a session.

    Without one it answers 401 JSON with the error code (or 503 when
    Crossmint is unavailable) instead of calling the view. The session is
    passed to the view as the keyword argument ``session`` when the view
    accepts one.
    """
    import inspect

    accepts_session = "session" in inspect.signature(view).parameters

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        environ = _current_environ(args)
        session = get_session(environ)
        if session is None:
            return _refusal(environ.get(ERROR_KEY), environ.get(RETRY_KEY, 5))
        if accepts_session:
            kwargs["session"] = session
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _refusal(error: CrossmintAuthError | None, retry_after: int) -> Any:
    answer = refusal(error, retry_after=retry_after)
    try:
        import flask

        if flask.has_request_context():
            return flask.Response(answer.body, status=answer.status, headers=answer.headers)
    except ImportError:
        pass
    import bottle

    return bottle.HTTPResponse(answer.body, status=answer.status, headers=answer.headers)
