"""Bad input from clients, for both middlewares: never a 500, never a traceback.

Two halves. The explicit tables of :data:`reliability_cases.BAD_INPUT_ROWS`
(``Cookie`` headers, refresh and logout bodies, methods and paths), each with
the exact status and code it must earn. Then properties with hypothesis:
arbitrary bytes in the ``Cookie`` header and in the bodies, arbitrary methods
and raw paths. Requests are handed to the middlewares in-process with exactly
the bytes given (a WSGI environ, an ASGI scope): no HTTP client in between
normalizes them. The probe app behind raises if it is ever handed a
half-decided session or reached on a protected path without one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_cases import (
    BAD_INPUT_ROWS,
    JWT_COOKIE,
    PROTECTED,
    PUBLIC,
    REFRESH_COOKIE,
    BadInput,
    Expect,
    Reply,
    Req,
    asgi_scope,
    asgi_stack,
    call_asgi,
    call_wsgi,
    is_protected,
    make_async_auth,
    make_auth,
    problems_with,
    pytest_params,
    universal_problems,
    wsgi_environ,
    wsgi_stack,
)

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth
from crossmint_wsgi.testing import CrossmintEmulator

ROWS = pytest_params(BAD_INPUT_ROWS)

#: Few enough examples that the file runs in well under a minute.
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def auth(crossmint_emulator: CrossmintEmulator) -> Iterator[CrossmintAuth]:
    # Thousands of random secrets from one address: the flood bound (tests/test_limits.py)
    # would answer most of them without asking Crossmint.
    with make_auth(crossmint_emulator.crossmint(), leeway=0, refresh_failure_limit=0) as instance:
        yield instance


@pytest.fixture
async def async_auth(crossmint_emulator: CrossmintEmulator) -> AsyncIterator[AsyncCrossmintAuth]:
    async with make_async_auth(
        crossmint_emulator.crossmint(), leeway=0, refresh_failure_limit=0
    ) as instance:
        yield instance


def test_the_tables_cover_the_issue() -> None:
    groups = {row.group for row in BAD_INPUT_ROWS}
    assert groups == {"Cookie header", "refresh body", "logout body", "method and path"}
    names = {row.name for row in BAD_INPUT_ROWS}
    for required in (
        "high-bytes-not-utf-8-public",
        "non-latin-1-utf-8-protected",
        "8-kib-jwt-protected",
        "duplicated-name-garbage-first-public",
        "empty-values-protected",
        "quoted-with-escapes-public",
        "nesting-100000-deep",
        "10-mb",
        "10-mb-chunked-no-length",
        "refresh-number",
        "head-refresh",
        "options-refresh",
        "post-encoded-slash-refresh",
        "post-refresh-query",
    ):
        assert required in names


# -- the tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS)
def test_wsgi(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, row: BadInput) -> None:
    reply = call_wsgi(wsgi_stack(auth), row.build(crossmint_emulator))
    assert problems_with(reply, row.expect, row.user) == []


@pytest.mark.anyio
@pytest.mark.parametrize("row", ROWS)
async def test_asgi(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator, row: BadInput
) -> None:
    reply = await call_asgi(asgi_stack(async_auth), row.build(crossmint_emulator))
    assert problems_with(reply, row.expect, row.user) == []


# -- what only one of the two interfaces can carry ----------------------------------------


def test_wsgi_body_shorter_than_its_content_length(auth: CrossmintAuth) -> None:
    """A truncated body (the client hung up) is a malformed request, not a crash."""
    environ = wsgi_environ(Req("POST", "/refresh", body=b'{"refresh": "ab'))
    environ["CONTENT_LENGTH"] = "4000"
    reply = _call_environ(wsgi_stack(auth), environ)
    assert problems_with(reply, Expect(400, "INVALID_REQUEST", app=False)) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("wsgi.input", None, id="no-wsgi-input"),
        pytest.param("CONTENT_LENGTH", "-5", id="negative-length"),
        pytest.param("CONTENT_LENGTH", "1e3", id="float-length"),
        pytest.param("HTTP_HOST", None, id="no-host"),
        pytest.param("SERVER_NAME", None, id="no-host-no-server-name"),
    ],
)
def test_wsgi_odd_environ_on_the_refresh_route(
    auth: CrossmintAuth, key: str, value: str | None
) -> None:
    environ = wsgi_environ(Req("POST", "/refresh", body=b"{}"))
    if key == "SERVER_NAME":
        environ.pop("HTTP_HOST")
    if value is None:
        environ.pop(key)
    else:
        environ[key] = value
    reply = _call_environ(wsgi_stack(auth), environ)
    assert problems_with(reply, Expect(401, "MISSING_SESSION", app=False)) == []


def test_wsgi_empty_path_info(auth: CrossmintAuth) -> None:
    environ = wsgi_environ(Req())
    environ["PATH_INFO"] = ""
    reply = _call_environ(wsgi_stack(auth), environ)
    assert problems_with(reply, Expect(200, None, app=True, user=False)) == []


def _call_environ(app: Any, environ: dict[str, Any]) -> Reply:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split()[0])
        captured["headers"] = [(name.lower(), value) for name, value in headers]
        return lambda data: None

    body = b"".join(app(environ, start_response))
    return Reply(captured["status"], captured["headers"], body)


@pytest.mark.anyio
async def test_asgi_client_disconnects_mid_body(async_auth: AsyncCrossmintAuth) -> None:
    messages = [
        {"type": "http.request", "body": b'{"refresh": "ab', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi_stack(async_auth)(asgi_scope(Req("POST", "/refresh")), receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "INVALID_REQUEST"


@pytest.mark.anyio
async def test_asgi_cookies_split_over_several_headers(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    """HTTP/2 may send one ``cookie`` header per cookie: all of them are read."""
    material = crossmint_emulator.create_session("split-user")
    req = Req(
        path=PROTECTED,
        headers=(
            ("cookie", b"a=1"),
            ("cookie", f"{JWT_COOKIE}={material.jwt}".encode()),
            ("cookie", f"{REFRESH_COOKIE}={material.refresh_token.secret}".encode()),
        ),
    )
    reply = await call_asgi(asgi_stack(async_auth), req)
    assert problems_with(reply, Expect(200, None, app=True, user=True), "split-user") == []


@pytest.mark.anyio
async def test_asgi_non_latin_1_path_and_query(async_auth: AsyncCrossmintAuth) -> None:
    """ASGI paths are text: a protected path in any script still redirects safely."""
    req = Req(
        path="/protected/%E2%9C%93%F0%9F%98%80",
        query="x=%FF",
        headers=(("accept", b"text/html"),),
    )
    reply = await call_asgi(asgi_stack(async_auth), req)
    assert problems_with(reply, Expect(302, None, app=False)) == []
    location = reply.header("location") or ""
    assert location.startswith("/login?next=/protected/")
    assert location.isascii()


# -- properties ---------------------------------------------------------------------------

AUTH_NAMES = [JWT_COOKIE, REFRESH_COOKIE, "crossmint-jwt-project", "other", ""]

cookie_values = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda text: text.encode("utf-8")),
    st.sampled_from([b"", b'""', b'"a\\"b"', b"a.b.c", b"e30.e30.", b"=" * 5, b";", b"\\"]),
)
structured_cookies = st.lists(
    st.tuples(st.sampled_from(AUTH_NAMES), cookie_values), max_size=6
).map(lambda pairs: b"; ".join(name.encode() + b"=" + value for name, value in pairs))
any_cookie = st.one_of(st.binary(max_size=2000), structured_cookies)


def cookie_reply_problems(reply: Reply, path: str) -> list[str]:
    problems = universal_problems(reply)
    code = reply.code
    cleared = bool(reply.auth_cookies)
    if path == PUBLIC:
        if reply.status != 200 or not reply.app_ran:
            problems.append(f"public path answered {reply.status} without the app")
        if code not in (None, "INVALID_TOKEN", "SESSION_EXPIRED"):
            problems.append(f"public path handed the app {code}")
    else:
        if reply.status != 401 or reply.app_ran:
            problems.append(f"protected path answered {reply.status}")
        if code not in ("MISSING_SESSION", "INVALID_TOKEN", "SESSION_EXPIRED"):
            problems.append(f"protected path refused with {code}")
    if cleared != (code in ("INVALID_TOKEN", "SESSION_EXPIRED")):
        problems.append(f"cookies {'cleared' if cleared else 'kept'} with {code}")
    if reply.user is not None:
        problems.append("a random cookie yielded a session")
    return problems


@PROPERTY
@given(cookie=any_cookie, path=st.sampled_from([PUBLIC, PROTECTED]))
def test_wsgi_any_cookie_header(auth: CrossmintAuth, cookie: bytes, path: str) -> None:
    reply = call_wsgi(wsgi_stack(auth), Req(path=path, cookie=cookie))
    assert cookie_reply_problems(reply, path) == []


@pytest.mark.anyio
@PROPERTY
@given(cookie=any_cookie, path=st.sampled_from([PUBLIC, PROTECTED]))
async def test_asgi_any_cookie_header(
    async_auth: AsyncCrossmintAuth, cookie: bytes, path: str
) -> None:
    reply = await call_asgi(asgi_stack(async_auth), Req(path=path, cookie=cookie))
    assert cookie_reply_problems(reply, path) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["refresh", "jwt", "x", ""]) | st.text(max_size=8), children, max_size=4
        )
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.builds(
        lambda depth, opener: opener * depth,
        st.integers(min_value=1, max_value=70_000),
        st.sampled_from([b"[", b'{"a":', b"[{"]),
    ),
)


def body_reply_problems(reply: Reply, route: str, declared: int | None) -> list[str]:
    """``declared``: the Content-Length sent, ``None`` for a chunked body."""
    problems = universal_problems(reply)
    if reply.app_ran:
        problems.append("the app ran for its route")
    code = reply.code
    if declared is not None and declared > 64 * 1024:
        # Refused from its declared length alone, before a byte is read.
        if (reply.status, code) != (400, "INVALID_REQUEST") or reply.auth_cookies:
            problems.append(f"a declared {declared} B body answered {reply.status} {code}")
    elif route == "/logout":
        if (reply.status, code) != (200, None) or set(reply.auth_cookies.values()) != {""}:
            problems.append(f"logout answered {reply.status} {code}")
    elif (reply.status, code) not in (
        (400, "INVALID_REQUEST"),
        (401, "MISSING_SESSION"),
        (401, "SESSION_EXPIRED"),
    ):
        problems.append(f"refresh answered {reply.status} {code}")
    return problems


@PROPERTY
@given(
    body=bodies,
    route=st.sampled_from(["/refresh", "/logout"]),
    chunked=st.booleans(),
)
def test_wsgi_any_body(auth: CrossmintAuth, body: bytes, route: str, chunked: bool) -> None:
    reply = call_wsgi(wsgi_stack(auth), Req("POST", route, body=body, chunked=chunked))
    assert body_reply_problems(reply, route, None if chunked else len(body)) == []


@pytest.mark.anyio
@PROPERTY
@given(
    body=bodies,
    route=st.sampled_from(["/refresh", "/logout"]),
    chunk=st.integers(min_value=1, max_value=70_000),
)
async def test_asgi_any_body(
    async_auth: AsyncCrossmintAuth, body: bytes, route: str, chunk: int
) -> None:
    reply = await call_asgi(asgi_stack(async_auth), Req("POST", route, body=body), chunk=chunk)
    assert body_reply_problems(reply, route, len(body)) == []


methods = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "post", "X"]
)
raw_paths = st.lists(
    st.sampled_from(
        ["refresh", "logout", "protected", "public", "..", ".", "", "%2F", "%2e", "%2E%2E", "x;y"]
    )
    | st.text(alphabet="abc%/.;~-_:@!$&'()*+,= ", max_size=8),
    max_size=5,
).map(lambda segments: "/" + "/".join(segments))


def route_reply_problems(reply: Reply, method: str, raw_path: str) -> list[str]:
    problems = universal_problems(reply)
    if reply.status not in (200, 302, 400, 401):
        problems.append(f"status {reply.status}")
    if reply.app_ran and is_protected(_decoded(raw_path)):
        problems.append("the app ran on a protected path")
    return problems


def _decoded(raw_path: str) -> str:
    from urllib.parse import unquote

    return unquote(raw_path, errors="replace")


@PROPERTY
@given(method=methods, path=raw_paths, query=st.text(alphabet="a=&%/?", max_size=10))
def test_wsgi_any_method_and_path(auth: CrossmintAuth, method: str, path: str, query: str) -> None:
    reply = call_wsgi(wsgi_stack(auth), Req(method, path, query=query, body=b"{}"))
    assert route_reply_problems(reply, method, path) == []


@pytest.mark.anyio
@PROPERTY
@given(method=methods, path=raw_paths, query=st.text(alphabet="a=&%/?", max_size=10))
async def test_asgi_any_method_and_path(
    async_auth: AsyncCrossmintAuth, method: str, path: str, query: str
) -> None:
    reply = await call_asgi(asgi_stack(async_auth), Req(method, path, query=query, body=b"{}"))
    assert route_reply_problems(reply, method, path) == []


def test_the_property_helpers_fail_on_a_bad_reply() -> None:
    """The property checks can fail: a 500 with a traceback is caught."""
    bad = Reply(500, [("content-type", "text/plain")], b"Traceback (most recent call last)")
    assert cookie_reply_problems(bad, PUBLIC)
    assert body_reply_problems(bad, "/refresh", 10)
    assert route_reply_problems(bad, "GET", "/x")
    cleared_on_missing = Reply(
        401,
        [
            ("content-type", "application/json"),
            ("set-cookie", f"{JWT_COOKIE}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
        b'{"error": "MISSING_SESSION", "message": "x"}',
    )
    assert cookie_reply_problems(cleared_on_missing, PROTECTED)


# -- strings that reach hashing, encoding or a header -----------------------------------------

#: Any code point, lone surrogates and control characters included.
hostile_text = st.text(st.characters(exclude_categories=()), min_size=1, max_size=24) | (
    st.sampled_from(["\ud800", "\udfff\ud800", "a\x00b", "a\r\nSet-Cookie: x=1", "\x7f", "é"])
)


@PROPERTY
@given(secret=hostile_text, route=st.sampled_from(["/refresh", "/logout"]))
def test_wsgi_hostile_secrets_in_bodies(auth: CrossmintAuth, secret: str, route: str) -> None:
    body = json.dumps({"refresh": secret}).encode()
    reply = call_wsgi(wsgi_stack(auth), Req("POST", route, body=body))
    assert body_reply_problems(reply, route, len(body)) == []


@pytest.mark.anyio
@PROPERTY
@given(secret=hostile_text, route=st.sampled_from(["/refresh", "/logout"]))
async def test_asgi_hostile_secrets_in_bodies(
    async_auth: AsyncCrossmintAuth, secret: str, route: str
) -> None:
    body = json.dumps({"refresh": secret}).encode()
    reply = await call_asgi(asgi_stack(async_auth), Req("POST", route, body=body))
    assert body_reply_problems(reply, route, len(body)) == []


@PROPERTY
@given(value=hostile_text, name=st.sampled_from([JWT_COOKIE, REFRESH_COOKIE]))
def test_wsgi_hostile_cookie_values(auth: CrossmintAuth, value: str, name: str) -> None:
    # A WSGI server hands the header as latin-1 text: encode what can be, as servers do.
    cookie = f"{name}={value}".encode("utf-8", "surrogatepass")
    for path in (PUBLIC, PROTECTED):
        reply = call_wsgi(wsgi_stack(auth), Req(path=path, cookie=cookie))
        assert cookie_reply_problems(reply, path) == []


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"secret": "\ud800"}, id="lone-surrogate-secret"),
        pytest.param({"secret": "a\r\nSet-Cookie: evil=1"}, id="crlf-secret"),
        pytest.param({"secret": "a\x00b"}, id="nul-secret"),
        pytest.param({"secret": "sécret"}, id="non-ascii-secret"),
        pytest.param({"jwt": "\ud800.\ud800.\ud800"}, id="lone-surrogate-jwt"),
    ],
)
@pytest.mark.parametrize("path", [PUBLIC, PROTECTED, "/refresh"])
def test_hostile_strings_from_crossmint_are_unavailable_not_500(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, answer: dict[str, str], path: str
) -> None:
    login = crossmint_emulator.create_session("user-hostile", jwt_ttl=-30)
    good = crossmint_emulator.create_session("user-hostile")
    body = {
        "jwt": answer.get("jwt", good.jwt),
        "refresh": {"secret": answer.get("secret", "s"), "expiresAt": "2030-01-01T00:00:00Z"},
    }
    # ensure_ascii: the emulator sends these bytes as they are, escapes and all.
    crossmint_emulator.fail_next(status=200, body=json.dumps(body).encode(), endpoint="refresh")
    cookie = f"{JWT_COOKIE}={login.jwt}; {REFRESH_COOKIE}={login.refresh_token.secret}".encode()
    method = "POST" if path == "/refresh" else "GET"
    reply = call_wsgi(wsgi_stack(auth), Req(method, path, cookie=cookie, body=b"{}"))
    assert universal_problems(reply) == []
    if path == PUBLIC:
        assert (reply.status, reply.code) == (200, "UPSTREAM_UNAVAILABLE")
    else:
        assert (reply.status, reply.code) == (503, "UPSTREAM_UNAVAILABLE")
    assert reply.auth_cookies == {}  # kept: Crossmint misspoke, the user did nothing wrong
