"""The WSGI server entry point of the differential router test: ``routers.serve_wsgi:app``.

One gunicorn serves every WSGI framework, bare and wrapped: the
``X-Framework`` and ``X-Variant`` request headers pick the app, so the path
reaches it exactly as the server decoded it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware
from crossmint_wsgi.testing import connect_emulator
from routers import cookie_apps
from routers.apps import PROTECT, bottle_app, configure_django, dispatcher, django_app, flask_app

configure_django()
_auth = CrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))


def _variants(build: Callable[[], Any], mount: bool = False) -> dict[str, Any]:
    wrapped = CrossmintWSGIMiddleware(build(), _auth, protect=PROTECT)
    if mount:
        return {"bare": dispatcher(build()), "wrapped": dispatcher(wrapped)}
    return {"bare": build(), "wrapped": wrapped}


APPS = {
    "flask": _variants(flask_app),
    "bottle": _variants(bottle_app),
    "django": _variants(django_app),
    "flask-sub": _variants(flask_app, mount=True),
    # The differential cookie test's /whoami views.
    "cookies-flask": _variants(cookie_apps.flask_app),
    "cookies-bottle": _variants(cookie_apps.bottle_app),
    "cookies-django": _variants(django_app),
}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    framework = APPS.get(environ.get("HTTP_X_FRAMEWORK", ""))
    if framework is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"pick a framework"]
    return framework[environ.get("HTTP_X_VARIANT", "bare")](environ, start_response)
