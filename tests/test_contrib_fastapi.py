"""crossmint_wsgi.contrib.fastapi in process, on asyncio and trio, against the real emulator.

A dependency's refusal must read exactly as the middleware's own refusal of a
protected path: every case compares the two answers to the same cookies.
"""

from __future__ import annotations

from typing import Any

import pytest
from contrib_cases import GUARDED, Refusal, fetch, ours_and_reference, refusals, visitor
from fastapi import FastAPI
from test_asgi import UNFINISHED_BODY, USER, auth_cookies_set, client, cookie_header
from test_readme import _run as run_snippet
from test_readme import _snippet as snippet

# Fixtures, used by name.
from contrib_cases import outage_visitor as outage_visitor  # isort: skip
from contrib_cases import refusal as refusal  # isort: skip
from test_asgi import take_down as take_down  # isort: skip

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware
from crossmint_wsgi.contrib.fastapi import (
    CrossmintRefusal,
    CrossmintSession,
    OptionalCrossmintSession,
    add_exception_handler,
)
from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(UNFINISHED_BODY)]


def build(*, handler: bool = True) -> FastAPI:
    app = FastAPI()
    if handler:
        add_exception_handler(app)

    @app.get("/me")
    async def me(session: CrossmintSession) -> dict[str, Any]:
        return {"user_id": session.user_id, "refreshed": session.refreshed}

    @app.get("/maybe")
    def maybe(session: OptionalCrossmintSession) -> dict[str, Any]:
        return {"user_id": session.user_id if session else None}

    @app.get(GUARDED)
    async def guarded() -> dict[str, str]:
        return {"reached": "yes"}

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"public": "yes"}

    return app


def served(auth: AsyncCrossmintAuth, *, handler: bool = True) -> CrossmintASGIMiddleware:
    """The app behind the middleware, which refuses ``GUARDED`` itself: the reference answer."""
    return CrossmintASGIMiddleware(build(handler=handler), auth, protect=[GUARDED])


@pytest.mark.parametrize("refusal", refusals(), indirect=True)
async def test_required_session_refuses_as_the_middleware_does(
    async_auth: AsyncCrossmintAuth, refusal: Refusal
) -> None:
    refusal.check(*await ours_and_reference(served(async_auth), "/me", refusal.headers))


@pytest.mark.parametrize(
    ("kind", "refreshed", "cookies"),
    [
        pytest.param("valid", False, "none", id="valid"),
        pytest.param("expired+good-refresh", True, "session", id="refreshed-on-the-way"),
    ],
)
async def test_required_session_is_given_to_the_route(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    kind: str,
    refreshed: bool,
    cookies: str,
) -> None:
    response = await fetch(served(async_auth), "/me", visitor(kind, crossmint_emulator))
    assert response.status_code == 200
    assert response.json() == {"user_id": USER, "refreshed": refreshed}
    assert auth_cookies_set(response) == cookies


@pytest.mark.parametrize(
    ("kind", "user_id"),
    [
        pytest.param("none", None, id="anonymous"),
        pytest.param("valid", USER, id="valid"),
        pytest.param("expired+rejected-refresh", None, id="expired"),
    ],
)
async def test_optional_session(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    kind: str,
    user_id: str | None,
) -> None:
    response = await fetch(served(async_auth), "/maybe", visitor(kind, crossmint_emulator))
    assert response.status_code == 200
    assert response.json() == {"user_id": user_id}


async def test_optional_session_while_crossmint_is_down(
    async_auth: AsyncCrossmintAuth, outage_visitor: dict[str, str]
) -> None:
    response = await fetch(served(async_auth), "/maybe", outage_visitor)
    assert response.status_code == 200
    assert response.json() == {"user_id": None}
    assert auth_cookies_set(response) == "none"


async def test_without_the_handler_fastapi_renders_the_same_refusal_under_detail(
    async_auth: AsyncCrossmintAuth, outage_visitor: dict[str, str]
) -> None:
    app = served(async_auth, handler=False)
    ours, reference = await ours_and_reference(app, "/me", outage_visitor)
    assert ours.status_code == reference.status_code == 503
    assert ours.json() == {"detail": reference.json()}
    assert ours.headers["retry-after"] == reference.headers["retry-after"]


async def test_a_route_without_the_middleware_fails_loudly(async_auth: AsyncCrossmintAuth) -> None:
    with pytest.raises(RuntimeError, match="CrossmintASGIMiddleware"):
        await fetch(build(), "/me")


def test_refusal_is_an_http_exception_carrying_the_answer() -> None:
    from fastapi import HTTPException

    refused = CrossmintRefusal(None, retry_after=9)
    assert isinstance(refused, HTTPException)
    assert refused.status_code == 401
    assert refused.detail == refused.answer.json()
    assert refused.detail["error"] == "MISSING_SESSION"
    assert refused.error is None


# -- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_shows_a_cookie_security_scheme_and_no_session_body() -> None:
    schema = build().openapi()
    assert schema["components"]["securitySchemes"]["CrossmintSession"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "crossmint-jwt",
        "description": (
            "The Crossmint session JWT, set by Crossmint's browser SDK or the refresh route."
        ),
    }
    for path in ("/me", "/maybe"):
        operation = schema["paths"][path]["get"]
        assert operation["security"] == [{"CrossmintSession": []}], path
        # The session is neither a body nor a parameter (the cookie is the scheme's).
        assert "requestBody" not in operation, path
        assert operation.get("parameters", []) == [], path
    for path in ("/guarded", "/public"):
        assert "security" not in schema["paths"][path]["get"], path
    assert "Session" not in schema["components"].get("schemas", {})


# -- the README's snippet ---------------------------------------------------------------------


async def test_readme_snippet(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = run_snippet(snippet("contrib.fastapi import"), crossmint_emulator, monkeypatch)
    jwt = crossmint_emulator.create_session(USER).jwt
    async with client(namespace["app"]) as http:
        anonymous = await http.get("/api/me")
        signed_in = await http.get("/api/me", headers=cookie_header({"crossmint-jwt": jwt}))
        home = await http.get("/")
        account = await http.get("/account")
    await namespace["auth"].aclose()
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "MISSING_SESSION"
    assert signed_in.json() == {"user_id": USER}
    assert home.json() == {"hello": "stranger"}
    assert account.status_code == 401
