"""A Flask app behind Crossmint auth.

Run it:

    python examples/flask_app.py

With ``SERVER_CROSSMINT_API_KEY`` set it talks to Crossmint; without it, it
starts a local Crossmint emulator and its sign-in page logs you in as a demo
user by the same path a real login takes (a one-time secret posted to
``/refresh``, as Crossmint's browser SDK does).

Under gunicorn, every worker must use the same Crossmint: set
``SERVER_CROSSMINT_API_KEY``, or ``CROSSMINT_EMULATOR_URL`` to one emulator
(``python -m crossmint_wsgi.testing`` prints its URL), then
``gunicorn --chdir examples -w 4 flask_app:app``. With neither, each worker
would start an emulator of its own: ``gunicorn -c examples/gunicorn.conf.py``
starts one in the master for all of them. ``CROSSMINT_REDIS_URL`` shares
refreshes between the workers (see :func:`coordinator`).
"""

from __future__ import annotations

import html
import os
import sys
from typing import Any

from flask import Flask, jsonify, request

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    RefreshCoordinator,
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


def coordinator() -> RefreshCoordinator | None:
    """With several worker processes, refreshes are shared through Redis when configured.

    Refresh tokens are single use: two workers refreshing the same session
    at once would log its user out, unless they agree on who calls Crossmint.
    """
    url = os.environ.get("CROSSMINT_REDIS_URL")
    if not url:
        return None  # One process: the built-in in-process coordinator is enough.
    from crossmint_wsgi.redis import RedisCoordinator

    return RedisCoordinator.from_url(url)


demo = demo_crossmint()
auth = CrossmintAuth(demo.crossmint, coordinator=coordinator())
print(f"flask_app: using {describe(demo)}", file=sys.stderr, flush=True)
if demo.emulator is not None and "gunicorn" in sys.modules:
    # Each gunicorn worker imports this module: each would get an emulator of its own.
    print(
        "flask_app: every gunicorn worker starts its own emulator; for several workers set"
        " CROSSMINT_EMULATOR_URL or use examples/gunicorn.conf.py",
        file=sys.stderr,
        flush=True,
    )

app = Flask(__name__)
app.wsgi_app = CrossmintWSGIMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, auth, protect=["/protected/:path*"], login_url="/login"
)

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


@app.get("/")
def index() -> str:
    session = get_session(request)
    if session is None:
        status = '<p>Not signed in. <a href="/login?next=/protected">Sign in</a></p>'
    else:
        status = f"<p>Signed in as <code>{html.escape(session.user_id)}</code></p>"
    links = '<p><a href="/protected">Protected page</a> · <a href="/api/me">/api/me</a></p>'
    return page("Crossmint + Flask", status + links)


@app.get("/protected")
def protected() -> str:
    # The middleware lets no request without a session reach this view.
    session = get_session(request)
    assert session is not None
    email = email_of(session)
    body = f"<p>Signed in as <code id='user-id'>{html.escape(session.user_id)}</code></p>"
    if email:
        body += f"<p>Email: <code id='email'>{html.escape(email)}</code></p>"
    body += '<button id="logout" onclick="crossmintLogout()">Log out</button>'
    return page("Protected", body)


@app.get("/login")
def login() -> str:
    return login_page(request.args.get("next", "/"))


@app.post("/demo/one-time-secret")
def one_time_secret() -> Any:
    if demo.emulator_url is None:
        message = "demo sign-in needs the Crossmint emulator; log in with Crossmint's SDK"
        return jsonify(error="NOT_FOUND", message=message), 404
    return jsonify(secret=demo.one_time_secret())


@app.get("/api/me")
@require_session
def me(session: Session) -> Any:
    return jsonify(user_id=session.user_id, email=email_of(session))


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"flask_app: serving on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    app.run(host="127.0.0.1", port=port, threaded=True)
