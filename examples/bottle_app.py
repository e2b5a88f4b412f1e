"""A Bottle app behind Crossmint auth.

Run it:

    python examples/bottle_app.py

With ``SERVER_CROSSMINT_API_KEY`` set it talks to Crossmint; without it, it
starts a local Crossmint emulator and its sign-in page logs you in as a demo
user by the same path a real login takes (a one-time secret posted to
``/refresh``, as Crossmint's browser SDK does).

``app`` is the wrapped WSGI app, for any WSGI server
(``gunicorn --chdir examples -w 4 bottle_app:app``); every worker must use
the same Crossmint, as the Flask example explains.
"""

from __future__ import annotations

import json
import os
import sys

import bottle
from werkzeug.serving import run_simple

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintWSGIMiddleware,
    Session,
    get_session,
    require_session,
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
auth = CrossmintAuth(demo.crossmint)
print(f"bottle_app: using {demo.describe()}", file=sys.stderr, flush=True)
if demo.emulator is not None and "gunicorn" in sys.modules:
    # Each gunicorn worker imports this module: each would get an emulator of its own.
    print(
        "bottle_app: every gunicorn worker starts its own emulator; for several workers set"
        " CROSSMINT_EMULATOR_URL to one (python -m crossmint_wsgi.testing starts one)",
        file=sys.stderr,
        flush=True,
    )

routes = bottle.Bottle()
app = CrossmintWSGIMiddleware(routes, auth, protect=["/protected/:path*"], login_url="/login")

# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


def json_answer(payload: object, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(payload)


@routes.get("/")
def index() -> str:
    session = get_session(bottle.request)
    return home_page("Crossmint + Bottle", session.user_id if session else None)


@routes.get("/protected")
def protected() -> str:
    # The middleware lets no request without a session reach this view.
    session = get_session(bottle.request)
    assert session is not None
    return protected_page(session.user_id, emails.of(session, auth))


@routes.get("/login")
def login() -> str:
    return login_page(bottle.request.query.get("next") or "/")


@routes.post("/demo/one-time-secret")
def one_time_secret() -> str:
    if demo.emulator_url is None:
        message = "demo sign-in needs the Crossmint emulator; log in with Crossmint's SDK"
        return json_answer({"error": "NOT_FOUND", "message": message}, 404)
    return json_answer({"secret": demo.one_time_secret()})


@routes.get("/api/me")
@require_session
def me(session: Session) -> str:
    return json_answer(me_payload(session.user_id, emails.of(session, auth)))


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"bottle_app: serving on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    # werkzeug's threaded server: a browser's parallel connections do not queue.
    run_simple("127.0.0.1", port, app, threaded=True)
