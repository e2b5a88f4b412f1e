"""CrossmintASGIMiddleware in process, on asyncio and trio, against the real emulator.

HTTP goes through ``httpx.ASGITransport``; what it cannot do (bodies pulled
chunk by chunk, lifespan, websockets) is driven by hand with receive and send
callables over anyio memory streams.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import httpx
import pytest

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    AuthMaterial,
    CrossmintASGIMiddleware,
    CrossmintAuthError,
    ErrorCode,
    Session,
)
from crossmint_wsgi.testing import CrossmintEmulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

USER = "user-asgi"
EMAIL = "asgi@example.com"
PROTECT = ["/protected/:path*", "/ws/private/:path*"]
LIMIT = 64 * 1024
JWT, REFRESH = "crossmint-jwt", "crossmint-refresh-token"
APP_COOKIE = "app-cookie=kept; Path=/"

# On trio, a connection Crossmint drops while httpcore writes a request body
# leaves httpx's body generator unfinished; trio warns when the garbage
# collector meets it, at a moment no test chooses. Only Crossmint outages here
# cause that: their tests collect it themselves (see `take_down`).
UNFINISHED_BODY = (
    "ignore:Async generator '.*ByteStream.__aiter__' was garbage collected:ResourceWarning"
)

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(UNFINISHED_BODY)]


# -- the app behind the middleware -------------------------------------------------------


class Recorder:
    """A tiny raw ASGI app: answers JSON about the session it saw, sets its own cookie."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.states: list[dict[str, Any]] = []

    @property
    def called(self) -> bool:
        return bool(self.scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        state = scope.get("state")
        self.states.append(dict(state) if state is not None else {})
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        body = b""
        if scope["method"] == "POST":
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        session = (state or {}).get("crossmint_session")
        error = (state or {}).get("crossmint_error")
        payload = {
            "user_id": session.user_id if isinstance(session, Session) else None,
            "refreshed": session.refreshed if isinstance(session, Session) else None,
            "error": error.code.value if isinstance(error, CrossmintAuthError) else None,
            "body": len(body),
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", APP_COOKIE.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        session = scope["state"]["crossmint_session"]
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": session.user_id if session else "anonymous"})
        await send({"type": "websocket.close", "code": 1000})


@pytest.fixture
def inner() -> Recorder:
    return Recorder()


@pytest.fixture
def take_down(crossmint_emulator: CrossmintEmulator) -> Iterator[Callable[[], None]]:
    """Take the emulator down when called; collect what the outage left behind after."""
    yield lambda: crossmint_emulator.set_down(True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", UNFINISHED_BODY.split(":")[1], ResourceWarning)
        gc.collect()


def wrap(app: Any, auth: AsyncCrossmintAuth, **options: Any) -> CrossmintASGIMiddleware:
    options.setdefault("protect", PROTECT)
    options.setdefault("login_url", "/login")
    return CrossmintASGIMiddleware(app, auth, **options)


def client(app: Any, *, https: bool = False) -> httpx.AsyncClient:
    base = "https://testserver" if https else "http://testserver"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


# -- cookies a request carries -----------------------------------------------------------


def tamper(token: str) -> str:
    """The same JWT with one character of its signature changed."""
    head, _, signature = token.rpartition(".")
    middle = len(signature) // 2
    swapped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{signature[:middle]}{swapped}{signature[middle + 1 :]}"


def cookies_for(kind: str, emulator: CrossmintEmulator) -> dict[str, str]:
    """The auth cookies of one kind of visitor, minted by the emulator."""

    def valid() -> AuthMaterial:
        return emulator.create_session(USER, email=EMAIL)

    def expired() -> AuthMaterial:
        return emulator.create_session(USER, email=EMAIL, jwt_ttl=-60)

    def both(material: AuthMaterial, jwt: str | None = None) -> dict[str, str]:
        return {JWT: jwt or material.jwt, REFRESH: material.refresh_token.secret}

    project = emulator.project_id
    makers: dict[str, Callable[[], dict[str, str]]] = {
        "none": dict,
        "unrelated": lambda: {"theme": "dark"},
        "valid": lambda: both(valid()),
        "valid-jwt-only": lambda: {JWT: valid().jwt},
        "project-scoped-names": lambda: {
            f"{name}-{project}": value for name, value in both(valid()).items()
        },
        "expired+good-refresh": lambda: both(expired()),
        "refresh-only": lambda: {REFRESH: expired().refresh_token.secret},
        "expired+rejected-refresh": lambda: {JWT: expired().jwt, REFRESH: "not-a-known-secret"},
        "expired-no-refresh": lambda: {JWT: expired().jwt},
        "bad-signature": lambda: {JWT: tamper(valid().jwt)},
        "wrong-audience": lambda: {JWT: emulator.issue_jwt(USER, claims={"aud": "another"})},
        "bad-signature+good-refresh": lambda: both(material := valid(), tamper(material.jwt)),
        "bad-signature+rejected-refresh": lambda: {JWT: tamper(valid().jwt), REFRESH: "unknown"},
    }
    return makers[kind]()


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    if not cookies:
        return {}
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


def auth_cookies_set(response: httpx.Response) -> str:
    """What the answer did to the auth cookies: "none", "session" or "cleared"."""
    values = [c for c in response.headers.get_list("set-cookie") if c.startswith("crossmint-")]
    if not values:
        return "none"
    names = {c.split("=", 1)[0] for c in values}
    assert {JWT, REFRESH} <= names, values
    if all(c.split("=", 1)[1].startswith(("; ", '""')) for c in values):
        assert all("1970" in c for c in values), values
        return "cleared"
    assert all(not c.split("=", 1)[1].startswith(";") for c in values), values
    assert len(values) == 2, values
    return "session"


# -- GET requests: the session the app sees ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    """A kind of visitor (see :func:`cookies_for`) and what the app sees of it.

    :param user_id: the session's user id, ``None`` for none.
    :param refreshed: the session's ``refreshed``.
    :param error: the error code published to the app.
    :param cookies: what the answer does to the auth cookies (see :func:`auth_cookies_set`).
    """

    kind: str
    user_id: str | None
    refreshed: bool | None
    error: str | None
    cookies: str


#: ``visit(kind, path)``: see the ``visit`` fixture.
Visit = Callable[[str, str], Awaitable[httpx.Response]]


@pytest.fixture
def middleware(async_auth: AsyncCrossmintAuth, inner: Recorder) -> CrossmintASGIMiddleware:
    """``inner`` behind the middleware (:func:`wrap`)."""
    return wrap(inner, async_auth)


@pytest.fixture
def visit(crossmint_emulator: CrossmintEmulator, middleware: CrossmintASGIMiddleware) -> Visit:
    """``GET path`` as a visitor of ``kind``, through the middleware around ``inner``."""

    async def get(kind: str, path: str) -> httpx.Response:
        headers = cookie_header(cookies_for(kind, crossmint_emulator))
        async with client(middleware) as http:
            return await http.get(path, headers=headers)

    return get


SESSION_CASES = [
    pytest.param(Seen("none", None, None, None, "none"), id="anonymous"),
    pytest.param(Seen("unrelated", None, None, None, "none"), id="only-unrelated-cookies"),
    pytest.param(Seen("valid", USER, False, None, "none"), id="valid-session"),
    pytest.param(Seen("valid-jwt-only", USER, False, None, "none"), id="valid-jwt-without-refresh"),
    pytest.param(Seen("project-scoped-names", USER, False, None, "none"), id="browser-sdk-names"),
    pytest.param(
        Seen("expired+good-refresh", USER, True, None, "session"), id="expired-jwt-refreshed"
    ),
    pytest.param(Seen("refresh-only", USER, True, None, "session"), id="refresh-cookie-only"),
    pytest.param(
        Seen("expired+rejected-refresh", None, None, "SESSION_EXPIRED", "cleared"),
        id="expired-jwt-rejected-refresh",
    ),
    pytest.param(
        Seen("expired-no-refresh", None, None, "SESSION_EXPIRED", "cleared"), id="expired-jwt-alone"
    ),
    pytest.param(Seen("bad-signature", None, None, "INVALID_TOKEN", "cleared"), id="bad-signature"),
    pytest.param(
        Seen("wrong-audience", None, None, "INVALID_TOKEN", "cleared"), id="wrong-audience"
    ),
    pytest.param(
        Seen("bad-signature+good-refresh", USER, True, None, "session"), id="invalid-jwt-rescued"
    ),
    pytest.param(
        Seen("bad-signature+rejected-refresh", None, None, "INVALID_TOKEN", "cleared"),
        id="invalid-jwt-rejected-refresh",
    ),
]


@pytest.mark.parametrize("seen", SESSION_CASES)
async def test_unprotected_path_runs_the_app_with_the_session(visit: Visit, seen: Seen) -> None:
    response = await visit(seen.kind, "/page")
    assert response.status_code == 200
    assert response.json() == {
        "user_id": seen.user_id,
        "refreshed": seen.refreshed,
        "error": seen.error,
        "body": 0,
    }
    assert auth_cookies_set(response) == seen.cookies
    # The app's own cookie survives, and the middleware's come after it.
    assert response.headers.get_list("set-cookie")[0] == APP_COOKIE


@pytest.mark.parametrize("seen", SESSION_CASES)
async def test_protected_path_refuses_without_a_session(
    visit: Visit, inner: Recorder, seen: Seen
) -> None:
    response = await visit(seen.kind, "/protected/deep")
    assert auth_cookies_set(response) == seen.cookies
    if seen.user_id is not None:
        assert response.status_code == 200
        assert response.json()["user_id"] == seen.user_id
        return
    assert not inner.called
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == (seen.error or "MISSING_SESSION")
    assert response.json()["message"]


async def test_refreshed_cookies_follow_every_header_of_the_app(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"set-cookie", b"first=1"), (b"x-app", b"yes"), (b"set-cookie", b"second=2")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"made"})

    sent = cookies_for("expired+good-refresh", crossmint_emulator)
    async with client(wrap(app, async_auth)) as http:
        response = await http.get("/", headers=cookie_header(sent))
    assert response.status_code == 201
    assert response.text == "made"
    assert response.headers["x-app"] == "yes"
    names = [c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")]
    assert names == ["first", "second", JWT, REFRESH]


async def test_cookies_split_over_several_headers_are_joined(
    crossmint_emulator: CrossmintEmulator, middleware: CrossmintASGIMiddleware
) -> None:
    sent = cookies_for("expired+good-refresh", crossmint_emulator)
    # HTTP/2 clients may send one Cookie header per cookie.
    headers = [("cookie", f"{name}={value}") for name, value in sent.items()]
    async with client(middleware) as http:
        response = await http.get("/", headers=headers)
    assert response.json()["user_id"] == USER
    assert auth_cookies_set(response) == "session"


async def test_a_session_seen_before_is_served_again_without_crossmint(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
) -> None:
    sent = cookie_header(cookies_for("valid", crossmint_emulator))
    async with client(middleware) as http:
        first = await http.get("/", headers=sent)
        take_down()
        second = await http.get("/protected", headers=sent)
    assert first.json()["user_id"] == second.json()["user_id"] == USER
    assert crossmint_emulator.requests["jwks"] == 1


async def test_concurrent_requests_with_one_expired_jwt_refresh_once(
    crossmint_emulator: CrossmintEmulator, middleware: CrossmintASGIMiddleware
) -> None:
    sent = cookie_header(cookies_for("expired+good-refresh", crossmint_emulator))
    responses: list[httpx.Response] = []
    async with client(middleware) as http:

        async def one() -> None:
            responses.append(await http.get("/", headers=sent))

        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(one)
    assert [r.json()["user_id"] for r in responses] == [USER] * 20
    assert all(auth_cookies_set(r) == "session" for r in responses)
    # Refresh tokens rotate: one Crossmint call, its answer shared by all.
    assert crossmint_emulator.requests["refresh"] == 1
    assert len({r.cookies[JWT] for r in responses}) == 1


# -- Crossmint down ----------------------------------------------------------------------

# kind, path, Accept, status, whether the app runs
DOWN_CASES = [
    pytest.param("expired+good-refresh", "/", "*/*", 200, True, id="unprotected-refresh-fails"),
    pytest.param("valid", "/", "*/*", 200, True, id="unprotected-keys-unfetchable"),
    pytest.param(
        "expired+good-refresh", "/protected", "*/*", 503, False, id="protected-refresh-fails"
    ),
    pytest.param("valid", "/protected", "*/*", 503, False, id="protected-keys-unfetchable"),
    pytest.param(
        "expired+good-refresh", "/protected", "text/html", 503, False, id="protected-browser"
    ),
]


@pytest.mark.parametrize(("kind", "path", "accept", "status", "app_runs"), DOWN_CASES)
async def test_crossmint_down_keeps_the_cookies(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
    inner: Recorder,
    kind: str,
    path: str,
    accept: str,
    status: int,
    app_runs: bool,
) -> None:
    sent = cookies_for(kind, crossmint_emulator)
    take_down()
    async with client(middleware) as http:
        response = await http.get(path, headers={**cookie_header(sent), "Accept": accept})
    assert response.status_code == status
    assert inner.called is app_runs
    assert auth_cookies_set(response) == "none"
    if app_runs:
        assert response.json()["user_id"] is None
        assert response.json()["error"] == "UPSTREAM_UNAVAILABLE"
    else:
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"] == "UPSTREAM_UNAVAILABLE"


async def test_keys_fetched_before_an_outage_keep_verifying(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
) -> None:
    warm = cookie_header(cookies_for("valid", crossmint_emulator))
    later = cookie_header(cookies_for("valid", crossmint_emulator))
    async with client(middleware) as http:
        await http.get("/", headers=warm)
        take_down()
        response = await http.get("/protected", headers=later)
    assert response.status_code == 200
    assert response.json()["user_id"] == USER


# -- protection: redirect or 401 ---------------------------------------------------------

# method, path, Accept, login_url, status, Location
PROTECT_CASES = [
    pytest.param(
        "GET", "/protected", "text/html", "/login", 302, "/login?next=/protected", id="browser"
    ),
    pytest.param(
        "GET",
        "/protected/a?b=1&c=2",
        "text/html,application/xhtml+xml",
        "/login",
        302,
        "/login?next=/protected/a%3Fb%3D1%26c%3D2",
        id="browser-with-query",
    ),
    pytest.param(
        "HEAD", "/protected", "text/html", "/login", 302, "/login?next=/protected", id="head"
    ),
    pytest.param(
        "GET",
        "/protected",
        "text/html",
        "/auth?via=demo",
        302,
        "/auth?via=demo&next=/protected",
        id="login-url-with-query",
    ),
    pytest.param("GET", "/protected", "application/json", "/login", 401, None, id="api-client"),
    pytest.param("GET", "/protected", "text/html", None, 401, None, id="no-login-url"),
    pytest.param("POST", "/protected", "text/html", "/login", 401, None, id="post"),
    pytest.param("GET", "//protected", "*/*", "/login", 401, None, id="double-slash"),
    pytest.param("GET", "/protected/../protected", "*/*", "/login", 401, None, id="dot-dot"),
    pytest.param("GET", "/protectedness", "*/*", "/login", 200, None, id="not-a-prefix-match"),
]


@pytest.mark.parametrize(
    ("method", "path", "accept", "login_url", "status", "location"), PROTECT_CASES
)
async def test_protected_path_without_session(
    async_auth: AsyncCrossmintAuth,
    inner: Recorder,
    method: str,
    path: str,
    accept: str,
    login_url: str | None,
    status: int,
    location: str | None,
) -> None:
    middleware = wrap(inner, async_auth, login_url=login_url)
    scope = http_scope(method, path.split("?")[0], query=path.partition("?")[2])
    scope["headers"].append((b"accept", accept.encode()))
    sent = await drive_http(middleware, scope, [])
    start = sent[0]
    assert start["status"] == status
    assert header_of(start, b"location") == location
    assert inner.called is (status == 200)
    if status == 401:
        assert json.loads(sent[1]["body"])["error"] == "MISSING_SESSION"


async def test_protect_accepts_a_callable(async_auth: AsyncCrossmintAuth, inner: Recorder) -> None:
    middleware = wrap(inner, async_auth, protect=lambda path: path.startswith("/admin"))
    async with client(middleware) as http:
        assert (await http.get("/admin/x")).status_code == 401
        assert (await http.get("/public")).status_code == 200


# -- the refresh route -------------------------------------------------------------------

# body (or a marker), cookies sent, status, error code, what happens to the cookies
REFRESH_CASES = [
    pytest.param("one-time-secret", "none", 200, None, "session", id="login-secret"),
    pytest.param("refresh-secret", "none", 200, None, "session", id="refresh-secret-in-body"),
    pytest.param(b"{}", "refresh-only", 200, None, "session", id="empty-object-uses-cookie"),
    pytest.param(b"", "refresh-only", 200, None, "session", id="empty-body-uses-cookie"),
    pytest.param(b'{"refresh": null}', "refresh-only", 200, None, "session", id="null-uses-cookie"),
    pytest.param(b"{}", "none", 401, "MISSING_SESSION", "none", id="nothing-to-refresh"),
    pytest.param(b"{not json", "refresh-only", 400, "INVALID_REQUEST", "none", id="bad-json"),
    pytest.param(b"[]", "none", 400, "INVALID_REQUEST", "none", id="json-array"),
    pytest.param(b'{"refresh": 5}', "none", 400, "INVALID_REQUEST", "none", id="secret-not-str"),
    pytest.param(b"\xff\xfe", "none", 400, "INVALID_REQUEST", "none", id="not-utf8"),
    pytest.param(
        b'{"refresh": "unknown"}', "none", 401, "SESSION_EXPIRED", "cleared", id="rejected"
    ),
    pytest.param(
        b"{}", "expired+rejected-refresh", 401, "SESSION_EXPIRED", "cleared", id="rejected-cookie"
    ),
]


@pytest.mark.parametrize(("body", "kind", "status", "error", "cookies"), REFRESH_CASES)
async def test_refresh_route(
    crossmint_emulator: CrossmintEmulator,
    middleware: CrossmintASGIMiddleware,
    inner: Recorder,
    body: bytes | str,
    kind: str,
    status: int,
    error: str | None,
    cookies: str,
) -> None:
    if body == "one-time-secret":
        body = json.dumps({"refresh": crossmint_emulator.one_time_secret(USER, email=EMAIL)})
    elif body == "refresh-secret":
        material = crossmint_emulator.create_session(USER, email=EMAIL)
        body = json.dumps({"refresh": material.refresh_token.secret})
    headers = {
        **cookie_header(cookies_for(kind, crossmint_emulator)),
        "Origin": "http://testserver",
    }
    async with client(middleware) as http:
        response = await http.post("/refresh", content=body, headers=headers)
    assert not inner.called
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["vary"] == "Cookie"
    assert auth_cookies_set(response) == cookies
    answer = response.json()
    if status == 200:
        assert set(answer) == {"jwt", "refreshToken", "user"}
        assert answer["user"]["id"] == USER
        assert response.cookies[JWT] == answer["jwt"]
        assert response.cookies[REFRESH]
        # The HttpOnly secret stays out of the body script can read.
        assert "secret" not in answer["refreshToken"]
        assert answer["refreshToken"]["expiresAt"].endswith("Z")
    else:
        assert answer["error"] == error
        assert answer["message"]


async def test_refresh_route_when_crossmint_is_down(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
) -> None:
    body = json.dumps({"refresh": crossmint_emulator.one_time_secret(USER)})
    take_down()
    async with client(middleware) as http:
        response = await http.post("/refresh", content=body)
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "UPSTREAM_UNAVAILABLE"
    assert auth_cookies_set(response) == "none"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/refresh", id="get-refresh"),
        pytest.param("GET", "/logout", id="get-logout"),
        pytest.param("POST", "/refresh/more", id="post-below-refresh"),
    ],
)
async def test_other_requests_to_the_route_paths_reach_the_app(
    middleware: CrossmintASGIMiddleware, inner: Recorder, method: str, path: str
) -> None:
    async with client(middleware) as http:
        response = await http.request(method, path)
    assert response.status_code == 200
    assert inner.called


async def test_routes_can_move_or_be_turned_off(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth, inner: Recorder
) -> None:
    body = json.dumps({"refresh": crossmint_emulator.one_time_secret(USER)})
    middleware = wrap(inner, async_auth, refresh_path="/auth/refresh", logout_path=None)
    async with client(middleware) as http:
        moved = await http.post("/auth/refresh", content=body)
        old = await http.post("/refresh", content=body)
        logout = await http.post("/logout")
    assert moved.status_code == 200
    assert moved.json()["user"]["id"] == USER
    assert old.json()["body"] == len(body)  # the app answered
    # The app answered the logout too, with the session the refresh just stored.
    assert logout.json()["user_id"] == USER
    assert auth_cookies_set(logout) == "none"
    assert len(inner.scopes) == 2


# -- bodies: bounded, pulled from receive ------------------------------------------------


def http_scope(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    scheme: str = "http",
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class Body:
    """A receive callable that hands out body chunks and counts what was pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled_messages = 0
        self.pulled_bytes = 0

    async def __call__(self) -> Message:
        if self.pulled_messages >= len(self.chunks):
            # Past the end, a real server reports the client gone.
            return {"type": "http.disconnect"}
        chunk = self.chunks[self.pulled_messages]
        self.pulled_messages += 1
        self.pulled_bytes += len(chunk)
        more = self.pulled_messages < len(self.chunks)
        return {"type": "http.request", "body": chunk, "more_body": more}


async def drive_http(app: Any, scope: Scope, chunks: list[bytes] | Body) -> list[Message]:
    receive = chunks if isinstance(chunks, Body) else Body(chunks)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def header_of(start: Message, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in start["headers"] if k.lower() == name]
    return values[0] if values else None


def padded(secret: str, size: int) -> bytes:
    """``{"refresh": secret, "pad": "..."}`` of exactly ``size`` bytes."""
    bare = json.dumps({"refresh": secret, "pad": ""}).encode()
    return json.dumps({"refresh": secret, "pad": "x" * (size - len(bare))}).encode()


CHUNK = 16 * 1024

# body size, chunk size, whether a content-length is declared, status
BODY_CASES = [
    pytest.param(LIMIT, CHUNK, True, 200, id="limit-declared"),
    pytest.param(LIMIT, CHUNK, False, 200, id="limit-chunked"),
    pytest.param(LIMIT + 1, CHUNK, True, 400, id="over-limit-declared"),
    pytest.param(LIMIT + 1, CHUNK, False, 400, id="over-limit-chunked"),
    pytest.param(10 * LIMIT, CHUNK, False, 400, id="far-over-limit-chunked"),
    pytest.param(10 * LIMIT, 1024, False, 400, id="far-over-limit-small-chunks"),
    pytest.param(200, 1, False, 200, id="one-byte-chunks"),
]


@pytest.mark.parametrize(("size", "chunk", "declared", "status"), BODY_CASES)
async def test_refresh_body_is_read_up_to_the_limit(
    crossmint_emulator: CrossmintEmulator,
    middleware: CrossmintASGIMiddleware,
    size: int,
    chunk: int,
    declared: bool,
    status: int,
) -> None:
    body = padded(crossmint_emulator.one_time_secret(USER), size)
    assert len(body) == size
    headers = [(b"content-type", b"application/json")]
    if declared:
        headers.append((b"content-length", str(size).encode()))
    receive = Body([body[i : i + chunk] for i in range(0, size, chunk)])
    sent = await drive_http(middleware, http_scope("POST", "/refresh", headers=headers), receive)
    assert sent[0]["status"] == status
    answer = json.loads(sent[1]["body"])
    if status == 200:
        assert answer["user"]["id"] == USER
        assert receive.pulled_bytes == size
        return
    assert answer["error"] == "INVALID_REQUEST"
    if declared:
        # A declared length over the limit is refused before reading anything.
        assert receive.pulled_messages == 0
    else:
        assert receive.pulled_bytes <= LIMIT + chunk
    assert crossmint_emulator.requests["refresh"] == 0


async def test_client_gone_mid_body_is_a_bad_request(
    crossmint_emulator: CrossmintEmulator, middleware: CrossmintASGIMiddleware
) -> None:
    body = json.dumps({"refresh": crossmint_emulator.one_time_secret(USER)}).encode()
    half = body[: len(body) // 2]

    async def receive() -> Message:
        nonlocal half
        if half:
            chunk, half = half, b""
            return {"type": "http.request", "body": chunk, "more_body": True}
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(http_scope("POST", "/refresh"), receive, send)
    assert sent[0]["status"] == 400
    assert crossmint_emulator.requests["refresh"] == 0


# -- the logout route --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "calls"),
    [
        pytest.param("valid", 1, id="with-session"),
        pytest.param("refresh-only", 1, id="refresh-cookie-only"),
        pytest.param("valid-jwt-only", 0, id="jwt-only"),
        pytest.param("none", 0, id="anonymous"),
    ],
)
async def test_logout_route(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    inner: Recorder,
    kind: str,
    calls: int,
) -> None:
    sent = cookies_for(kind, crossmint_emulator)
    async with client(wrap(inner, async_auth)) as http:
        response = await http.post("/logout", headers=cookie_header(sent))
    assert not inner.called
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert auth_cookies_set(response) == "cleared"
    assert crossmint_emulator.requests["logout"] == calls
    if REFRESH in sent:
        # Crossmint revoked the secret: it can no longer be refreshed.
        with pytest.raises(CrossmintAuthError) as refused:
            await async_auth.refresh(sent[REFRESH])
        assert refused.value.code is ErrorCode.SESSION_EXPIRED


async def test_logout_clears_cookies_even_when_crossmint_is_down(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
) -> None:
    sent = cookie_header(cookies_for("valid", crossmint_emulator))
    take_down()
    async with client(middleware) as http:
        response = await http.post("/logout", headers=sent)
    assert response.status_code == 200
    assert auth_cookies_set(response) == "cleared"


async def test_logout_clears_the_project_scoped_names_too(
    crossmint_emulator: CrossmintEmulator, middleware: CrossmintASGIMiddleware
) -> None:
    sent = cookie_header(cookies_for("project-scoped-names", crossmint_emulator))
    async with client(middleware) as http:
        response = await http.post("/logout", headers=sent)
    cleared = {c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")}
    project = crossmint_emulator.project_id
    assert cleared == {JWT, REFRESH, f"{JWT}-{project}", f"{REFRESH}-{project}"}


# -- cross-site POSTs --------------------------------------------------------------------

# Origin, Sec-Fetch-Site, allowed origins, whether the POST is allowed
ORIGIN_CASES = [
    pytest.param("http://testserver", None, (), True, id="same-origin"),
    pytest.param("https://testserver", None, (), True, id="same-host-behind-tls-proxy"),
    pytest.param(None, None, (), True, id="no-origin-non-browser"),
    pytest.param(None, "same-origin", (), True, id="fetch-site-same-origin"),
    pytest.param(None, "none", (), True, id="fetch-site-none"),
    pytest.param("https://evil.example", None, (), False, id="cross-site-origin"),
    pytest.param("http://testserver.evil.example", None, (), False, id="lookalike-host"),
    pytest.param("null", None, (), False, id="null-origin"),
    pytest.param(None, "cross-site", (), False, id="fetch-site-cross-site"),
    pytest.param(None, "same-site", (), False, id="fetch-site-same-site"),
    pytest.param("https://app.example", None, ("https://app.example/",), True, id="allowed-origin"),
    pytest.param(
        "https://APP.example", None, ("https://app.example",), True, id="allowed-origin-case"
    ),
]


@pytest.mark.parametrize("route", ["/refresh", "/logout"])
@pytest.mark.parametrize(("origin", "fetch_site", "allowed", "ok"), ORIGIN_CASES)
async def test_cross_site_posts_are_refused(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    inner: Recorder,
    route: str,
    origin: str | None,
    fetch_site: str | None,
    allowed: tuple[str, ...],
    ok: bool,
) -> None:
    headers = cookie_header(cookies_for("valid", crossmint_emulator))
    if origin is not None:
        headers["Origin"] = origin
    if fetch_site is not None:
        headers["Sec-Fetch-Site"] = fetch_site
    middleware = wrap(inner, async_auth, allowed_origins=allowed)
    async with client(middleware) as http:
        response = await http.post(route, content=b"{}", headers=headers)
    assert not inner.called
    counter = "refresh" if route == "/refresh" else "logout"
    if ok:
        assert response.status_code == 200
        assert crossmint_emulator.requests[counter] == 1
    else:
        assert response.status_code == 403
        assert response.json()["error"] == "FORBIDDEN_ORIGIN"
        assert auth_cookies_set(response) == "none"
        assert crossmint_emulator.requests[counter] == 0


# -- https: Secure cookies ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("https", "secure"),
    [pytest.param(True, True, id="https"), pytest.param(False, False, id="http")],
)
@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        pytest.param("GET", "/", "expired+good-refresh", id="refreshed"),
        pytest.param("GET", "/", "expired+rejected-refresh", id="cleared"),
        pytest.param("POST", "/refresh", "refresh-only", id="refresh-route"),
        pytest.param("POST", "/logout", "valid", id="logout-route"),
    ],
)
async def test_https_requests_get_secure_cookies(
    crossmint_emulator: CrossmintEmulator,
    middleware: CrossmintASGIMiddleware,
    https: bool,
    secure: bool,
    method: str,
    path: str,
    kind: str,
) -> None:
    headers = cookie_header(cookies_for(kind, crossmint_emulator))
    async with client(middleware, https=https) as http:
        response = await http.request(method, path, headers=headers)
    values = [c for c in response.headers.get_list("set-cookie") if c.startswith("crossmint-")]
    assert len(values) >= 2
    assert all(("; Secure" in c) is secure for c in values)
    jwt_cookie = next(c for c in values if c.startswith(f"{JWT}="))
    assert "HttpOnly" not in jwt_cookie  # the browser SDK reads it


# -- lifespan and shared state -----------------------------------------------------------


async def test_lifespan_passes_through_untouched(async_auth: AsyncCrossmintAuth) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))
        assert (await receive())["type"] == "lifespan.startup"
        scope["state"]["pool"] = "ready"
        await send({"type": "lifespan.startup.complete"})

    state: dict[str, Any] = {}
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    snapshot = dict(scope)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await wrap(app, async_auth)(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert seen[0][0] is scope
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert scope == {**snapshot, "state": {"pool": "ready"}}
    assert scope["state"] is state


@pytest.mark.parametrize(
    "shared",
    [
        pytest.param(None, id="no-state"),
        pytest.param({}, id="empty-state"),
        pytest.param({"pool": "db", "crossmint_session": "left by lifespan"}, id="with-entries"),
    ],
)
@pytest.mark.parametrize("kind", ["none", "valid", "expired+good-refresh"])
async def test_shared_lifespan_state_is_never_mutated(
    crossmint_emulator: CrossmintEmulator,
    middleware: CrossmintASGIMiddleware,
    inner: Recorder,
    shared: dict[str, Any] | None,
    kind: str,
) -> None:
    snapshot = None if shared is None else dict(shared)

    async def server(scope: Scope, receive: Receive, send: Send) -> None:
        # A server hands every request the same lifespan dict (the worst case:
        # uvicorn and hypercorn pass a shallow copy).
        if shared is not None:
            scope["state"] = shared
        await middleware(scope, receive, send)

    middleware = middleware
    headers = cookie_header(cookies_for(kind, crossmint_emulator))
    async with client(server) as http:
        for _ in range(2):  # the second request may take a fast path
            response = await http.get("/", headers=headers)
            assert response.status_code == 200
    assert shared == snapshot
    for seen in inner.states:
        assert set(seen) == {*(snapshot or {}), "crossmint_session", "crossmint_error"}
        assert seen.get("pool") == (snapshot or {}).get("pool")
        session = seen["crossmint_session"]
        assert (session.user_id if session else None) == (None if kind == "none" else USER)
    assert all(scope["state"] is not shared for scope in inner.scopes)


async def test_unknown_scope_types_pass_through(async_auth: AsyncCrossmintAuth) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope = {"type": "something.new", "state": {"x": 1}}

    async def receive() -> Message:
        raise AssertionError("not expected")

    async def send(message: Message) -> None:
        raise AssertionError("not expected")

    await wrap(app, async_auth)(scope, receive, send)
    assert seen == [{"type": "something.new", "state": {"x": 1}}]


# -- websockets --------------------------------------------------------------------------


def websocket_scope(path: str, cookies: dict[str, str], scheme: str = "ws") -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"upgrade", b"websocket")]
    if cookies:
        headers.append((b"cookie", cookie_header(cookies)["Cookie"].encode()))
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        "state": {},
    }


