"""CrossmintWSGIMiddleware in process, with werkzeug's test client, against the emulator."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bottle
import flask
import pytest
from werkzeug.test import Client, EnvironBuilder, TestResponse, run_wsgi_app

from crossmint_wsgi import (
    CookieOptions,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    ErrorCode,
    Session,
    get_session,
    require_session,
)
from crossmint_wsgi.models import AuthMaterial
from crossmint_wsgi.testing import CrossmintEmulator

MAX_BODY = 64 * 1024
APP_COOKIE = "app-cookie=kept; Path=/"

# -- the app behind the middleware, and helpers ---------------------------------------------


class Recorder:
    """A tiny WSGI app: remembers what the middleware published and sets a cookie of its own."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = environ["crossmint.session"]
        error = environ["crossmint.error"]
        self.calls.append({"session": session, "error": error, "path": environ["PATH_INFO"]})
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", APP_COOKIE)])
        return [b"app"]

    @property
    def last(self) -> dict[str, Any]:
        assert self.calls, "the app was not called"
        return self.calls[-1]


Build = Callable[..., tuple[Client, Recorder]]


@pytest.fixture
def build(crossmint_emulator: CrossmintEmulator) -> Iterator[Build]:
    """Wrap a fresh Recorder with the middleware: ``build(**middleware_kwargs)``.

    ``cookie_options`` and ``auth_settings`` go to CrossmintAuth (leeway 0: expiry is exact).
    """
    auths: list[CrossmintAuth] = []

    def make(
        *, cookie_options: CookieOptions | None = None, auth_settings: Any = None, **kwargs: Any
    ) -> tuple[Client, Recorder]:
        auth = CrossmintAuth(
            crossmint_emulator.crossmint(),
            leeway=0,
            cookie_options=cookie_options,
            **(auth_settings or {}),
        )
        auths.append(auth)
        recorder = Recorder()
        kwargs.setdefault("protect", ["/protected/:path*"])
        kwargs.setdefault("login_url", "/login")
        return Client(
            CrossmintWSGIMiddleware(recorder, auth, **kwargs), use_cookies=False
        ), recorder

    yield make
    for auth in auths:
        auth.close()


def cookie_header(material: AuthMaterial | None = None, **cookies: str) -> str:
    values = {}
    if material is not None:
        values = {
            "crossmint-jwt": material.jwt,
            "crossmint-refresh-token": material.refresh_token.secret,
        }
    values.update({name.replace("_", "-"): value for name, value in cookies.items()})
    return "; ".join(f"{name}={value}" for name, value in values.items())


def set_cookies(response: TestResponse) -> list[tuple[str, str, dict[str, str]]]:
    """(name, value, lowercased attributes) of each Set-Cookie header, in order."""
    found = []
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        attrs = {}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            attrs[key.lower()] = attr_value
        found.append((name, value, attrs))
    return found


def auth_cookie_names(response: TestResponse) -> list[str]:
    return [name for name, _, _ in set_cookies(response) if name.startswith("crossmint-")]


def assert_cleared(response: TestResponse, *names: str) -> None:
    cleared = {
        name for name, value, attrs in set_cookies(response) if name.startswith("crossmint-")
    }
    assert cleared == {"crossmint-jwt", "crossmint-refresh-token", *names}
    for name, value, attrs in set_cookies(response):
        if name.startswith("crossmint-"):
            assert value == ""
            assert "1970" in attrs["expires"]


def assert_stored(response: TestResponse, material_json: dict[str, Any] | None = None) -> None:
    """Both auth cookies are set with the new material (the JSON answer's, when given)."""
    cookies = {name: (value, attrs) for name, value, attrs in set_cookies(response)}
    jwt, jwt_attrs = cookies["crossmint-jwt"]
    secret, secret_attrs = cookies["crossmint-refresh-token"]
    assert jwt
    assert secret
    assert "httponly" not in jwt_attrs  # the browser SDK reads the JWT cookie
    assert "httponly" in secret_attrs
    if material_json is not None:
        assert jwt == material_json["jwt"]
        # The HttpOnly secret stays out of the body script can read.
        assert "secret" not in material_json["refreshToken"]


def error_of(response: TestResponse) -> str:
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert isinstance(payload["message"], str)
    assert payload["message"]
    return str(payload["error"])


# -- every other request: the session is resolved and published -----------------------------


def no_cookies(emulator: CrossmintEmulator) -> str:
    return ""


def valid(emulator: CrossmintEmulator) -> str:
    return cookie_header(emulator.create_session("user-1"))


def expired_jwt(emulator: CrossmintEmulator) -> str:
    return cookie_header(emulator.create_session("user-1", jwt_ttl=-30))


def only_refresh(emulator: CrossmintEmulator) -> str:
    material = emulator.create_session("user-1")
    return cookie_header(crossmint_refresh_token=material.refresh_token.secret)


