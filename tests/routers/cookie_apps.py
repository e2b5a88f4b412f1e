"""One ``/whoami`` view per framework: what the app's own cookie reader and the middleware say.

The differential cookie test (``tests/test_cookie_differential.py``) asks each
framework, behind our middleware, for ``crossmint-jwt`` as its own reader
returns it (Flask's and Quart's ``request.cookies``, Bottle's
``request.get_cookie``, Django's ``request.COOKIES``, Starlette's
``request.cookies``) beside the JWT of the session the middleware published.
The view sets a public ``Cache-Control`` of its own: an answer that carries
our cookies must come back private and never stored.
"""

from __future__ import annotations

import json
from typing import Any

# At module level: FastAPI resolves the endpoints' annotations in these globals.
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from crossmint_wsgi.asgi import get_asgi_session
from crossmint_wsgi.wsgi import get_session

APP_CACHE_CONTROL = "public, max-age=60"


def report(cookie: str | None, session: Any) -> str:
    return json.dumps(
        {"cookie": cookie, "session_jwt": session.jwt if session is not None else None}
    )


def flask_app() -> Any:
    from flask import Flask, request

    app = Flask("cookies")

    @app.get("/whoami")
    def whoami() -> Any:
        body = report(request.cookies.get("crossmint-jwt"), get_session(request))
        return body, 200, {"Cache-Control": APP_CACHE_CONTROL}

    return app


def bottle_app() -> Any:
    import bottle

    app = bottle.Bottle(catchall=True)

    @app.get("/whoami")  # type: ignore[misc]
    def whoami() -> str:
        bottle.response.set_header("Cache-Control", APP_CACHE_CONTROL)
        return report(bottle.request.get_cookie("crossmint-jwt"), get_session(bottle.request))

    return app


def django_view(request: Any) -> Any:
    from django.http import HttpResponse

    scope = getattr(request, "scope", None)
    session = get_asgi_session(scope) if scope is not None else get_session(request.environ)
    response = HttpResponse(report(request.COOKIES.get("crossmint-jwt"), session))
    response["Cache-Control"] = APP_CACHE_CONTROL
    return response


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def whoami(request: Request) -> PlainTextResponse:
        body = report(request.cookies.get("crossmint-jwt"), get_asgi_session(request))
        return PlainTextResponse(body, headers={"Cache-Control": APP_CACHE_CONTROL})

    return Starlette(routes=[Route("/whoami", whoami)])


def fastapi_app() -> Any:
    from fastapi import Depends, FastAPI

    from crossmint_wsgi.contrib.fastapi import cookie_scheme

    app = FastAPI()

    @app.get("/whoami")
    async def whoami(request: Request) -> PlainTextResponse:
        body = report(request.cookies.get("crossmint-jwt"), get_asgi_session(request))
        return PlainTextResponse(body, headers={"Cache-Control": APP_CACHE_CONTROL})

    @app.get("/scheme")
    async def scheme(token: str | None = Depends(cookie_scheme)) -> PlainTextResponse:
        # Our own helper: it must hand out the verified JWT, never the cookie.
        return PlainTextResponse(json.dumps({"cookie_scheme": token}))

    return app


def quart_app() -> Any:
    from quart import Quart, request

    app = Quart("cookies")

    @app.get("/whoami")
    async def whoami() -> Any:
        body = report(request.cookies.get("crossmint-jwt"), get_asgi_session(request))
        return body, 200, {"Cache-Control": APP_CACHE_CONTROL}

    return app


def django_asgi_app() -> Any:
    from django.core.asgi import get_asgi_application

    return get_asgi_application()
