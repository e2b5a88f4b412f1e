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
from crossmint_wsgi.testing.demo import (
    UserEmails,
    demo_crossmint,
    home_page,
    login_page,
    me_payload,
    protected_page,
)

demo = demo_crossmint()
auth = AsyncCrossmintAuth(demo.crossmint)
print(f"quart_app: using {demo.describe()}", file=sys.stderr, flush=True)

app = Quart(__name__)
# Wrap the ASGI app, not the Quart object, so `app.route` and friends keep working.
# (Quart types its scopes as TypedDicts, the middleware as plain mappings: hence the ignores.)
app.asgi_app = CrossmintASGIMiddleware(  # type: ignore[method-assign,assignment]
    app.asgi_app,  # type: ignore[arg-type]
    auth,
    protect=["/protected/:path*", "/ws/private/:path*"],
    login_url="/login",
)


# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


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
    return home_page("Quart", session.user_id if session else None)


@app.get("/protected")
@session_required
async def protected(session: Session) -> str:
    return protected_page(session.user_id, await emails.of_async(session, auth))


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
    return jsonify(me_payload(session.user_id, await emails.of_async(session, auth)))


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
