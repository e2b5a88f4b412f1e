"""The same small app in Flask, Bottle, Django, Starlette, FastAPI and Quart.

Protected views: ``/account``, ``/account/<path:p>``, ``/users/<name>`` (what
:data:`PROTECT` covers); public ones: ``/`` and ``/public/<path:p>``. A view
that runs appends its name to :data:`RAN` and answers ``ran:<name>``, so a
test sees which view the router chose in process and through a real server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# At module level: FastAPI resolves the endpoint's annotations in these globals.
from starlette.requests import Request
from starlette.responses import PlainTextResponse

PROTECT = ["/account/:path*", "/users/:name"]
PROTECTED_VIEWS = frozenset({"account_root", "account", "users"})
MARKERS = tuple(f"ran:{view}".encode() for view in sorted(PROTECTED_VIEWS))
RAN: list[str] = []

#: (path, view) in werkzeug's rule syntax; each framework spells it its own way.
ROUTES = [
    ("/", "home"),
    ("/account", "account_root"),
    ("/account/<path:p>", "account"),
    ("/users/<name>", "users"),
    ("/public/<path:p>", "public"),
]


def ran(view: str) -> str:
    RAN.append(view)
    return f"ran:{view}"


def ran_protected(body: bytes) -> bool:
    """Whether a response body says a protected view ran."""
    return any(marker in body for marker in MARKERS)


# -- WSGI -----------------------------------------------------------------------------------


def flask_app() -> Any:
    from flask import Flask

    app = Flask("differential")
    for rule, view in ROUTES:
        app.add_url_rule(rule, view, _sync_view(view))
    return app


def bottle_app() -> Any:
    import bottle

    app = bottle.Bottle(catchall=True)
    for rule, view in ROUTES:
        app.route(rule.replace("<path:p>", "<p:path>"), callback=_sync_view(view))
    return app


def configure_django() -> None:
    """Configure Django once per process (another test module may have done it)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=[],
            MIDDLEWARE=[],
            ROOT_URLCONF="routers.django_urls",
            SECRET_KEY="django-insecure-tests-only",
            USE_TZ=True,
        )
        django.setup()


#: What the Django app needs whatever another test module configured.
DJANGO_SETTINGS = {"ALLOWED_HOSTS": ["*"], "MIDDLEWARE": [], "ROOT_URLCONF": "routers.django_urls"}


def django_app() -> Any:
    """Django's WSGI handler; call it under ``override_settings(**DJANGO_SETTINGS)``."""
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


def dispatcher(inner: Any) -> Any:
    """``inner`` mounted at ``/sub`` by werkzeug's DispatcherMiddleware (SCRIPT_NAME)."""
    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    return DispatcherMiddleware(NotFound(), {"/sub": inner})


def _sync_view(view: str) -> Callable[..., str]:
    def endpoint(**params: str) -> str:
        return ran(view)

    endpoint.__name__ = view
    return endpoint


# -- ASGI -----------------------------------------------------------------------------------


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    routes = [Route(_braces(rule), _async_view(view)) for rule, view in ROUTES]
    return Starlette(routes=routes)


def fastapi_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    for rule, view in ROUTES:
        app.add_api_route(_braces(rule), _async_view(view), methods=["GET"])
    return app


def quart_app() -> Any:
    from quart import Quart

    app = Quart("differential")
    for rule, view in ROUTES:
        app.add_url_rule(rule, view, _async_view(view, quart=True))
    return app


def starlette_mount(inner: Any) -> Any:
    """``inner`` under Starlette's ``Mount("/sub")``: root_path "/sub", path with it."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/sub", app=inner)])


def _braces(rule: str) -> str:
    return rule.replace("<path:p>", "{p:path}").replace("<name>", "{name}")


def _async_view(view: str, *, quart: bool = False) -> Callable[..., Any]:
    if quart:

        async def quart_endpoint(**params: str) -> str:
            return ran(view)

        quart_endpoint.__name__ = view
        return quart_endpoint

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(ran(view))

    endpoint.__name__ = view
    return endpoint
