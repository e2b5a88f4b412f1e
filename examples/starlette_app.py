"""A Starlette app behind CrossmintASGIMiddleware.

Serve it with ``python examples/starlette_app.py`` (uvicorn on
127.0.0.1:$PORT, default 8000) or ``uvicorn --app-dir examples starlette_app:app``.
Crossmint comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`.

Endpoints read the session with ``get_asgi_session(request)`` (or
``request.state.crossmint_session``); ``@require_asgi_session`` answers
401 JSON for them when there is none and passes the session in.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    Session,
    get_asgi_session,
    require_asgi_session,
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
print(f"starlette_app: using {demo.describe()}", file=sys.stderr, flush=True)


# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


async def home(request: Request) -> Response:
    session = get_asgi_session(request)
    return HTMLResponse(home_page("Starlette", session.user_id if session else None))


@require_asgi_session
async def protected(request: Request, session: Session) -> Response:
    # The middleware already protects this path; the decorator states it here too.
    email = await emails.of_async(session, auth)
    return HTMLResponse(protected_page(session.user_id, email))


async def login(request: Request) -> Response:
    return HTMLResponse(login_page(request.query_params.get("next", "/")))


async def one_time_secret(request: Request) -> Response:
    try:
        # Talks to the emulator over blocking HTTP: keep it off the event loop.
        secret = await anyio.to_thread.run_sync(demo.one_time_secret)
    except RuntimeError as problem:
        return JSONResponse({"error": "NOT_FOUND", "message": str(problem)}, status_code=404)
    return JSONResponse({"secret": secret})


@require_asgi_session
async def me(request: Request, session: Session) -> Response:
    return JSONResponse(me_payload(session.user_id, await emails.of_async(session, auth)))


async def websocket_user(websocket: WebSocket) -> None:
    session = get_asgi_session(websocket)
    await websocket.accept()
    await websocket.send_text(session.user_id if session else "anonymous")
    await websocket.close()


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
    # Lifespan state is shared by every request; the middleware copies it, never writes it.
    yield {"app": "starlette_app"}
    await auth.aclose()


app = Starlette(
    routes=[
        Route("/", home),
        Route("/protected", protected),
        Route("/login", login),
        Route("/demo/one-time-secret", one_time_secret, methods=["POST"]),
        Route("/api/me", me),
        WebSocketRoute("/ws", websocket_user),
        WebSocketRoute("/ws/private", websocket_user),
    ],
    middleware=[
        Middleware(
            CrossmintASGIMiddleware,
            auth=auth,
            protect=["/protected/:path*", "/ws/private/:path*"],
            login_url="/login",
        )
    ],
    lifespan=lifespan,
)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