async def drive_websocket(app: Any, scope: Scope) -> list[Message]:
    """Run one websocket connection: the client connects, then reads until a close."""
    to_app_send, to_app_receive = anyio.create_memory_object_stream[Message](10)
    to_client_send, to_client_receive = anyio.create_memory_object_stream[Message](10)
    received: list[Message] = []

    async def run_app() -> None:
        async with to_client_send:
            await app(scope, to_app_receive.receive, to_client_send.send)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks, to_app_send, to_client_receive:
            tasks.start_soon(run_app)
            await to_app_send.send({"type": "websocket.connect"})
            async for message in to_client_receive:
                received.append(message)
                if message["type"] == "websocket.close":
                    await to_app_send.send({"type": "websocket.disconnect", "code": 1000})
                    break
    to_app_receive.close()
    return received


# path, kind, what the client gets: the text sent, or a close code before any accept
WEBSOCKET_CASES = [
    pytest.param("/ws", "none", "anonymous", id="anonymous"),
    pytest.param("/ws", "valid", USER, id="valid-session"),
    pytest.param("/ws", "expired+good-refresh", USER, id="expired-jwt-refreshed"),
    pytest.param("/ws", "expired+rejected-refresh", "anonymous", id="rejected-refresh"),
    pytest.param("/ws", "bad-signature", "anonymous", id="invalid-token"),
    pytest.param("/ws/private", "valid", USER, id="protected-valid"),
    pytest.param("/ws/private", "expired+good-refresh", USER, id="protected-refreshed"),
    pytest.param("/ws/private", "none", 1008, id="protected-anonymous"),
    pytest.param("/ws/private/room", "expired+rejected-refresh", 1008, id="protected-rejected"),
    pytest.param("/ws/private", "bad-signature", 1008, id="protected-invalid-token"),
]