def expired_rejected(emulator: CrossmintEmulator) -> str:
    material = emulator.create_session("user-1", jwt_ttl=-30)
    return cookie_header(crossmint_jwt=material.jwt, crossmint_refresh_token="not-a-known-secret")


def expired_no_refresh(emulator: CrossmintEmulator) -> str:
    return cookie_header(crossmint_jwt=emulator.create_session("user-1", jwt_ttl=-30).jwt)


def garbage_jwt(emulator: CrossmintEmulator) -> str:
    return cookie_header(crossmint_jwt="not.a.jwt")


def wrong_audience(emulator: CrossmintEmulator) -> str:
    return cookie_header(
        crossmint_jwt=emulator.issue_jwt("user-1", claims={"aud": "other-project"})
    )


def unrelated_cookies(emulator: CrossmintEmulator) -> str:
    return "theme=dark; crossmint-other=1"


@pytest.mark.parametrize(
    ("cookies", "user", "error", "auth_cookies"),
    [
        pytest.param(no_cookies, None, None, "none", id="anonymous"),
        pytest.param(unrelated_cookies, None, None, "none", id="unrelated-cookies"),
        pytest.param(valid, "user-1", None, "none", id="valid-session"),
        pytest.param(expired_jwt, "user-1", None, "stored", id="expired-jwt-refreshed"),
        pytest.param(only_refresh, "user-1", None, "stored", id="refresh-cookie-only"),
        pytest.param(
            expired_rejected, None, ErrorCode.SESSION_EXPIRED, "cleared", id="refresh-rejected"
        ),
        pytest.param(
            expired_no_refresh, None, ErrorCode.SESSION_EXPIRED, "cleared", id="expired-no-refresh"
        ),
        pytest.param(garbage_jwt, None, ErrorCode.INVALID_TOKEN, "cleared", id="malformed-jwt"),
        pytest.param(wrong_audience, None, ErrorCode.INVALID_TOKEN, "cleared", id="wrong-audience"),
    ],
)
def test_session_is_published(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    cookies: Callable[[CrossmintEmulator], str],
    user: str | None,
    error: ErrorCode | None,
    auth_cookies: str,
) -> None:
    client, app = build()
    header = cookies(crossmint_emulator)
    response = client.get("/page", headers={"Cookie": header} if header else {})

    assert response.status_code == 200
    assert response.get_data() == b"app"
    session: Session | None = app.last["session"]
    assert (session.user_id if session else None) == user
    published: CrossmintAuthError | None = app.last["error"]
    assert (published.code if published else None) == error
    # The app's own cookie comes first and survives; auth cookies are appended after it.
    assert set_cookies(response)[0][:2] == ("app-cookie", "kept")
    if auth_cookies == "none":
        assert auth_cookie_names(response) == []
    elif auth_cookies == "stored":
        assert session is not None
        assert session.refreshed
        assert auth_cookie_names(response) == ["crossmint-jwt", "crossmint-refresh-token"]
        assert_stored(response)
        assert crossmint_emulator.requests["refresh"] == 1
    else:
        assert_cleared(response)


