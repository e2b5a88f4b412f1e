"""A Quart app behind CrossmintASGIMiddleware.

Serve it with ``python examples/quart_app.py`` (uvicorn on 127.0.0.1:$PORT,
default 8000) or ``uvicorn --app-dir examples quart_app:app``. Crossmint
comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`.

Quart's ``request`` and ``websocket`` carry the ASGI scope as ``.scope``, so
``get_asgi_session(request)`` reads what the middleware published (and
``current_session()`` reads it from Quart's ``request``); Quart views take no
request argument, so ``crossmint_wsgi.contrib.quart.require_session`` answers
401/503 JSON without a session, exactly as the middleware does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio.to_thread
from quart import Quart, jsonify, request, websocket

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware, Session, get_asgi_session
from crossmint_wsgi.contrib.quart import current_session, require_session
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
# (Quart types its scopes as TypedDicts, the middleware as plain mappings: hence the ignore.)
app.asgi_app = CrossmintASGIMiddleware(  # type: ignore[method-assign,assignment]
    app.asgi_app,
    auth,
    protect=["/protected/:path*", "/ws/private/:path*"],
    login_url="/login",
)


# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


@app.get("/")
async def home() -> str:
    session = current_session()
    return home_page("Quart", session.user_id if session else None)


@app.get("/protected")
@require_session
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
@require_session
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
