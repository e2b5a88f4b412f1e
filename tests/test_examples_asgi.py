"""The ASGI examples served for real: raw ASGI under uvicorn and hypercorn (asyncio
and trio workers), Starlette and Quart under uvicorn, all against one emulator
started here; plus ``python examples/raw_asgi.py`` with its embedded emulator.

Each server starts once per module and serves every scenario; the emulator is
reset between tests (its keys stay, so the servers' cached key sets stay right).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import Server, free_port, require_program, run_server
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

USER = "user-example-asgi"
EMAIL = "example-asgi@example.com"
JWT, REFRESH = "crossmint-jwt", "crossmint-refresh-token"

# name -> command line; "{port}" is replaced by the server's port.
SERVERS: dict[str, list[str]] = {
    "raw-uvicorn": [
        "uvicorn",
        "--app-dir",
        "examples",
        "raw_asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ],
    "raw-hypercorn-asyncio": [
        "hypercorn",
        "-k",
        "asyncio",
        "--bind",
        "127.0.0.1:{port}",
        "examples/raw_asgi.py:app",
    ],
    "raw-hypercorn-trio": [
        "hypercorn",
        "-k",
        "trio",
        "--bind",
        "127.0.0.1:{port}",
        "examples/raw_asgi.py:app",
    ],
    # `python examples/<name>.py` serves with uvicorn on $PORT.
    "starlette-uvicorn": ["python", "examples/starlette_app.py"],
    "quart-uvicorn": [
        "uvicorn",
        "--app-dir",
        "examples",
        "quart_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ],
}
RAW_SERVERS = [name for name in SERVERS if name.startswith("raw-")]


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrossmintEmulator]:
    with CrossmintEmulator() as instance:
        yield instance


@pytest.fixture(autouse=True)
def fresh_emulator(emulator: CrossmintEmulator) -> Iterator[None]:
    emulator.reset()
    yield
    emulator.reset()


def command_for(name: str, port: int) -> list[str]:
    program, *args = SERVERS[name]
    executable = sys.executable if program == "python" else require_program(program)
    return [executable, *(arg.replace("{port}", str(port)) for arg in args)]


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, emulator: CrossmintEmulator) -> Iterator[Server]:
    port = free_port()
    env = {"CROSSMINT_EMULATOR_URL": emulator.url, "PORT": str(port)}
    with run_server(command_for(request.param, port), port=port, env=env) as running:
        yield running


# -- helpers -------------------------------------------------------------------------------


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}


def session_cookies(emulator: CrossmintEmulator, *, jwt_ttl: int | None = None) -> dict[str, str]:
    material = emulator.create_session(USER, email=EMAIL, jwt_ttl=jwt_ttl)
    return {JWT: material.jwt, REFRESH: material.refresh_token.secret}


def call(
    server: Server,
    method: str,
    path: str,
    cookies: dict[str, str] | None = None,
    **options: Any,
) -> httpx.Response:
    """One request with exactly these cookies (no cookie jar between requests)."""
    headers = {**cookie_header(cookies or {}), **options.pop("headers", {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **options)


def auth_cookies_set(response: httpx.Response) -> str:
    """What the answer did to the auth cookies: "none", "session" or "cleared"."""
    values = [c for c in response.headers.get_list("set-cookie") if c.startswith("crossmint-")]
    if not values:
        return "none"
    assert {c.split("=", 1)[0] for c in values} >= {JWT, REFRESH}, values
    if all(c.split("=", 1)[1].startswith((";", '""')) for c in values):
        assert all("1970" in c for c in values), values
        return "cleared"
    return "session"


def websocket_text(server: Server, path: str, cookies: dict[str, str] | None = None) -> str:
    url = server.url.replace("http://", "ws://") + path
    with connect(url, additional_headers=cookie_header(cookies or {}), open_timeout=30) as ws:
        text = ws.recv(timeout=30)
    assert isinstance(text, str)
    return text


# -- sessions ----------------------------------------------------------------------------------


def test_anonymous_visitor(server: Server) -> None:
    home = call(server, "GET", "/")
    me = call(server, "GET", "/api/me")
    assert home.status_code == 200
    assert "Not signed in" in home.text
    assert me.status_code == 401
    assert me.json()["error"] == "MISSING_SESSION"
    assert auth_cookies_set(home) == auth_cookies_set(me) == "none"


def test_valid_session(server: Server, emulator: CrossmintEmulator) -> None:
    cookies = session_cookies(emulator)
    home = call(server, "GET", "/", cookies)
    me = call(server, "GET", "/api/me", cookies)
    protected = call(server, "GET", "/protected", cookies, headers={"Accept": "text/html"})
    assert "Signed in as" in home.text
    assert USER in home.text
    assert me.json() == {"user_id": USER, "email": EMAIL}
    assert protected.status_code == 200
    assert USER in protected.text
    assert 'id="logout"' in protected.text
    assert {auth_cookies_set(r) for r in (home, me, protected)} == {"none"}
    assert emulator.requests["refresh"] == 0


def test_expired_jwt_is_refreshed_transparently(
    server: Server, emulator: CrossmintEmulator
) -> None:
    cookies = session_cookies(emulator, jwt_ttl=-60)
    me = call(server, "GET", "/api/me", cookies)
    assert me.status_code == 200
    assert me.json()["user_id"] == USER
    assert auth_cookies_set(me) == "session"
    assert emulator.requests["refresh"] == 1
    # The new cookies are a working session, without another refresh.
    fresh = {JWT: me.cookies[JWT], REFRESH: me.cookies[REFRESH]}
    again = call(server, "GET", "/protected", fresh)
    assert again.status_code == 200
    assert auth_cookies_set(again) == "none"
    assert emulator.requests["refresh"] == 1


def test_rejected_refresh_clears_the_cookies(server: Server, emulator: CrossmintEmulator) -> None:
    cookies = {JWT: session_cookies(emulator, jwt_ttl=-60)[JWT], REFRESH: "revoked-or-unknown"}
    me = call(server, "GET", "/api/me", cookies)
    browser = call(server, "GET", "/protected", cookies, headers={"Accept": "text/html"})
    assert me.status_code == 401
    assert me.json()["error"] == "SESSION_EXPIRED"
    assert auth_cookies_set(me) == "cleared"
    assert browser.status_code == 302
    assert browser.headers["location"] == "/login?next=/protected"
    assert auth_cookies_set(browser) == "cleared"


def test_invalid_token_is_refused(server: Server, emulator: CrossmintEmulator) -> None:
    cookies = {JWT: emulator.issue_jwt(USER, claims={"aud": "another-project"})}
    me = call(server, "GET", "/protected", cookies)
    assert me.status_code == 401
    assert me.json()["error"] == "INVALID_TOKEN"
    assert auth_cookies_set(me) == "cleared"


def test_crossmint_down_keeps_the_cookies(server: Server, emulator: CrossmintEmulator) -> None:
    cookies = session_cookies(emulator, jwt_ttl=-60)
    emulator.set_down(True)
    protected = call(server, "GET", "/protected", cookies, headers={"Accept": "text/html"})
    home = call(server, "GET", "/", cookies)
    assert protected.status_code == 503
    assert protected.headers["retry-after"].isdigit()
    assert protected.json()["error"] == "UPSTREAM_UNAVAILABLE"
    assert home.status_code == 200
    assert "Not signed in" in home.text
    assert auth_cookies_set(protected) == auth_cookies_set(home) == "none"
    # Back up: the same cookies still work, since nothing was cleared.
    emulator.set_down(False)
    assert call(server, "GET", "/api/me", cookies).json()["user_id"] == USER


# -- protection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "status", "location"),
    [
        pytest.param("text/html,application/xhtml+xml", 302, "/login?next=/protected", id="html"),
        pytest.param("application/json", 401, None, id="api"),
    ],
)
def test_protected_without_session(
    server: Server, accept: str, status: int, location: str | None
) -> None:
    response = call(server, "GET", "/protected", headers={"Accept": accept})
    assert response.status_code == status
    assert response.headers.get("location") == location


def test_sign_in_as_the_browser_sdk_does(server: Server) -> None:
    login = call(server, "GET", "/login?next=/protected")
    assert 'id="demo-sign-in"' in login.text
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        secret = browser.post("/demo/one-time-secret").json()["secret"]
        signed_in = browser.post("/refresh", json={"refresh": secret})
        assert signed_in.status_code == 200
        assert signed_in.json()["user"]["id"] == "demo-user"
        assert browser.get("/api/me").json()["user_id"] == "demo-user"
        assert "demo-user" in browser.get("/protected").text
        assert browser.post("/logout").json() == {"ok": True}
        assert browser.get("/api/me").status_code == 401


# -- the POST routes ---------------------------------------------------------------------------

# body, headers, status, error, cookies
REFRESH_CASES = [
    pytest.param("secret", {}, 200, None, "session", id="one-time-secret"),
    pytest.param(b"{}", {}, 401, "MISSING_SESSION", "none", id="nothing-to-refresh"),
    pytest.param(b"{oops", {}, 400, "INVALID_REQUEST", "none", id="bad-json"),
    pytest.param(b'{"refresh": ["x"]}', {}, 400, "INVALID_REQUEST", "none", id="wrong-type"),
    pytest.param(b"x" * (64 * 1024 + 1), {}, 400, "INVALID_REQUEST", "none", id="too-large"),
    pytest.param(b'{"refresh": "nope"}', {}, 401, "SESSION_EXPIRED", "cleared", id="rejected"),
    pytest.param(
        "secret",
        {"Origin": "https://evil.example"},
        403,
        "FORBIDDEN_ORIGIN",
        "none",
        id="cross-site",
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "error", "cookies"), REFRESH_CASES)
def test_refresh_route(
    server: Server,
    emulator: CrossmintEmulator,
    body: bytes | str,
    headers: dict[str, str],
    status: int,
    error: str | None,
    cookies: str,
) -> None:
    if body == "secret":
        body = json.dumps({"refresh": emulator.one_time_secret(USER, email=EMAIL)})
    headers = {"Content-Type": "application/json", **headers}
    response = call(server, "POST", "/refresh", content=body, headers=headers)
    assert response.status_code == status
    assert auth_cookies_set(response) == cookies
    if error is None:
        assert response.json()["user"]["id"] == USER
        assert response.cookies[JWT] == response.json()["jwt"]
    else:
        assert response.json()["error"] == error


def test_refresh_route_reads_a_chunked_body(server: Server, emulator: CrossmintEmulator) -> None:
    secret = emulator.one_time_secret(USER)
    body = json.dumps({"refresh": secret}).encode()

    def chunks() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    response = call(server, "POST", "/refresh", content=chunks())
    assert response.status_code == 200
    assert response.json()["user"]["id"] == USER


def test_refresh_route_refuses_a_large_chunked_body(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 16 * 1024

    response = call(server, "POST", "/refresh", content=chunks())
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("origin", "status", "calls"),
    [
        pytest.param(None, 200, 1, id="same-site"),
        pytest.param("https://evil.example", 403, 0, id="cross-site"),
    ],
)
def test_logout_route(
    server: Server, emulator: CrossmintEmulator, origin: str | None, status: int, calls: int
) -> None:
    cookies = session_cookies(emulator)
    headers = {"Origin": origin} if origin else {}
    response = call(server, "POST", "/logout", cookies, headers=headers)
    assert response.status_code == status
    assert auth_cookies_set(response) == ("cleared" if status == 200 else "none")
    assert emulator.requests["logout"] == calls


# -- websockets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "signed_in", "expected"),
    [
        pytest.param("/ws", True, USER, id="session"),
        pytest.param("/ws", False, "anonymous", id="anonymous"),
        pytest.param("/ws/private", True, USER, id="protected-with-session"),
    ],
)
def test_websocket_accepted(
    server: Server, emulator: CrossmintEmulator, path: str, signed_in: bool, expected: str
) -> None:
    cookies = session_cookies(emulator) if signed_in else {}
    assert websocket_text(server, path, cookies) == expected


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("none", id="anonymous"),
        pytest.param("rejected", id="rejected-refresh"),
    ],
)
def test_protected_websocket_refused(
    server: Server, emulator: CrossmintEmulator, kind: str
) -> None:
    cookies = {}
    if kind == "rejected":
        cookies = {JWT: session_cookies(emulator, jwt_ttl=-60)[JWT], REFRESH: "unknown"}
    with pytest.raises(InvalidStatus) as refused:
        websocket_text(server, "/ws/private", cookies)
    # Closed (code 1008) before the accept: the server refuses the handshake.
    assert refused.value.response.status_code == 403


def test_websocket_with_expired_jwt_gets_the_refreshed_session(
    server: Server, emulator: CrossmintEmulator
) -> None:
    assert websocket_text(server, "/ws/private", session_cookies(emulator, jwt_ttl=-60)) == USER
    assert emulator.requests["refresh"] == 1


# -- what the servers print, and their shared state ----------------------------------------------


def test_logs_name_users_never_tokens(
    request: pytest.FixtureRequest, server: Server, emulator: CrossmintEmulator
) -> None:
    cookies = session_cookies(emulator, jwt_ttl=-60)
    me = call(server, "GET", "/api/me", cookies)
    assert me.status_code == 200
    output = server.output()
    for secret in (cookies[JWT], cookies[REFRESH], me.cookies[JWT], me.cookies[REFRESH]):
        assert secret not in output
    assert emulator.api_key not in output
    if request.node.callspec.params["server"] in RAW_SERVERS:
        # The raw example prints the session of each request.
        assert f"GET /api/me: user={USER}" in output


@pytest.mark.parametrize("server", RAW_SERVERS, indirect=True)
def test_lifespan_state_is_shared_not_mutated(server: Server, emulator: CrossmintEmulator) -> None:
    cookies = session_cookies(emulator)
    for _ in range(2):
        state = call(server, "GET", "/state", cookies).json()
        # The request saw the lifespan entry and the session; the lifespan dict kept only its own.
        assert state["request"] == ["app", "crossmint_error", "crossmint_session"]
        assert state["lifespan"] == ["app"]


# -- python examples/raw_asgi.py, with its embedded emulator --------------------------------------


def test_raw_example_runs_on_its_own() -> None:
    port = free_port()
    env = {"PORT": str(port), "CROSSMINT_EMULATOR_URL": "", "SERVER_CROSSMINT_API_KEY": ""}
    command = [sys.executable, "examples/raw_asgi.py"]
    with (
        run_server(command, port=port, env=env) as running,
        httpx.Client(base_url=running.url, timeout=30) as browser,
    ):
        secret = browser.post("/demo/one-time-secret").json()["secret"]
        assert browser.post("/refresh", json={"refresh": secret}).status_code == 200
        assert browser.get("/api/me").json() == {
            "user_id": "demo-user",
            "email": "demo@example.com",
        }
        output = running.output()
    assert "embedded Crossmint emulator" in output
    assert secret not in output
