"""CrossmintASGIMiddleware: Crossmint sessions in front of any ASGI app."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from .answers import Answer, refusal
from .auth import AsyncCrossmintAuth
from .caching import uncacheable
from .errors import CrossmintAuthError, ErrorCode
from .middleware import GatedMiddleware
from .models import Session
from .routes import HttpRequest, client_address

__all__ = [
    "ASGIApp",
    "CrossmintASGIMiddleware",
    "cookie_header",
    "get_asgi_error",
    "get_asgi_session",
    "require_asgi_session",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: frameworks type their scopes as TypedDicts, which a
# MutableMapping parameter would reject.
ASGIApp = Callable[..., Awaitable[None]]

SESSION_KEY = "crossmint_session"
ERROR_KEY = "crossmint_error"
#: Published with an ``UPSTREAM_UNAVAILABLE`` error: the middleware's ``retry_after``.
RETRY_KEY = "crossmint_retry_after"

F = TypeVar("F", bound=Callable[..., Any])


def cookie_header(scope: Scope) -> bytes | None:
    """The ``Cookie`` header of an ASGI scope as the server gave it, repeated ones joined."""
    # HTTP/2 may split cookies over several headers. Servers send lower-case names.
    found: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            found = value if found is None else found + b"; " + value
    return found


def _request_from_scope(
    scope: Scope, raw_cookie: bytes | None, client_ip_header: str | None = None
) -> HttpRequest:
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers", ()):
        name = name.lower()
        if name not in headers:
            headers[name] = value

    def header(name: bytes) -> str | None:
        value = headers.get(name)
        return value.decode("latin-1") if value is not None else None

    length_text = header(b"content-length")
    try:
        content_length = max(0, int(length_text)) if length_text else None
    except ValueError:
        content_length = None
    host = header(b"host")
    if host is None and scope.get("server"):
        server_host, server_port = scope["server"][0], scope["server"][1]
        host = f"{server_host}:{server_port}" if server_port else str(server_host)
    return HttpRequest(
        scope.get("method", "GET"),
        scope.get("path", "") or "/",
        query=scope.get("query_string", b"").decode("latin-1"),
        scheme=scope.get("scheme", "http"),
        host=host,
        cookie=raw_cookie.decode("latin-1") if raw_cookie is not None else None,
        raw_cookie=raw_cookie,
        origin=header(b"origin"),
        fetch_site=header(b"sec-fetch-site"),
        accept=header(b"accept"),
        content_length=content_length,
        root_path=scope.get("root_path", ""),
        client=client_address(
            peer[0] if (peer := scope.get("client")) else None,
            header(client_ip_header.encode("latin-1")) if client_ip_header else None,
        ),
    )


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the body; ``None`` as soon as there is more."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_answer(answer: Answer, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


def _publish(scope: Scope, session: Session | None, error: CrossmintAuthError | None) -> None:
    # scope["state"] is the lifespan state copied shallowly per request: give
    # this request its own dict instead of writing into the shared one.
    shared = scope.get("state")
    if shared:
        scope["state"] = {**shared, SESSION_KEY: session, ERROR_KEY: error}
    else:
        scope["state"] = {SESSION_KEY: session, ERROR_KEY: error}


class CrossmintASGIMiddleware(GatedMiddleware[ASGIApp, AsyncCrossmintAuth]):
    """Crossmint sessions for any ASGI app (Starlette, Quart, FastAPI, a raw callable).

    Publishes ``scope["state"]["crossmint_session"]`` (so
    ``request.state.crossmint_session`` works in Starlette) and
    ``scope["state"]["crossmint_error"]``. Takes the same parameters as
    :class:`~crossmint_wsgi.CrossmintWSGIMiddleware`, with an
    :class:`~crossmint_wsgi.AsyncCrossmintAuth`.

    Websockets get the session of their handshake cookies; a protected
    websocket path without a session is closed with code 1008 before the app
    sees it. A websocket cannot set cookies: when its JWT had expired, the
    session is refreshed and published, but the new cookies are dropped: the
    browser's next HTTP request gets them from the grace cache within
    ``refresh_grace`` (in the same process, or any with the Redis coordinator).
    A handshake from another origin gets no session.
    """

    AUTH = AsyncCrossmintAuth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # The common case inline, cookie_header and _publish written out:
            # every call saved is a few percent of a hello world's cost.
            cookie: bytes | None = None
            for name, value in scope.get("headers", ()):
                if name == b"cookie":
                    cookie = value if cookie is None else cookie + b"; " + value
            quick = self.gate.shortcut(
                scope.get("method", "GET"),
                scope.get("path", "") or "/",
                cookie,
                scope.get("root_path", ""),
            )
            if quick is not None:
                shared = scope.get("state")
                if shared:
                    _publish(scope, quick.session, quick.error)
                else:
                    scope["state"] = {SESSION_KEY: quick.session, ERROR_KEY: quick.error}
                await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send, cookie)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send, cookie: bytes | None) -> None:
        request = _request_from_scope(scope, cookie, self.gate.client_ip_header)

        async def read_body(limit: int) -> bytes | None:
            return await _read_body(receive, limit)

        outcome = await self.auth.run(self.gate.handle(request), read_body)
        if isinstance(outcome, Answer):
            await _send_answer(outcome, send)
            return
        _publish(scope, outcome.session, outcome.error)
        if outcome.error is not None and outcome.error.code is ErrorCode.UPSTREAM_UNAVAILABLE:
            scope["state"][RETRY_KEY] = self.gate.retry_after
        if not outcome.set_cookies:
            await self.app(scope, receive, send)
            return
        extra = [("set-cookie", cookie) for cookie in outcome.set_cookies]

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Append, never replace: the app's own cookies must survive. An
                # answer with our cookies must not be kept by a shared cache.
                message = dict(message)
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", ())
                ]
                message["headers"] = [
                    (k.lower().encode("latin-1"), v.encode("latin-1"))
                    for k, v in uncacheable([*headers, *extra])
                ]
            await send(message)

        await self.app(scope, receive, send_with_cookies)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _request_from_scope(scope, cookie_header(scope), self.gate.client_ip_header)
        outcome = await self.auth.run(self.gate.handle_websocket(request))
        if outcome is None:
            # Policy violation, before the app or an accept.
            await send({"type": "websocket.close", "code": 1008, "reason": "no Crossmint session"})
            return
        _publish(scope, outcome.session, outcome.error)
        await self.app(scope, receive, send)


def get_asgi_session(source: Any) -> Session | None:
    """The session the middleware published for a request.

    :param source: an ASGI scope, or a request or websocket object with a
        ``scope`` attribute (Starlette, FastAPI, Quart).
    """
    scope = source if isinstance(source, MutableMapping) else getattr(source, "scope", None)
    if not isinstance(scope, MutableMapping):
        raise TypeError("pass an ASGI scope or a request object with .scope")
    state = scope.get("state") or {}
    if SESSION_KEY not in state:
        raise RuntimeError(
            "no Crossmint session in this scope: is CrossmintASGIMiddleware installed?"
        )
    session = state[SESSION_KEY]
    return session if isinstance(session, Session) else None


def get_asgi_error(source: Any) -> CrossmintAuthError | None:
    """Why the request has no session, as published by the middleware."""
    scope = source if isinstance(source, MutableMapping) else getattr(source, "scope", None)
    state = (scope or {}).get("state") or {}
    error = state.get(ERROR_KEY)
    return error if isinstance(error, CrossmintAuthError) else None


def require_asgi_session(view: F) -> F:
    """Decorate an async Starlette endpoint ``view(request)`` so it runs only with a session.

    Without one it answers 401 JSON (503 when Crossmint is unavailable).
    FastAPI routes read their parameters as a request body: use
    :mod:`crossmint_wsgi.contrib.fastapi`'s dependencies there, and
    :mod:`crossmint_wsgi.contrib.quart` for Quart views.
    The session is passed as the keyword ``session`` when the view takes it.
    """
    import inspect

    accepts_session = "session" in inspect.signature(view).parameters

    @functools.wraps(view)
    async def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        session = get_asgi_session(request)
        if session is None:
            state = request.scope.get("state") or {}
            answer = refusal(get_asgi_error(request), retry_after=state.get(RETRY_KEY, 5))
            from starlette.responses import Response

            return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))
        if accepts_session:
            kwargs["session"] = session
        return await view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
