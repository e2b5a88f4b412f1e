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

import html
import json
import os
import sys

import bottle
from werkzeug.serving import run_simple

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    Session,
    get_session,
    require_session,
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
auth = CrossmintAuth(demo.crossmint)
print(f"bottle_app: using {describe(demo)}", file=sys.stderr, flush=True)
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

# Emails by user id: the JWT carries only the id, the user record has the rest.
_emails: dict[str, str | None] = {}


def email_of(session: Session) -> str | None:
    """The user's email, when Crossmint knows one (fetched once per user)."""
    if session.user is not None:
        _emails[session.user_id] = session.user.email
    if session.user_id not in _emails:
        try:
            _emails[session.user_id] = auth.get_user(session.user_id).email
        except CrossmintAuthError:
            return None  # Crossmint unreachable: show the page without it.
    return _emails[session.user_id]


def json_answer(payload: object, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(payload)


@routes.get("/")
def index() -> str:
    session = get_session(bottle.request)
    if session is None:
        status = '<p>Not signed in. <a href="/login?next=/protected">Sign in</a></p>'
    else:
        status = f"<p>Signed in as <code>{html.escape(session.user_id)}</code></p>"
    links = '<p><a href="/protected">Protected page</a> · <a href="/api/me">/api/me</a></p>'
    return page("Crossmint + Bottle", status + links)


@routes.get("/protected")
def protected() -> str:
    # The middleware lets no request without a session reach this view.
    session = get_session(bottle.request)
    assert session is not None
    email = email_of(session)
    body = f"<p>Signed in as <code id='user-id'>{html.escape(session.user_id)}</code></p>"
    if email:
        body += f"<p>Email: <code id='email'>{html.escape(email)}</code></p>"
    body += '<button id="logout" onclick="crossmintLogout()">Log out</button>'
    return page("Protected", body)


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
    return json_answer({"user_id": session.user_id, "email": email_of(session)})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"bottle_app: serving on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    # werkzeug's threaded server: a browser's parallel connections do not queue.
    run_simple("127.0.0.1", port, app, threaded=True)
