"""crossmint_wsgi.contrib.quart in process, against the real emulator: Quart views take no
request argument, so the decorator reads Quart's ``request``.

Quart runs on asyncio only (trio needs the separate quart-trio), so these tests do too.
Under hypercorn, the Quart example is served in ``test_examples_frameworks.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from contrib_cases import (
    GUARDED,
    Refusal,
    fetch,
    ours_and_reference,
    readme_visits,
    refusals,
    visitor,
)
from quart import Quart, jsonify
from test_asgi import EMAIL, UNFINISHED_BODY, USER, auth_cookies_set

# Fixtures, used by name.
from contrib_cases import refusal as refusal  # isort: skip
from test_asgi import take_down as take_down  # isort: skip

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
        protect=[GUARDED],
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

    @app.get(GUARDED)
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
    response = await fetch(build(async_auth), path, visitor("valid", crossmint_emulator))
    assert response.status_code == 200
    assert response.json() == expected


async def test_a_refreshed_session_sets_its_cookies(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    headers = visitor("expired+good-refresh", crossmint_emulator)
    response = await fetch(build(async_auth), "/me", headers)
    assert response.json() == {"user_id": USER, "refreshed": True}
    assert auth_cookies_set(response) == "session"


@pytest.mark.parametrize("path", ["/me", "/plain", "/sync/ada"])
@pytest.mark.parametrize("refusal", refusals(invalid="wrong-audience"), indirect=True)
async def test_decorator_refuses_as_the_middleware_does(
    async_auth: AsyncCrossmintAuth, refusal: Refusal, path: str
) -> None:
    refusal.check(*await ours_and_reference(build(async_auth), path, refusal.headers))


async def test_without_the_middleware_the_decorator_fails_loudly() -> None:
    app = Quart(__name__)

    @app.get("/me")
    @require_session
    async def me(session: Session) -> Any:
        return jsonify(user_id=session.user_id)

    response = await fetch(app, "/me")
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

    response = await fetch(app, "/email", visitor("expired+good-refresh", crossmint_emulator))
    assert response.json() == {"email": EMAIL}


# -- the README's snippet ---------------------------------------------------------------------


async def test_readme_snippet(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    signed_in, anonymous = await readme_visits(
        "contrib.quart import", "/api/me", async_auth, crossmint_emulator
    )
    assert signed_in.json() == {"user_id": USER}
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "MISSING_SESSION"