def test_refreshed_cookies_carry_the_new_session(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    old = crossmint_emulator.create_session("user-1", jwt_ttl=-30)
    response = client.get("/page", headers={"Cookie": cookie_header(old)})

    session = app.last["session"]
    cookies = {name: value for name, value, _ in set_cookies(response)}
    assert cookies["crossmint-jwt"] == session.jwt != old.jwt
    assert cookies["crossmint-refresh-token"] == session.refresh_token.secret
    # The new cookies are a valid session on the next request, with no refresh.
    client.get("/page", headers={"Cookie": cookie_header(session.material)})
    assert app.last["session"].user_id == "user-1"
    assert not app.last["session"].refreshed
    assert crossmint_emulator.requests["refresh"] == 1


def test_a_session_seen_before_is_the_same_session(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    header = valid(crossmint_emulator)
    for _ in range(3):
        client.get("/page", headers={"Cookie": header})
    assert [call["session"].user_id for call in app.calls] == ["user-1"] * 3
    assert crossmint_emulator.requests["jwks"] == 1


def test_a_session_seen_before_skips_the_flow_when_other_cookies_change(
    build: Build, crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = build()
    material = crossmint_emulator.create_session("user-1")
    client.get("/page", headers={"Cookie": cookie_header(material, analytics="1")})

    def no_flow(*args: Any) -> Any:
        raise AssertionError("a session seen before went through the full flow")

    # Only the auth cookies key the shortcut: a changing analytics cookie still hits it.
    monkeypatch.setattr(client.application.auth, "run", no_flow)  # type: ignore[attr-defined]
    for counter in range(2, 5):
        client.get("/page", headers={"Cookie": cookie_header(material, analytics=str(counter))})
    assert [call["session"].user_id for call in app.calls] == ["user-1"] * 4
    # A different credential is not mistaken for the cached one.
    other = crossmint_emulator.create_session("user-2")
    with pytest.raises(AssertionError, match="full flow"):
        client.get("/page", headers={"Cookie": cookie_header(other, analytics="1")})


@pytest.mark.parametrize(
    ("path", "expected_status", "app_called"),
    [
        pytest.param("/page", 200, True, id="unprotected-path-calls-the-app"),
        pytest.param("/protected", 503, False, id="protected-path-503"),
    ],
)
def test_crossmint_down_keeps_cookies(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    path: str,
    expected_status: int,
    app_called: bool,
) -> None:
    client, app = build()
    header = expired_jwt(crossmint_emulator)
    crossmint_emulator.set_down()
    response = client.get(path, headers={"Cookie": header, "Accept": "text/html"})

    assert response.status_code == expected_status
    assert auth_cookie_names(response) == []
    if app_called:
        assert app.last["session"] is None
        assert app.last["error"].code is ErrorCode.UPSTREAM_UNAVAILABLE
    else:
        assert app.calls == []
        assert error_of(response) == "UPSTREAM_UNAVAILABLE"
        assert int(response.headers["Retry-After"]) > 0


def test_crossmint_down_with_keys_cached_still_verifies(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    client.get("/page", headers={"Cookie": valid(crossmint_emulator)})
    crossmint_emulator.set_down()
    # A different, valid JWT: verified with the cached key set, no Crossmint call.
    response = client.get("/protected", headers={"Cookie": valid(crossmint_emulator)})
    assert response.status_code == 200
    assert app.last["session"].user_id == "user-1"


# -- the refresh route ----------------------------------------------------------------------


def one_time_body(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    return json.dumps(
        {"refresh": emulator.one_time_secret("user-1", email="a@example.com")}
    ).encode(), ""


def empty_object_with_cookie(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    return b"{}", only_refresh(emulator)


def no_body_with_cookie(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    return b"", only_refresh(emulator)


def null_refresh_with_cookie(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    return b'{"refresh": null}', only_refresh(emulator)


def body_wins_over_cookie(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    body, _ = one_time_body(emulator)
    return body, cookie_header(crossmint_refresh_token="stale-secret")


def body_at_the_limit(emulator: CrossmintEmulator) -> tuple[bytes, str]:
    body, _ = one_time_body(emulator)
    return body + b" " * (MAX_BODY - len(body)), ""


@pytest.mark.parametrize(
    "request_parts",
    [
        pytest.param(one_time_body, id="one-time-secret-in-body"),
        pytest.param(empty_object_with_cookie, id="empty-object-falls-back-to-cookie"),
        pytest.param(no_body_with_cookie, id="no-body-falls-back-to-cookie"),
        pytest.param(null_refresh_with_cookie, id="null-falls-back-to-cookie"),
        pytest.param(body_wins_over_cookie, id="body-wins-over-cookie"),
        pytest.param(body_at_the_limit, id="body-of-exactly-64KiB"),
    ],
)
def test_refresh_route_trades_a_secret(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    request_parts: Callable[[CrossmintEmulator], tuple[bytes, str]],
) -> None:
    client, app = build()
    body, cookies = request_parts(crossmint_emulator)
    response = client.post(
        "/refresh",
        data=body,
        headers={"Content-Type": "application/json", **({"Cookie": cookies} if cookies else {})},
    )

    assert response.status_code == 200, response.get_data()
    payload = response.get_json()
    assert set(payload) == {"jwt", "refreshToken", "user"}
    assert set(payload["refreshToken"]) == {"expiresAt"}
    assert payload["user"]["id"] == "user-1"
    assert_stored(response, payload)
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Vary"] == "Cookie"
    assert app.calls == []
    assert crossmint_emulator.requests["refresh"] == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"secret"', id="string"),
        pytest.param(b'{"refresh": 5}', id="number"),
        pytest.param(b'{"refresh": ["a"]}', id="list"),
        pytest.param(b'{"refresh": {"secret": "a"}}', id="object"),
        pytest.param(b"[" * 100_000, id="too-large-and-deep"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested"),
    ],
)
def test_refresh_route_refuses_malformed_bodies(
    build: Build, crossmint_emulator: CrossmintEmulator, body: bytes
) -> None:
    client, _ = build()
    response = client.post(
        "/refresh",
        data=body,
        headers={"Content-Type": "application/json", "Cookie": only_refresh(crossmint_emulator)},
    )
    assert response.status_code == 400
    assert error_of(response) == "INVALID_REQUEST"
    assert auth_cookie_names(response) == []
    assert crossmint_emulator.requests["refresh"] == 0


class SpyStream(io.BytesIO):
    """A request body that counts what was read from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


@pytest.mark.parametrize(
    "declared_length",
    [
        pytest.param(True, id="content-length"),
        pytest.param(False, id="chunked-without-length"),
    ],
)
def test_refresh_route_refuses_large_bodies_unread(
    build: Build, crossmint_emulator: CrossmintEmulator, declared_length: bool
) -> None:
    client, _ = build()
    size = 8 * 1024 * 1024
    stream = SpyStream(b"{" + b" " * (size - 2) + b"}")
    environ = EnvironBuilder("/refresh", method="POST", input_stream=stream).get_environ()
    if declared_length:
        environ["CONTENT_LENGTH"] = str(size)
    else:
        del environ["CONTENT_LENGTH"]
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    body, status, headers = run_wsgi_app(client.application, environ)

    assert status.startswith("400")
    assert json.loads(b"".join(body))["error"] == "INVALID_REQUEST"
    assert stream.taken <= MAX_BODY + 1
    if declared_length:
        assert stream.taken == 0
    assert "Set-Cookie" not in headers


@pytest.mark.parametrize(
    ("cookies", "body", "error", "cleared"),
    [
        pytest.param("", b'{"refresh": "unknown"}', "SESSION_EXPIRED", True, id="unknown-secret"),
        pytest.param("", b"{}", "MISSING_SESSION", False, id="no-secret-anywhere"),
        pytest.param(
            "crossmint-refresh-token=unknown", b"{}", "SESSION_EXPIRED", True, id="cookie-rejected"
        ),
    ],
)
def test_refresh_route_rejected_token(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    cookies: str,
    body: bytes,
    error: str,
    cleared: bool,
) -> None:
    client, _ = build()
    headers = {"Content-Type": "application/json", **({"Cookie": cookies} if cookies else {})}
    response = client.post("/refresh", data=body, headers=headers)
    assert response.status_code == 401
    assert error_of(response) == error
    if cleared:
        assert_cleared(response)
    else:
        assert auth_cookie_names(response) == []


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param("down", id="connection-reset"),
        pytest.param("503", id="http-503"),
        pytest.param("html", id="non-json-200"),
    ],
)
def test_refresh_route_upstream_unavailable(
    build: Build, crossmint_emulator: CrossmintEmulator, fault: str
) -> None:
    client, _ = build()
    cookies = only_refresh(crossmint_emulator)
    if fault == "down":
        crossmint_emulator.set_down()
    elif fault == "503":
        crossmint_emulator.fail_next(1, status=503, endpoint="refresh")
    else:
        crossmint_emulator.fail_next(1, status=200, body=b"<html>", endpoint="refresh")
    response = client.post("/refresh", data=b"{}", headers={"Cookie": cookies})

    assert response.status_code == 503
    assert error_of(response) == "UPSTREAM_UNAVAILABLE"
    assert int(response.headers["Retry-After"]) > 0
    assert auth_cookie_names(response) == []


def test_refresh_route_only_answers_post(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    response = client.get("/refresh")
    assert response.status_code == 200
    assert app.last["path"] == "/refresh"


def test_routes_can_be_moved_and_turned_off(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build(refresh_path="/api/auth/refresh", logout_path=None)
    body, _ = one_time_body(crossmint_emulator)
    assert client.post("/api/auth/refresh", data=body).status_code == 200
    client.post("/refresh", data=body)
    client.post("/logout")
    assert [call["path"] for call in app.calls] == ["/refresh", "/logout"]


# -- the logout route -----------------------------------------------------------------------


def test_logout_clears_cookies_and_revokes(
    build: Build, crossmint_emulator: CrossmintEmulator, auth: CrossmintAuth
) -> None:
    client, app = build()
    material = crossmint_emulator.create_session("user-1")
    response = client.post("/logout", headers={"Cookie": cookie_header(material)})

    assert response.status_code == 200
    assert response.get_json() == {"ok": True}
    assert_cleared(response)
    assert crossmint_emulator.requests["logout"] == 1
    assert app.calls == []
    with pytest.raises(CrossmintAuthError) as caught:
        auth.refresh(material.refresh_token.secret)
    assert caught.value.code is ErrorCode.SESSION_EXPIRED


@pytest.mark.parametrize(
    ("cookies", "down", "logout_calls"),
    [
        pytest.param("", False, 0, id="no-cookies"),
        pytest.param("crossmint-jwt=x", False, 0, id="jwt-only"),
        pytest.param("crossmint-refresh-token=secret", True, 1, id="crossmint-down"),
    ],
)
def test_logout_always_answers_and_clears(
    build: Build, crossmint_emulator: CrossmintEmulator, cookies: str, down: bool, logout_calls: int
) -> None:
    client, _ = build()
    crossmint_emulator.set_down(down)
    response = client.post("/logout", headers={"Cookie": cookies} if cookies else {})
    assert response.status_code == 200
    assert_cleared(response)
    assert crossmint_emulator.requests["logout"] == logout_calls


# -- cross-site POSTs to the two routes -----------------------------------------------------


@pytest.mark.parametrize("route", ["/refresh", "/logout"])
@pytest.mark.parametrize(
    ("headers", "allowed_origins", "forbidden"),
    [
        pytest.param({"Origin": "https://evil.example"}, (), True, id="other-origin"),
        pytest.param({"Origin": "null"}, (), True, id="null-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, (), True, id="fetch-site-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, (), True, id="fetch-site-same-site"),
        pytest.param({"Origin": "http://localhost"}, (), False, id="same-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, (), False, id="fetch-site-same-origin"),
        pytest.param({}, (), False, id="no-browser-headers"),
        pytest.param(
            {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},
            ("https://app.example/",),
            False,
            id="allowed-origin",
        ),
        pytest.param(
            {"Origin": "https://evil.example"},
            ("https://app.example",),
            True,
            id="origin-not-in-allowed-list",
        ),
    ],
)
def test_cross_site_posts_are_refused(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    route: str,
    headers: dict[str, str],
    allowed_origins: tuple[str, ...],
    forbidden: bool,
) -> None:
    client, app = build(allowed_origins=allowed_origins)
    material = crossmint_emulator.create_session("user-1")
    response = client.post(
        route, data=b"{}", headers={**headers, "Cookie": cookie_header(material)}
    )
    if forbidden:
        assert response.status_code == 403
        assert error_of(response) == "FORBIDDEN_ORIGIN"
        assert auth_cookie_names(response) == []
        assert crossmint_emulator.requests["refresh"] == crossmint_emulator.requests["logout"] == 0
    else:
        assert response.status_code == 200
        assert auth_cookie_names(response) == ["crossmint-jwt", "crossmint-refresh-token"]
    assert app.calls == []


# -- protected paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "accept", "method", "status", "next_path"),
    [
        pytest.param("/protected", "text/html", "GET", 302, "/protected", id="browser-redirected"),
        pytest.param(
            "/protected/a/b?x=1&y=2",
            "text/html,application/xhtml+xml",
            "GET",
            302,
            "/protected/a/b?x=1&y=2",
            id="deep-path-with-query-kept-in-next",
        ),
        pytest.param("//protected", "text/html", "GET", 302, "//protected", id="double-slash"),
        pytest.param("/protected", "application/json", "GET", 401, None, id="api-client-401"),
        pytest.param("/protected", "*/*", "GET", 401, None, id="any-accept-401"),
        pytest.param("/protected", "text/html", "POST", 401, None, id="post-never-redirected"),
        pytest.param("/protected/", "", "GET", 401, None, id="trailing-slash"),
    ],
)
def test_protected_without_session(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    path: str,
    accept: str,
    method: str,
    status: int,
    next_path: str | None,
) -> None:
    client, app = build()
    path_info, _, query = path.partition("?")
    response = client.open(
        "/",
        method=method,
        query_string=query,
        headers={"Accept": accept} if accept else {},
        # Set PATH_INFO as a server would: the client would read "//x" as a host.
        environ_overrides={"PATH_INFO": path_info},
    )
    assert response.status_code == status
    assert app.calls == []
    if next_path is None:
        assert error_of(response) == "MISSING_SESSION"
    else:
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": [next_path]}


@pytest.mark.parametrize(
    ("cookies", "accept", "status", "error"),
    [
        pytest.param(garbage_jwt, "text/html", 302, None, id="invalid-token-browser"),
        pytest.param(garbage_jwt, "application/json", 401, "INVALID_TOKEN", id="invalid-token-api"),
        pytest.param(expired_rejected, "", 401, "SESSION_EXPIRED", id="refresh-rejected"),
    ],
)
def test_protected_clears_worthless_cookies(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    cookies: Callable[[CrossmintEmulator], str],
    accept: str,
    status: int,
    error: str | None,
) -> None:
    client, app = build()
    response = client.get(
        "/protected", headers={"Cookie": cookies(crossmint_emulator), "Accept": accept}
    )
    assert response.status_code == status
    if error is not None:
        assert error_of(response) == error
    assert_cleared(response)
    assert app.calls == []


@pytest.mark.parametrize(
    ("protect", "login_url", "path", "protected"),
    [
        pytest.param(["/protected/:path*"], "/login", "/protected", True, id="pattern-root"),
        pytest.param(["/protected/:path*"], "/login", "/protected/x/y", True, id="pattern-deep"),
        pytest.param(["/protected/:path*"], "/login", "/protectedness", False, id="prefix-only"),
        pytest.param(["/protected/:path*"], "/login", "/public", False, id="other-path"),
        pytest.param("/admin/:id", "/login", "/admin/7", True, id="single-string-pattern"),
        pytest.param("/admin/:id", "/login", "/admin/7/edit", False, id="one-segment-only"),
        pytest.param(
            lambda path: path.startswith("/api/private"),
            None,
            "/api/private/x",
            True,
            id="callable",
        ),
        pytest.param((), None, "/protected", False, id="nothing-protected"),
    ],
)
def test_protect_patterns(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    protect: Any,
    login_url: str | None,
    path: str,
    protected: bool,
) -> None:
    client, app = build(protect=protect, login_url=login_url)
    anonymous = client.get(path, headers={"Accept": "text/html"})
    signed_in = client.get(path, headers={"Cookie": valid(crossmint_emulator)})
    assert signed_in.status_code == 200
    assert app.last["session"].user_id == "user-1"
    if not protected:
        assert anonymous.status_code == 200
    elif login_url is None:
        assert anonymous.status_code == 401
    else:
        assert anonymous.status_code == 302


def test_protected_with_expired_jwt_refreshes_and_serves(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    response = client.get("/protected", headers={"Cookie": expired_jwt(crossmint_emulator)})
    assert response.status_code == 200
    assert app.last["session"].refreshed
    assert set_cookies(response)[0][0] == "app-cookie"
    assert_stored(response)


# -- cookie attributes and names ------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "secure_option", "secure"),
    [
        pytest.param("http", None, False, id="http"),
        pytest.param("https", None, True, id="https"),
        pytest.param("https", False, False, id="https-configured-off"),
        pytest.param("http", True, True, id="http-configured-on"),
    ],
)
@pytest.mark.parametrize("outcome", ["stored", "cleared"])
def test_secure_follows_the_scheme(
    build: Build,
    crossmint_emulator: CrossmintEmulator,
    scheme: str,
    secure_option: bool | None,
    secure: bool,
    outcome: str,
) -> None:
    client, _ = build(cookie_options=CookieOptions(secure=secure_option))
    body = one_time_body(crossmint_emulator)[0] if outcome == "stored" else b'{"refresh": "no"}'
    response = client.post("/refresh", data=body, base_url=f"{scheme}://localhost")
    cookies = set_cookies(response)
    assert len(cookies) == 2
    assert all(("secure" in attrs) is secure for _, _, attrs in cookies)


def test_cookie_options_are_applied(build: Build, crossmint_emulator: CrossmintEmulator) -> None:
    options = CookieOptions(http_only=False, same_site="Strict", domain="example.com")
    client, _ = build(cookie_options=options)
    response = client.post("/refresh", data=one_time_body(crossmint_emulator)[0])
    for _, _, attrs in set_cookies(response):
        assert attrs["samesite"] == "Strict"
        assert attrs["domain"] == "example.com"
        assert attrs["path"] == "/"
        assert "httponly" not in attrs


def scoped(emulator: CrossmintEmulator, material: AuthMaterial) -> str:
    project = emulator.project_id
    return (
        f"crossmint-jwt-{project}={material.jwt}; "
        f"crossmint-refresh-token-{project}={material.refresh_token.secret}"
    )


@pytest.mark.parametrize(
    ("jwt_ttl", "refreshed"),
    [
        pytest.param(None, False, id="valid"),
        pytest.param(-30, True, id="expired-refreshed"),
    ],
)
def test_project_scoped_cookie_names(
    build: Build, crossmint_emulator: CrossmintEmulator, jwt_ttl: int | None, refreshed: bool
) -> None:
    client, app = build()
    material = crossmint_emulator.create_session("user-1", jwt_ttl=jwt_ttl)
    response = client.get("/protected", headers={"Cookie": scoped(crossmint_emulator, material)})
    assert response.status_code == 200
    assert app.last["session"].user_id == "user-1"
    assert app.last["session"].refreshed is refreshed
    # A refresh writes the unscoped names and again the scoped ones the request carried:
    # no used secret stays behind under a name the browser SDK reads.
    project = crossmint_emulator.project_id
    expected = (
        {
            "crossmint-jwt",
            "crossmint-refresh-token",
            f"crossmint-jwt-{project}",
            f"crossmint-refresh-token-{project}",
        }
        if refreshed
        else set()
    )
    assert set(auth_cookie_names(response)) == expected


def test_project_scoped_cookies_are_cleared_too(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, _ = build()
    project = crossmint_emulator.project_id
    header = f"crossmint-jwt-{project}=garbage; crossmint-refresh-token-{project}=unknown"
    response = client.get("/protected", headers={"Cookie": header})
    assert response.status_code == 401
    assert_cleared(response, f"crossmint-jwt-{project}", f"crossmint-refresh-token-{project}")


def test_refresh_route_falls_back_to_the_scoped_cookie(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, _ = build()
    material = crossmint_emulator.create_session("user-1")
    header = (
        f"crossmint-refresh-token-{crossmint_emulator.project_id}={material.refresh_token.secret}"
    )
    response = client.post("/refresh", data=b"{}", headers={"Cookie": header})
    assert response.status_code == 200
    assert_stored(response, response.get_json())


def test_cookie_values_with_equals_signs_survive(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, app = build()
    material = crossmint_emulator.create_session("user-1")
    header = f"a=b=c; {cookie_header(material)}; crossmint-other=x=y"
    client.get("/page", headers={"Cookie": header})
    assert app.last["session"].jwt == material.jwt


# -- Flask and Bottle helpers ---------------------------------------------------------------


def add_views(route: Callable[[str], Callable[[Any], Any]], request: Any) -> None:
    """The views both apps serve; ``route`` is the app's GET decorator, ``request`` its proxy."""

    @route("/me")
    @require_session
    def me(session: Session) -> Any:
        return {"user_id": session.user_id}

    @route("/peek")
    def peek() -> Any:
        session = get_session(request)
        return {"user_id": session.user_id if session else None}

    @route("/plain")
    @require_session
    def plain() -> Any:
        return {"from_environ": get_session(request.environ).user_id}  # type: ignore[union-attr]


def flask_app(auth: CrossmintAuth) -> Any:
    app = flask.Flask(__name__)
    add_views(app.get, flask.request)
    app.wsgi_app = CrossmintWSGIMiddleware(app.wsgi_app, auth)  # type: ignore[method-assign]
    return app


def bottle_app(auth: CrossmintAuth) -> Any:
    app = bottle.Bottle()
    add_views(app.get, bottle.request)
    return CrossmintWSGIMiddleware(app, auth)


FRAMEWORKS = [pytest.param(flask_app, id="flask"), pytest.param(bottle_app, id="bottle")]


@pytest.mark.parametrize("make_app", FRAMEWORKS)
@pytest.mark.parametrize(
    ("cookies", "down", "status", "body"),
    [
        pytest.param(valid, False, 200, {"user_id": "user-1"}, id="session"),
        pytest.param(expired_jwt, False, 200, {"user_id": "user-1"}, id="refreshed"),
        pytest.param(no_cookies, False, 401, "MISSING_SESSION", id="anonymous"),
        pytest.param(garbage_jwt, False, 401, "INVALID_TOKEN", id="invalid"),
        pytest.param(expired_rejected, False, 401, "SESSION_EXPIRED", id="expired"),
        pytest.param(expired_jwt, True, 503, "UPSTREAM_UNAVAILABLE", id="crossmint-down"),
    ],
)
def test_require_session(
    auth: CrossmintAuth,
    crossmint_emulator: CrossmintEmulator,
    make_app: Callable[[CrossmintAuth], Any],
    cookies: Callable[[CrossmintEmulator], str],
    down: bool,
    status: int,
    body: Any,
) -> None:
    client = Client(make_app(auth), use_cookies=False)
    header = cookies(crossmint_emulator)
    crossmint_emulator.set_down(down)
    response = client.get("/me", headers={"Cookie": header} if header else {})
    assert response.status_code == status
    if isinstance(body, dict):
        assert response.get_json() == body
    else:
        assert error_of(response) == body
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("make_app", FRAMEWORKS)
def test_get_session(
    auth: CrossmintAuth,
    crossmint_emulator: CrossmintEmulator,
    make_app: Callable[[CrossmintAuth], Any],
) -> None:
    client = Client(make_app(auth), use_cookies=False)
    header = valid(crossmint_emulator)
    assert client.get("/peek").get_json() == {"user_id": None}
    assert client.get("/peek", headers={"Cookie": header}).get_json() == {"user_id": "user-1"}
    assert client.get("/plain", headers={"Cookie": header}).get_json() == {"from_environ": "user-1"}


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param({"wsgi.version": (1, 0)}, RuntimeError, id="environ-without-middleware"),
        pytest.param(object(), TypeError, id="not-a-request"),
    ],
)
def test_get_session_misuse(source: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        get_session(source)


def test_the_app_iterable_is_passed_through(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    """The middleware neither buffers nor closes-early a streamed answer."""
    closed: list[bool] = []

    class Streamed:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def streaming(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Streamed()

    auth = CrossmintAuth(crossmint_emulator.crossmint(), leeway=0)
    with auth:
        client = Client(CrossmintWSGIMiddleware(streaming, auth), use_cookies=False)
        response = client.get("/", headers={"Cookie": expired_jwt(crossmint_emulator)})
        assert response.get_data() == b"ab"
        response.close()
        assert closed == [True]
        assert auth_cookie_names(response) == ["crossmint-jwt", "crossmint-refresh-token"]


# -- security round 3: repeated cookie names, caching ------------------------------------------


def public_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response(
        "200 OK",
        [("Cache-Control", "public, max-age=60"), ("Set-Cookie", APP_COOKIE)],
    )
    return [(session.jwt if session else "none").encode()]


def test_a_refresh_on_the_apps_answer_makes_it_private(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint()) as auth:
        client = Client(CrossmintWSGIMiddleware(public_app, auth), use_cookies=False)
        old = crossmint_emulator.create_session("user-1", jwt_ttl=-30)
        refreshed = client.get("/", headers={"Cookie": cookie_header(old)})
        fresh = crossmint_emulator.create_session("user-1")
        untouched = client.get("/", headers={"Cookie": cookie_header(fresh)})
    assert refreshed.headers.getlist("Cache-Control") == ["private, no-store, max-age=60"]
    assert refreshed.headers.getlist("Vary") == ["Cookie"]
    assert auth_cookie_names(refreshed) == ["crossmint-jwt", "crossmint-refresh-token"]
    assert set_cookies(refreshed)[0][0] == "app-cookie"
    # No cookie of ours on it: the app's answer is the app's.
    assert untouched.get_data() == fresh.jwt.encode()
    assert untouched.headers.getlist("Cache-Control") == ["public, max-age=60"]
    assert "Vary" not in untouched.headers


@pytest.mark.parametrize(
    "order", [pytest.param(False, id="genuine-first"), pytest.param(True, id="genuine-last")]
)
def test_a_jwt_cookie_with_two_values_gives_no_session(
    build: Build, crossmint_emulator: CrossmintEmulator, order: bool
) -> None:
    client, app = build()
    material = crossmint_emulator.create_session("user-1")
    values = [material.jwt, crossmint_emulator.issue_jwt("victim-admin")]
    if order:
        values.reverse()
    header = "; ".join(f"crossmint-jwt={value}" for value in values)
    header += f"; crossmint-refresh-token={material.refresh_token.secret}"

    page = client.get("/page", headers={"Cookie": header})
    assert app.last["session"] is None
    assert app.last["error"].code is ErrorCode.INVALID_TOKEN
    assert "crossmint-jwt" in app.last["error"].message
    assert_cleared(page)
    assert page.headers["Cache-Control"] == "private, no-store"

    protected = client.get("/protected/x", headers={"Cookie": header})
    assert protected.status_code == 401
    assert error_of(protected) == "INVALID_TOKEN"
    assert material.jwt not in protected.get_data(as_text=True)
    # The refresh secret alone was not traded either: no session on its strength.
    assert crossmint_emulator.requests["refresh"] == 0


def test_the_refresh_route_with_a_repeated_refresh_cookie(
    build: Build, crossmint_emulator: CrossmintEmulator
) -> None:
    client, _ = build()
    first = crossmint_emulator.create_session("user-1")
    second = crossmint_emulator.create_session("user-2")
    header = (
        f"crossmint-refresh-token={first.refresh_token.secret}; "
        f"crossmint-refresh-token={second.refresh_token.secret}"
    )
    post = {"Content-Type": "application/json", "Cookie": header}
    guessed = client.post("/refresh", data=b"{}", headers=post)
    assert guessed.status_code == 401
    assert error_of(guessed) == "INVALID_TOKEN"
    assert_cleared(guessed)
    assert crossmint_emulator.requests["refresh"] == 0
    # A login's one-time secret in the body is the body's own: it is traded.
    secret = crossmint_emulator.one_time_secret("user-3")
    login = client.post("/refresh", data=json.dumps({"refresh": secret}), headers=post)
    assert login.status_code == 200, login.get_data()
    assert login.get_json()["user"]["id"] == "user-3"
    assert login.headers["Cache-Control"] == "private, no-store"
    # And a logout clears every name, whatever it carried.
    out = client.post("/logout", headers={"Cookie": header})
    assert out.status_code == 200
    assert_cleared(out)


@pytest.mark.parametrize(
    ("script_name", "location"),
    [
        pytest.param("", "/login?next=/protected/x%3Fa%3D1", id="top"),
        pytest.param("/sub", "/login?next=/sub/protected/x%3Fa%3D1", id="mounted"),
        pytest.param("/sub/", "/login?next=/sub/protected/x%3Fa%3D1", id="mounted-slash"),
    ],
)
def test_the_login_redirect_keeps_the_mount(build: Build, script_name: str, location: str) -> None:
    client, _ = build()
    response = client.get(
        "/protected/x",
        query_string="a=1",
        headers={"Accept": "text/html"},
        environ_overrides={"SCRIPT_NAME": script_name},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == location
