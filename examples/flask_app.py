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

import os
import sys
from typing import Any

from flask import Flask, jsonify, request

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintWSGIMiddleware,
    RefreshCoordinator,
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
print(f"flask_app: using {demo.describe()}", file=sys.stderr, flush=True)
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
    app.wsgi_app,
    auth,
    protect=["/protected/:path*"],
    login_url="/login",
    # Behind a proxy: the header it writes the client's address into (X-Forwarded-For).
    client_ip_header=os.environ.get("CROSSMINT_CLIENT_IP_HEADER"),
)

# The JWT carries only the user id; the pages show the email from the user record too.
emails = UserEmails()


@app.get("/")
def index() -> str:
    session = get_session(request)
    return home_page("Crossmint + Flask", session.user_id if session else None)


@app.get("/protected")
def protected() -> str:
    # The middleware lets no request without a session reach this view.
    session = get_session(request)
    assert session is not None
    return protected_page(session.user_id, emails.of(session, auth))


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
    return jsonify(me_payload(session.user_id, emails.of(session, auth)))


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"flask_app: serving on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    app.run(host="127.0.0.1", port=port, threaded=True)