@pytest.mark.parametrize(("path", "kind", "expected"), WEBSOCKET_CASES)
async def test_websocket_handshake(
    crossmint_emulator: CrossmintEmulator,
    middleware: CrossmintASGIMiddleware,
    inner: Recorder,
    path: str,
    kind: str,
    expected: str | int,
) -> None:
    scope = websocket_scope(path, cookies_for(kind, crossmint_emulator))
    received = await drive_websocket(middleware, scope)
    if isinstance(expected, int):
        # Closed before an accept: the server refuses the handshake.
        assert [m["type"] for m in received] == ["websocket.close"]
        assert received[0]["code"] == expected
        assert not inner.called
        return
    assert [m["type"] for m in received] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert received[1]["text"] == expected
    # No cookie can be set on a websocket: a refresh's cookies are dropped.
    assert not received[0].get("headers")
    assert crossmint_emulator.requests["refresh"] == (1 if kind.startswith("expired+") else 0)


async def test_websocket_with_crossmint_down_is_refused_on_protected_paths(
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
    middleware: CrossmintASGIMiddleware,
    inner: Recorder,
) -> None:
    cookies = cookies_for("expired+good-refresh", crossmint_emulator)
    take_down()
    middleware = middleware
    refused = await drive_websocket(middleware, websocket_scope("/ws/private", cookies))
    allowed = await drive_websocket(middleware, websocket_scope("/ws", cookies))
    assert [(m["type"], m["code"]) for m in refused] == [("websocket.close", 1008)]
    assert allowed[1]["text"] == "anonymous"
    assert inner.states[0]["crossmint_error"].code is ErrorCode.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(
    ("origin", "path", "expected"),
    [
        pytest.param(b"http://testserver", "/ws", USER, id="same-origin"),
        pytest.param(b"https://evil.example", "/ws", "anonymous", id="cross-site-unprotected"),
        pytest.param(b"https://evil.example", "/ws/private", 1008, id="cross-site-protected"),
        pytest.param(b"https://app.example", "/ws/private", USER, id="allowed-origin"),
    ],
)
async def test_cross_site_websockets_get_no_session(
    crossmint_emulator: CrossmintEmulator,
    async_auth: AsyncCrossmintAuth,
    inner: Recorder,
    origin: bytes,
    path: str,
    expected: str | int,
) -> None:
    # Browsers send cookies with cross-site websockets: the cookies alone prove nothing.
    scope = websocket_scope(path, cookies_for("valid", crossmint_emulator))
    scope["headers"].append((b"origin", origin))
    middleware = CrossmintASGIMiddleware(
        inner,
        async_auth,
        protect=["/protected/:path*", "/ws/private/:path*"],
        allowed_origins=["https://app.example"],
    )
    received = await drive_websocket(middleware, scope)
    if isinstance(expected, int):
        assert [(m["type"], m["code"]) for m in received] == [("websocket.close", expected)]
        return
    assert received[1]["text"] == expected
    if expected == "anonymous":
        assert inner.states[-1]["crossmint_error"].code is ErrorCode.FORBIDDEN_ORIGIN


