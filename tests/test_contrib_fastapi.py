"""crossmint_wsgi.contrib.fastapi in process, on asyncio and trio, against the real emulator.

A dependency's refusal must read exactly as the middleware's own refusal of a
protected path: every case compares the two answers to the same cookies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from test_asgi import (
    UNFINISHED_BODY,
    USER,
    auth_cookies_set,
    client,
    cookie_header,
    cookies_for,
)

# A fixture, used by name.
from test_asgi import take_down as take_down
from test_readme import _run as run_snippet
from test_readme import _snippet as snippet

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

    @app.get("/guarded")
    async def guarded() -> dict[str, str]:
        return {"reached": "yes"}

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"public": "yes"}

    return app


def served(app: FastAPI, auth: AsyncCrossmintAuth) -> httpx.AsyncClient:
    # /guarded is refused by the middleware itself: the reference answer.
    return client(CrossmintASGIMiddleware(app, auth, protect=["/guarded"]))


# kind of visitor, taken down first, status, error, what happens to the cookies
REFUSALS = [
    pytest.param("none", False, 401, "MISSING_SESSION", "none", id="anonymous"),
    pytest.param(
        "expired+rejected-refresh", False, 401, "SESSION_EXPIRED", "cleared", id="expired"
    ),
    pytest.param("bad-signature", False, 401, "INVALID_TOKEN", "cleared", id="invalid"),
    pytest.param("expired+good-refresh", True, 503, "UPSTREAM_UNAVAILABLE", "none", id="down"),
]


@pytest.mark.parametrize(("kind", "down", "status", "error", "cookies"), REFUSALS)
async def test_required_session_refuses_as_the_middleware_does(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    take_down: Callable[[], None],
    kind: str,
    down: bool,
    status: int,
    error: str,
    cookies: str,
) -> None:
    headers = cookie_header(cookies_for(kind, crossmint_emulator))
    if down:
        take_down()
    async with served(build(), async_auth) as http:
        ours = await http.get("/me", headers=headers)
        reference = await http.get("/guarded", headers=headers)
    assert ours.status_code == reference.status_code == status
    assert ours.json() == reference.json()
    assert set(ours.json()) == {"error", "message"}
    assert ours.json()["error"] == error
    for name in ("content-type", "cache-control", "retry-after"):
        assert ours.headers.get(name) == reference.headers.get(name), name
    assert ("retry-after" in ours.headers) is (status == 503)
    assert auth_cookies_set(ours) == auth_cookies_set(reference) == cookies


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
    async with served(build(), async_auth) as http:
        response = await http.get(
            "/me", headers=cookie_header(cookies_for(kind, crossmint_emulator))
        )
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
    async with served(build(), async_auth) as http:
        response = await http.get(
            "/maybe", headers=cookie_header(cookies_for(kind, crossmint_emulator))
        )
    assert response.status_code == 200
    assert response.json() == {"user_id": user_id}


async def test_optional_session_while_crossmint_is_down(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    take_down: Callable[[], None],
) -> None:
    headers = cookie_header(cookies_for("expired+good-refresh", crossmint_emulator))
    take_down()
    async with served(build(), async_auth) as http:
        response = await http.get("/maybe", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"user_id": None}
    assert auth_cookies_set(response) == "none"


async def test_without_the_handler_fastapi_renders_the_same_refusal_under_detail(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    take_down: Callable[[], None],
) -> None:
    headers = cookie_header(cookies_for("expired+good-refresh", crossmint_emulator))
    take_down()
    async with served(build(handler=False), async_auth) as http:
        ours = await http.get("/me", headers=headers)
        reference = await http.get("/guarded", headers=headers)
    assert ours.status_code == reference.status_code == 503
    assert ours.json() == {"detail": reference.json()}
    assert ours.headers["retry-after"] == reference.headers["retry-after"]


async def test_a_route_without_the_middleware_fails_loudly(async_auth: AsyncCrossmintAuth) -> None:
    async with client(build()) as http:
        with pytest.raises(RuntimeError, match="CrossmintASGIMiddleware"):
            await http.get("/me")


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
