"""The ASGI server entry point of the differential router test: ``routers.serve_asgi:app``.

One uvicorn (or hypercorn) serves every ASGI framework, bare and wrapped:
the ``x-framework`` and ``x-variant`` request headers pick the app, so the
scope reaches it exactly as the server built it (``--root-path`` included).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware
from crossmint_wsgi.testing import connect_emulator
from routers import cookie_apps
from routers.apps import (
    PROTECT,
    configure_django,
    fastapi_app,
    quart_app,
    starlette_app,
    starlette_mount,
)

configure_django()

_auth = AsyncCrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))


def _variants(build: Callable[[], Any], mount: bool = False) -> dict[bytes, Any]:
    wrapped = CrossmintASGIMiddleware(build(), _auth, protect=PROTECT)
    if mount:
        return {b"bare": starlette_mount(build()), b"wrapped": starlette_mount(wrapped)}
    return {b"bare": build(), b"wrapped": wrapped}


APPS = {
    b"starlette": _variants(starlette_app),
    b"fastapi": _variants(fastapi_app),
    b"quart": _variants(quart_app),
    b"starlette-sub": _variants(starlette_app, mount=True),
    # The differential cookie test's /whoami views.
    b"cookies-starlette": _variants(cookie_apps.starlette_app),
    b"cookies-fastapi": _variants(cookie_apps.fastapi_app),
    b"cookies-quart": _variants(cookie_apps.quart_app),
    b"cookies-django": _variants(cookie_apps.django_asgi_app),
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rpartition(".")[2]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    headers = dict(scope["headers"])
    framework = APPS.get(headers.get(b"x-framework", b""))
    if framework is None:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"pick a framework"})
        return
    await framework[headers.get(b"x-variant", b"bare")](scope, receive, send)