# -- security round 3: repeated cookie names, caching ------------------------------------------


async def _public_app(scope: Scope, receive: Receive, send: Send) -> None:
    session = scope["state"]["crossmint_session"]
    error = scope["state"]["crossmint_error"]
    headers = [
        (b"cache-control", b"public, max-age=60"),
        (b"vary", b"Accept-Encoding"),
        (b"set-cookie", b"app=1"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = {"jwt": session.jwt if session else None, "error": error.code.value if error else None}
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def test_a_refresh_on_the_apps_answer_makes_it_private(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    sent = cookies_for("expired+good-refresh", crossmint_emulator)
    async with client(wrap(_public_app, async_auth)) as http:
        response = await http.get("/", headers=cookie_header(sent))
    assert response.headers.get_list("cache-control") == ["private, no-store, max-age=60"]
    assert response.headers.get_list("vary") == ["Accept-Encoding, Cookie"]
    names = [c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")]
    assert names == ["app", JWT, REFRESH]


async def test_an_answer_without_our_cookies_is_the_apps(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    sent = cookies_for("valid", crossmint_emulator)
    async with client(wrap(_public_app, async_auth)) as http:
        response = await http.get("/", headers=cookie_header(sent))
    assert response.json()["jwt"] == sent[JWT]
    assert response.headers.get_list("cache-control") == ["public, max-age=60"]
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(["{a}; {b}"], id="one-line"),
        pytest.param(["{b}; {a}"], id="one-line-reversed"),
        pytest.param(["{a}", "{b}"], id="two-lines"),
        pytest.param(["x=1; {b}", "{a}"], id="two-lines-reversed"),
    ],
)
async def test_a_jwt_cookie_with_two_values_gives_no_session(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth, lines: list[str]
) -> None:
    genuine = crossmint_emulator.issue_jwt("mallory")
    other = crossmint_emulator.issue_jwt("victim-admin")  # genuine too: still refused
    headers = [("cookie", line.format(a=f"{JWT}={genuine}", b=f"{JWT}={other}")) for line in lines]
    async with client(wrap(_public_app, async_auth)) as http:
        response = await http.get("/", headers=headers)
        protected = await http.get("/protected/x", headers=headers)
    assert response.json() == {"jwt": None, "error": "INVALID_TOKEN"}
    assert auth_cookies_set(response) == "cleared"
    assert response.headers.get_list("cache-control") == ["private, no-store, max-age=60"]
    assert protected.status_code == 401
    assert protected.json()["error"] == "INVALID_TOKEN"
    assert JWT in protected.json()["message"]
    assert genuine not in protected.text
    assert auth_cookies_set(protected) == "cleared"
