"""crossmint_wsgi.contrib.quart in process, against the real emulator: Quart views take no
request argument, so the decorator reads Quart's ``request``.

Quart runs on asyncio only (trio needs the separate quart-trio), so these tests do too.
Under hypercorn, the Quart example is served in ``test_examples_frameworks.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from quart import Quart, jsonify
from test_asgi import (
    EMAIL,
    UNFINISHED_BODY,
    USER,
    auth_cookies_set,
    client,
    cookie_header,
    cookies_for,
)

# A fixture, used by name.
from test_asgi import take_down as take_down
from test_readme import _snippet as snippet

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware, Session
from crossmint_wsgi.contrib.quart import current_session, require_session
from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(UNFINISHED_BODY)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build(auth: AsyncCrossmintAuth) -> Quart:
    app = Quart(__name__)
    # Quart types its scopes as TypedDicts, the middleware as plain mappings.
    app.asgi_app = CrossmintASGIMiddleware(  # type: ignore[method-assign,assignment]
        app.asgi_app,
        auth,
        protect=["/guarded"],
    )

    @app.get("/me")
    @require_session
    async def me(session: Session) -> Any:
        return jsonify(user_id=session.user_id, refreshed=session.refreshed)

    @app.get("/plain")
    @require_session
    async def plain() -> Any:
        # No `session` parameter: the view reads it itself.
        session = current_session()
        return jsonify(user_id=session.user_id if session else None)

    @app.get("/sync/<name>")
    @require_session
    def sync_view(name: str, session: Session) -> Any:
        return jsonify(name=name, user_id=session.user_id)

    @app.get("/maybe")
    async def maybe() -> Any:
        session = current_session()
        return jsonify(user_id=session.user_id if session else None)

    @app.get("/guarded")
    async def guarded() -> Any:
        return jsonify(reached=True)

    return app


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/me", {"user_id": USER, "refreshed": False}, id="session-passed"),
        pytest.param("/plain", {"user_id": USER}, id="session-read"),
        pytest.param("/sync/ada", {"name": "ada", "user_id": USER}, id="sync-view-with-args"),
        pytest.param("/maybe", {"user_id": USER}, id="optional"),
    ],
)
async def test_views_get_the_session(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    path: str,
    expected: dict[str, Any],
) -> None:
    headers = cookie_header(cookies_for("valid", crossmint_emulator))
    async with client(build(async_auth)) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == 200
    assert response.json() == expected


async def test_a_refreshed_session_sets_its_cookies(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    headers = cookie_header(cookies_for("expired+good-refresh", crossmint_emulator))
    async with client(build(async_auth)) as http:
        response = await http.get("/me", headers=headers)
    assert response.json() == {"user_id": USER, "refreshed": True}
    assert auth_cookies_set(response) == "session"


# kind of visitor, taken down first, status, error, what happens to the cookies
REFUSALS = [
    pytest.param("none", False, 401, "MISSING_SESSION", "none", id="anonymous"),
    pytest.param(
        "expired+rejected-refresh", False, 401, "SESSION_EXPIRED", "cleared", id="expired"
    ),
    pytest.param("wrong-audience", False, 401, "INVALID_TOKEN", "cleared", id="invalid"),
    pytest.param("expired+good-refresh", True, 503, "UPSTREAM_UNAVAILABLE", "none", id="down"),
]


@pytest.mark.parametrize("path", ["/me", "/plain", "/sync/ada"])
@pytest.mark.parametrize(("kind", "down", "status", "error", "cookies"), REFUSALS)
async def test_decorator_refuses_as_the_middleware_does(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    take_down: Callable[[], None],
    path: str,
    kind: str,
    down: bool,
    status: int,
    error: str,
    cookies: str,
) -> None:
    headers = cookie_header(cookies_for(kind, crossmint_emulator))
    if down:
        take_down()
    async with client(build(async_auth)) as http:
        ours = await http.get(path, headers=headers)
        reference = await http.get("/guarded", headers=headers)
    assert ours.status_code == reference.status_code == status
    assert ours.json() == reference.json()
    assert ours.json()["error"] == error
    for name in ("content-type", "cache-control", "retry-after"):
        assert ours.headers.get(name) == reference.headers.get(name), name
    assert auth_cookies_set(ours) == auth_cookies_set(reference) == cookies


async def test_without_the_middleware_the_decorator_fails_loudly() -> None:
    app = Quart(__name__)

    @app.get("/me")
    @require_session
    async def me(session: Session) -> Any:
        return jsonify(user_id=session.user_id)

    async with client(app) as http:
        response = await http.get("/me")
    # Quart turns the RuntimeError into its 500 page (and logs it).
    assert response.status_code == 500


def test_outside_a_request_current_session_says_so() -> None:
    with pytest.raises(RuntimeError, match="no Quart request"):
        current_session()


async def test_display_email_is_known_after_a_refresh(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    app = build(async_auth)

    @app.get("/email")
    @require_session
    async def email(session: Session) -> Any:
        return jsonify(email=session.user.email if session.user else None)

    headers = cookie_header(cookies_for("expired+good-refresh", crossmint_emulator))
    async with client(app) as http:
        response = await http.get("/email", headers=headers)
    assert response.json() == {"email": EMAIL}


# -- the README's snippet ---------------------------------------------------------------------


async def test_readme_snippet(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    # The snippet continues the FastAPI one: `auth` comes from there.
    namespace = {"__name__": "readme_example", "auth": async_auth}
    exec(compile(snippet("contrib.quart import"), "README.md", "exec"), namespace)
    headers = cookie_header(cookies_for("valid", crossmint_emulator))
    async with client(namespace["app"]) as http:
        signed_in = await http.get("/api/me", headers=headers)
        anonymous = await http.get("/api/me")
    assert signed_in.json() == {"user_id": USER}
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "MISSING_SESSION"
