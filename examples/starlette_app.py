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
import html
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
    CrossmintAuthError,
    Session,
    get_asgi_session,
    require_asgi_session,
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
print(f"starlette_app: using {describe(demo)}", file=sys.stderr, flush=True)


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


async def home(request: Request) -> Response:
    session = get_asgi_session(request)
    if session is None:
        body = "<p>Not signed in.</p>"
    else:
        body = f"<p>Signed in as <code>{html.escape(session.user_id)}</code>.</p>"
    return HTMLResponse(
        page("Starlette", body + '<p><a href="/protected">Open the protected page</a></p>')
    )


@require_asgi_session
async def protected(request: Request, session: Session) -> Response:
    # The middleware already protects this path; the decorator states it here too.
    return HTMLResponse(await protected_html(session))


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
    return JSONResponse({"user_id": session.user_id, "email": await email_of(session)})


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
