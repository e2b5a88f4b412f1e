"""A Quart app behind CrossmintASGIMiddleware.

Serve it with ``python examples/quart_app.py`` (uvicorn on 127.0.0.1:$PORT,
default 8000) or ``uvicorn --app-dir examples quart_app:app``. Crossmint
comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`.

Quart's ``request`` and ``websocket`` carry the ASGI scope as ``.scope``, so
``get_asgi_session(request)`` reads what the middleware published; the
``@session_required`` decorator below answers 401 JSON without a session.
"""

from __future__ import annotations

import functools
import html
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from quart import Quart, jsonify, request, websocket

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuthError,
    ErrorCode,
    Session,
    get_asgi_session,
)
from crossmint_wsgi.testing.demo import DemoCrossmint, demo_crossmint, login_page, page


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
print(f"quart_app: using {describe(demo)}", file=sys.stderr, flush=True)

app = Quart(__name__)
# Wrap the ASGI app, not the Quart object, so `app.route` and friends keep working.
# (Quart types its scopes as TypedDicts, the middleware as plain mappings: hence the ignores.)
app.asgi_app = CrossmintASGIMiddleware(  # type: ignore[method-assign,assignment]
    app.asgi_app,  # type: ignore[arg-type]
    auth,
    protect=["/protected/:path*", "/ws/private/:path*"],
    login_url="/login",
)


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


def session_required(
    view: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """Run ``view(session=...)`` only with a session; else 401 JSON (503 if Crossmint is down)."""

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        session = get_asgi_session(request)
        if session is None:
            error = request.scope.get("state", {}).get("crossmint_error")
            if not isinstance(error, CrossmintAuthError):
                error = CrossmintAuthError(
                    ErrorCode.MISSING_SESSION, "the request carries no session"
                )
            unavailable = error.code is ErrorCode.UPSTREAM_UNAVAILABLE
            headers = {"Retry-After": "5"} if unavailable else {}
            payload = jsonify(error=error.code.value, message=error.message)
            return payload, 503 if unavailable else 401, headers
        return await view(*args, session=session, **kwargs)

    return wrapper


@app.get("/")
async def home() -> str:
    session = get_asgi_session(request)
    if session is None:
        body = "<p>Not signed in.</p>"
    else:
        body = f"<p>Signed in as <code>{html.escape(session.user_id)}</code>.</p>"
    return page("Quart", body + '<p><a href="/protected">Open the protected page</a></p>')


@app.get("/protected")
@session_required
async def protected(session: Session) -> str:
    return await protected_html(session)


@app.get("/login")
async def login() -> str:
    return login_page(request.args.get("next", "/"))


@app.post("/demo/one-time-secret")
async def one_time_secret() -> Any:
    try:
        # Talks to the emulator over blocking HTTP: keep it off the event loop.
        secret = await anyio.to_thread.run_sync(demo.one_time_secret)
    except RuntimeError as problem:
        return jsonify(error="NOT_FOUND", message=str(problem)), 404
    return jsonify(secret=secret)


@app.get("/api/me")
@session_required
async def me(session: Session) -> Any:
    return jsonify(user_id=session.user_id, email=await email_of(session))


@app.websocket("/ws")
@app.websocket("/ws/private")
async def websocket_user() -> None:
    session = get_asgi_session(websocket)
    await websocket.accept()
    await websocket.send(session.user_id if session else "anonymous")
    await websocket.close(1000)


@app.after_serving
async def close_auth() -> None:
    await auth.aclose()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
