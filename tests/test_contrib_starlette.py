"""crossmint_wsgi.contrib.starlette in process, on asyncio and trio, against the real emulator:
``request.user``, ``request.auth`` and ``@requires`` under our middleware and Starlette's
``AuthenticationMiddleware``.
"""

from __future__ import annotations

import pytest
from contrib_cases import fetch, readme_visits, visitor
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from test_asgi import (
    UNFINISHED_BODY,
    USER,
    auth_cookies_set,
    client,
    cookies_for,
    drive_websocket,
    websocket_scope,
)

# Fixtures, used by name.
from contrib_cases import outage_visitor as outage_visitor  # isort: skip
from test_asgi import take_down as take_down  # isort: skip

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware, Session
from crossmint_wsgi.contrib.starlette import CrossmintBackend, CrossmintUser
from crossmint_wsgi.testing import CrossmintEmulator

LOGIN_NEXT = "http://testserver/login?next=http%3A%2F%2Ftestserver%2Fprivate-page"

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(UNFINISHED_BODY)]


async def whoami(request: Request) -> Response:
    user = request.user
    return JSONResponse(
        {
            "authenticated": user.is_authenticated,
            "identity": user.identity if user.is_authenticated else None,
            "display_name": user.display_name,
            "scopes": request.auth.scopes,
            "same_session": isinstance(user, CrossmintUser)
            and user.session is request.state.crossmint_session,
        }
    )


@requires("authenticated")
async def private(request: Request) -> Response:
    return JSONResponse({"identity": request.user.identity})


@requires("authenticated", redirect="login")
async def private_page(request: Request) -> Response:
    return JSONResponse({"identity": request.user.identity})


async def login(request: Request) -> Response:
    return JSONResponse({"login": True})


@requires("authenticated")
async def private_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.user.identity)
    await websocket.close()


def build(auth: AsyncCrossmintAuth, backend: CrossmintBackend | None = None) -> Starlette:
    return Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/private", private),
            Route("/private-page", private_page),
            Route("/login", login, name="login"),
            WebSocketRoute("/ws", private_ws),
        ],
        middleware=[
            Middleware(CrossmintASGIMiddleware, auth=auth),
            Middleware(AuthenticationMiddleware, backend=backend or CrossmintBackend()),
        ],
    )


# kind of visitor, user seen (None: anonymous), display name, what happens to the cookies
USERS = [
    pytest.param("none", None, "", "none", id="anonymous"),
    pytest.param("valid", USER, USER, "none", id="valid"),
    pytest.param("expired+good-refresh", USER, USER, "session", id="refreshed"),
    pytest.param("expired+rejected-refresh", None, "", "cleared", id="expired"),
    pytest.param("bad-signature", None, "", "cleared", id="invalid"),
]


@pytest.mark.parametrize(("kind", "identity", "display_name", "cookies"), USERS)
async def test_request_user_and_auth(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    kind: str,
    identity: str | None,
    display_name: str,
    cookies: str,
) -> None:
    response = await fetch(build(async_auth), "/whoami", visitor(kind, crossmint_emulator))
    assert response.status_code == 200
    assert response.json() == {
        "authenticated": identity is not None,
        "identity": identity,
        "display_name": display_name,
        "scopes": ["authenticated"] if identity else [],
        "same_session": identity is not None,
    }
    assert auth_cookies_set(response) == cookies


@pytest.mark.parametrize(
    ("kind", "path", "status", "location"),
    [
        pytest.param("valid", "/private", 200, None, id="signed-in"),
        pytest.param("none", "/private", 403, None, id="anonymous"),
        pytest.param("expired+rejected-refresh", "/private", 403, None, id="expired"),
        pytest.param("valid", "/private-page", 200, None, id="page-signed-in"),
        pytest.param("none", "/private-page", 303, LOGIN_NEXT, id="page-anonymous"),
    ],
)
async def test_requires_authenticated(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    kind: str,
    path: str,
    status: int,
    location: str | None,
) -> None:
    response = await fetch(build(async_auth), path, visitor(kind, crossmint_emulator))
    assert response.status_code == status
    assert response.headers.get("location") == location
    if status == 200:
        assert response.json() == {"identity": USER}


async def test_crossmint_down_makes_visitors_anonymous_not_errors(
    async_auth: AsyncCrossmintAuth, outage_visitor: dict[str, str]
) -> None:
    async with client(build(async_auth)) as http:
        page = await http.get("/whoami", headers=outage_visitor)
        private = await http.get("/private", headers=outage_visitor)
    assert page.status_code == 200
    assert page.json()["authenticated"] is False
    assert private.status_code == 403
    assert auth_cookies_set(page) == auth_cookies_set(private) == "none"


async def test_scopes_are_configurable(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    backend = CrossmintBackend(scopes=["authenticated", "crossmint"])
    headers = visitor("valid", crossmint_emulator)
    response = await fetch(build(async_auth, backend), "/whoami", headers)
    assert response.json()["scopes"] == ["authenticated", "crossmint"]


async def test_without_our_middleware_the_backend_fails_loudly() -> None:
    app = Starlette(
        routes=[Route("/whoami", whoami)],
        middleware=[Middleware(AuthenticationMiddleware, backend=CrossmintBackend())],
    )
    with pytest.raises(RuntimeError, match="CrossmintASGIMiddleware"):
        await fetch(app, "/whoami")


def test_user_reads_the_session() -> None:
    session = Session("jwt", None, "user-7", {"sub": "user-7"}, False, None)
    user = CrossmintUser(session)
    assert user.is_authenticated
    assert user.identity == user.display_name == "user-7"
    assert repr(user) == "<CrossmintUser 'user-7'>"
    assert "jwt" not in repr(user)


# -- websockets: the handshake's session ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("valid", ["websocket.accept", "websocket.send", "websocket.close"], id="user"),
        pytest.param("none", ["websocket.close"], id="anonymous"),
    ],
)
async def test_websocket_requires_authenticated(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    kind: str,
    expected: list[str],
) -> None:
    scope = websocket_scope("/ws", cookies_for(kind, crossmint_emulator))
    received = await drive_websocket(build(async_auth), scope)
    assert [message["type"] for message in received] == expected
    if len(received) > 1:
        assert received[1]["text"] == USER


# -- the README's snippet ---------------------------------------------------------------------


async def test_readme_snippet(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    signed_in, anonymous = await readme_visits(
        "contrib.starlette import", "/dashboard", async_auth, crossmint_emulator
    )
    assert signed_in.text == f"Hello {USER}"
    assert anonymous.status_code == 403
