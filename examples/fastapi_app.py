"""A FastAPI app behind CrossmintASGIMiddleware, with the session as a dependency.

Serve it with ``python examples/fastapi_app.py`` (uvicorn on 127.0.0.1:$PORT,
default 8000) or ``uvicorn --app-dir examples fastapi_app:app``. Crossmint
comes from :func:`crossmint_wsgi.testing.demo.demo_crossmint`.

Routes take ``session: CrossmintSession`` (401/503 JSON without one, exactly
as the middleware answers) or ``session: OptionalCrossmintSession`` (``None``
for a visitor); ``/docs`` shows the session cookie as the security scheme.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware, get_asgi_session
from crossmint_wsgi.contrib.fastapi import (
    CrossmintSession,
    OptionalCrossmintSession,
    add_exception_handler,
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
print(f"fastapi_app: using {demo.describe()}", file=sys.stderr, flush=True)

# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await auth.aclose()


app = FastAPI(title="crossmint-wsgi FastAPI example", lifespan=lifespan)
app.add_middleware(
    CrossmintASGIMiddleware,
    auth=auth,
    protect=["/protected/:path*", "/ws/private/:path*"],
    login_url="/login",
)
# Refusals from CrossmintSession read exactly like the middleware's own.
add_exception_handler(app)


@app.get("/", response_class=HTMLResponse)
async def home(session: OptionalCrossmintSession) -> str:
    return home_page("FastAPI", session.user_id if session else None)


@app.get("/protected", response_class=HTMLResponse)
async def protected(session: CrossmintSession) -> str:
    # The middleware already protects this path; the dependency states it here too.
    return protected_page(session.user_id, await emails.of_async(session, auth))


@app.get("/login", response_class=HTMLResponse)
async def login(next: str = "/") -> str:
    return login_page(next)


@app.post("/demo/one-time-secret", response_model=None)
async def one_time_secret() -> dict[str, str] | JSONResponse:
    try:
        # Talks to the emulator over blocking HTTP: keep it off the event loop.
        secret = await anyio.to_thread.run_sync(demo.one_time_secret)
    except RuntimeError as problem:
        return JSONResponse({"error": "NOT_FOUND", "message": str(problem)}, status_code=404)
    return {"secret": secret}


@app.get("/api/me")
async def me(session: CrossmintSession) -> dict[str, Any]:
    return me_payload(session.user_id, await emails.of_async(session, auth))


@app.get("/api/hello")
def hello(request: Request, session: OptionalCrossmintSession) -> dict[str, str]:
    # A sync route: FastAPI runs it in a thread; the dependency works the same.
    return {"hello": session.user_id if session else "stranger", "path": request.url.path}


@app.websocket("/ws")
@app.websocket("/ws/private")
async def websocket_user(websocket: WebSocket) -> None:
    # Dependencies that refuse are for HTTP; a websocket reads its handshake's session.
    session = get_asgi_session(websocket)
    await websocket.accept()
    await websocket.send_text(session.user_id if session else "anonymous")
    await websocket.close()


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
