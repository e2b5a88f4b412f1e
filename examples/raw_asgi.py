"""A bare ASGI app, no framework, behind CrossmintASGIMiddleware.

Serve it with any of::

    python examples/raw_asgi.py                      # uvicorn on 127.0.0.1:$PORT (8000)
    uvicorn --app-dir examples raw_asgi:app
    hypercorn examples/raw_asgi.py:app               # add -k trio for the trio worker

Crossmint comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`:
``CROSSMINT_EMULATOR_URL``, else ``SERVER_CROSSMINT_API_KEY``, else an
emulator embedded in this process. Open ``/protected`` to sign in.

The middleware publishes the session in ``scope["state"]``; everything below
it only reads ``scope["state"]["crossmint_session"]``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuthError,
    Session,
)
from crossmint_wsgi.testing.demo import (
    UserEmails,
    demo_crossmint,
    home_page,
    login_page,
    me_payload,
    protected_page,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


demo = demo_crossmint()
auth = AsyncCrossmintAuth(demo.crossmint)
print(f"raw_asgi: using {demo.describe()}", file=sys.stderr, flush=True)

#: The lifespan state dict the server shares between requests (when it supports
#: lifespan state): the middleware must never write into it.
lifespan_state: dict[str, Any] = {}


def _session(scope: Scope) -> Session | None:
    session = scope.get("state", {}).get("crossmint_session")
    return session if isinstance(session, Session) else None


def _error(scope: Scope) -> CrossmintAuthError | None:
    error = scope.get("state", {}).get("crossmint_error")
    return error if isinstance(error, CrossmintAuthError) else None


# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _html(send: Send, document: str) -> None:
    await _respond(send, 200, document.encode(), "text/html; charset=utf-8", [])


async def _json(
    send: Send, payload: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _respond(send, status, json.dumps(payload).encode(), "application/json", headers or [])


async def _drain(receive: Receive) -> None:
    """Read the request body to its end (this app needs none of it)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    global lifespan_state
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            state = scope.get("state")
            if isinstance(state, dict):
                lifespan_state = state
                state["app"] = "raw_asgi"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await auth.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    session = _session(scope)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": session.user_id if session else "anonymous"})
    await send({"type": "websocket.close", "code": 1000})


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    method, path = scope["method"], scope["path"]
    session = _session(scope)
    error = _error(scope)
    print(
        f"{method} {path}: user={session.user_id if session else None}"
        f" error={error.code.value if error else None}",
        flush=True,
    )
    if method == "POST":
        await _drain(receive)

    if method == "GET" and path == "/":
        await _html(send, home_page("Raw ASGI", session.user_id if session else None))
    elif method == "GET" and path == "/protected":
        # The middleware protects this path: without a session the app never runs.
        assert session is not None
        email = await emails.of_async(session, auth)
        await _html(send, protected_page(session.user_id, email))
    elif method == "GET" and path == "/login":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        await _html(send, login_page(query.get("next", ["/"])[0]))
    elif method == "POST" and path == "/demo/one-time-secret":
        try:
            # Talks to the emulator over blocking HTTP: keep it off the event loop.
            secret = await anyio.to_thread.run_sync(demo.one_time_secret)
        except RuntimeError as problem:
            await _json(send, {"error": "NOT_FOUND", "message": str(problem)}, 404)
        else:
            await _json(send, {"secret": secret})
    elif method == "GET" and path == "/api/me":
        if session is None:
            code = error.code.value if error else "MISSING_SESSION"
            status = 503 if code == "UPSTREAM_UNAVAILABLE" else 401
            headers = [(b"retry-after", b"5")] if status == 503 else []
            message = error.message if error else "the request carries no session"
            await _json(send, {"error": code, "message": message}, status, headers)
        else:
            await _json(send, me_payload(session.user_id, await emails.of_async(session, auth)))
    elif method == "GET" and path == "/state":
        # What the server shares between requests, and what this request saw.
        await _json(
            send,
            {
                "lifespan": sorted(lifespan_state),
                "request": sorted(scope.get("state", {})),
            },
        )
    else:
        await _json(send, {"error": "NOT_FOUND", "message": f"no route for {path}"}, 404)


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app itself: plain ASGI, reading the session the middleware published."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    else:
        await _http(scope, receive, send)


app = CrossmintASGIMiddleware(
    bare_app,
    auth,
    protect=["/protected/:path*", "/ws/private/:path*"],
    login_url="/login",
)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
