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

import html
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
from crossmint_wsgi.testing.demo import DemoCrossmint, demo_crossmint, login_page, page

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def describe(demo: DemoCrossmint) -> str:
    """Which Crossmint this app uses, for the start-up line; never the API key."""
    project = demo.crossmint.project_id
    if demo.emulator is not None:
        return f"embedded Crossmint emulator at {demo.emulator_url} (project {project})"
    if demo.emulator_url is not None:
        return f"Crossmint emulator at {demo.emulator_url} (project {project})"
    where = f"{demo.crossmint.environment.value} at {demo.crossmint.base_url}"
    return f"Crossmint {where} (project {project})"


demo = demo_crossmint()
auth = AsyncCrossmintAuth(demo.crossmint)
print(f"raw_asgi: using {describe(demo)}", file=sys.stderr, flush=True)

#: The lifespan state dict the server shares between requests (when it supports
#: lifespan state): the middleware must never write into it.
lifespan_state: dict[str, Any] = {}


def _session(scope: Scope) -> Session | None:
    session = scope.get("state", {}).get("crossmint_session")
    return session if isinstance(session, Session) else None


def _error(scope: Scope) -> CrossmintAuthError | None:
    error = scope.get("state", {}).get("crossmint_error")
    return error if isinstance(error, CrossmintAuthError) else None


# Emails by user id: the JWT carries only the id, the user record has the rest.
_emails: dict[str, str | None] = {}


async def email_of(session: Session) -> str | None:
    """The user's email, when Crossmint knows one (fetched once per user)."""
    if session.user is not None:
        _emails[session.user_id] = session.user.email
    if session.user_id not in _emails:
        try:
            _emails[session.user_id] = (await auth.get_user(session.user_id)).email
        except CrossmintAuthError:
            return None  # Crossmint unreachable: show the page without it.
    return _emails[session.user_id]


async def protected_html(session: Session) -> str:
    """The protected page: who is signed in, and a logout button."""
    email = await email_of(session)
    body = f"<p>Signed in as <code id='user-id'>{html.escape(session.user_id)}</code></p>"
    if email:
        body += f"<p>Email: <code id='email'>{html.escape(email)}</code></p>"
    body += '<button id="logout" onclick="crossmintLogout()">Log out</button>'
    return page("Protected", body)


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


async def _html(send: Send, title: str, body_html: str, status: int = 200) -> None:
    await _respond(send, status, page(title, body_html).encode(), "text/html; charset=utf-8", [])


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
        if session is None:
            body = '<p>Not signed in.</p><p><a href="/protected">Open the protected page</a></p>'
        else:
            body = (
                f"<p>Signed in as <code>{html.escape(session.user_id)}</code>.</p>"
                '<p><a href="/protected">Open the protected page</a></p>'
            )
        await _html(send, "Raw ASGI", body)
    elif method == "GET" and path == "/protected":
        # The middleware protects this path: without a session the app never runs.
        assert session is not None
        protected = (await protected_html(session)).encode()
        await _respond(send, 200, protected, "text/html; charset=utf-8", [])
    elif method == "GET" and path == "/login":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        sign_in = login_page(query.get("next", ["/"])[0]).encode()
        await _respond(send, 200, sign_in, "text/html; charset=utf-8", [])
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
            await _json(send, {"user_id": session.user_id, "email": await email_of(session)})
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
