"""Gate.handle, the middlewares' decisions, stepped by hand with no I/O."""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timezone
from typing import Any

import pytest
from stepping import NOW, Signer, crossmint_of, drive

from crossmint_wsgi import (
    AuthMaterial,
    CookieOptions,
    CrossmintAuthError,
    ErrorCode,
    RefreshToken,
    User,
)
from crossmint_wsgi.answers import MAX_BODY, Answer
from crossmint_wsgi.config import Crossmint
from crossmint_wsgi.flows import AuthCore, FetchKeys, Logout, ReadBody, Refresh, Revoke
from crossmint_wsgi.routes import Gate, HttpRequest, Proceed, route_path

PROJECT = "project-r"
HOST = "app.example"
SECRET = "cookie-refresh-secret"
NEW_SECRET = "new-refresh-secret"
SCOPED_JWT = f"crossmint-jwt-{PROJECT}"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(project=PROJECT)


@pytest.fixture(scope="module")
def crossmint() -> Crossmint:
    return crossmint_of(PROJECT)


@pytest.fixture
def core(crossmint: Crossmint, signer: Signer) -> AuthCore:
    return AuthCore(crossmint, jwks=signer.jwks(), clock=lambda: NOW, leeway=0)


def make_gate(core: AuthCore, **settings: Any) -> Gate:
    settings.setdefault("protect", "/dashboard/:path*")
    settings.setdefault("login_url", "/login")
    return Gate(core, **settings)


def request(method: str = "GET", path: str = "/", **kwargs: Any) -> HttpRequest:
    kwargs.setdefault("host", HOST)
    return HttpRequest(method, path, **kwargs)


def post(path: str, *, cookie: str | None = None, **kwargs: Any) -> HttpRequest:
    kwargs.setdefault("origin", f"http://{HOST}")
    return request("POST", path, cookie=cookie, **kwargs)


def headers(answer: Answer, name: str) -> list[str]:
    return [value for key, value in answer.headers if key.lower() == name.lower()]


def cookie_names(values: list[str]) -> list[str]:
    return [value.split("=", 1)[0] for value in values]


def is_cleared(value: str) -> bool:
    return "=;" in value and "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in value


def material(signer: Signer) -> AuthMaterial:
    return AuthMaterial(
        signer.token(ttl=900),
        RefreshToken(NEW_SECRET, datetime(2030, 1, 1, tzinfo=timezone.utc)),
        User("user-1", email="a@example.com"),
    )


def rejected() -> CrossmintAuthError:
    return CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "Crossmint did not accept it (HTTP 401)")


def upstream() -> CrossmintAuthError:
    return CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, "Crossmint refresh call failed: 503")


# -- the refresh route ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "cookie", "secret"),
    [
        pytest.param(b'{"refresh": "one-time"}', None, "one-time", id="body-secret"),
        pytest.param(b'{"refresh": "one-time"}', SECRET, "one-time", id="body-wins-over-cookie"),
        pytest.param(b"{}", SECRET, SECRET, id="empty-object-uses-cookie"),
        pytest.param(b"", SECRET, SECRET, id="no-body-uses-cookie"),
        pytest.param(b"  \n", SECRET, SECRET, id="blank-body-uses-cookie"),
        pytest.param(b'{"refresh": null}', SECRET, SECRET, id="null-uses-cookie"),
        pytest.param(b'{"refresh": ""}', SECRET, SECRET, id="empty-string-uses-cookie"),
        pytest.param(b'{"other": 1}', SECRET, SECRET, id="other-fields"),
    ],
)
def test_refresh_route_success(
    core: AuthCore, signer: Signer, body: bytes, cookie: str | None, secret: str
) -> None:
    gate = make_gate(core)
    new = material(signer)
    header = f"crossmint-refresh-token={cookie}" if cookie else None
    answer, effects = drive(gate.handle(post("/refresh", cookie=header)), body, new)
    assert effects == [ReadBody(MAX_BODY), Refresh(secret)]
    assert isinstance(answer, Answer)
    assert answer.status == 200
    expected = new.to_json()
    del expected["refreshToken"]["secret"]  # the refresh cookie is HttpOnly: not in the body
    assert answer.json() == expected
    assert headers(answer, "Content-Type") == ["application/json"]
    assert headers(answer, "Cache-Control") == ["private, no-store"]
    assert headers(answer, "Vary") == ["Cookie"]
    set_cookies = headers(answer, "Set-Cookie")
    assert cookie_names(set_cookies) == ["crossmint-jwt", "crossmint-refresh-token"]
    assert set_cookies[1].startswith(f"crossmint-refresh-token={NEW_SECRET};")


@pytest.mark.parametrize(
    ("body", "cookie", "status", "code"),
    [
        pytest.param(b"{}", None, 401, "MISSING_SESSION", id="nothing-to-refresh"),
        pytest.param(b"", None, 401, "MISSING_SESSION", id="no-body-no-cookie"),
        pytest.param(None, SECRET, 400, "INVALID_REQUEST", id="body-too-large"),
        pytest.param(b"{not json", SECRET, 400, "INVALID_REQUEST", id="bad-json"),
        pytest.param(b"\xff\xfe", SECRET, 400, "INVALID_REQUEST", id="not-utf8"),
        pytest.param(b"[1]", SECRET, 400, "INVALID_REQUEST", id="json-list"),
        pytest.param(b'"s"', SECRET, 400, "INVALID_REQUEST", id="json-string"),
        pytest.param(b'{"refresh": 5}', SECRET, 400, "INVALID_REQUEST", id="refresh-number"),
        pytest.param(b'{"refresh": ["s"]}', SECRET, 400, "INVALID_REQUEST", id="refresh-list"),
        pytest.param(b"[" * 100_000, SECRET, 400, "INVALID_REQUEST", id="deeply-nested"),
    ],
)
def test_refresh_route_refusals_without_a_call(
    core: AuthCore, body: bytes | None, cookie: str | None, status: int, code: str
) -> None:
    header = f"crossmint-refresh-token={cookie}" if cookie else None
    answer, effects = drive(make_gate(core).handle(post("/refresh", cookie=header)), body)
    assert effects == [ReadBody(MAX_BODY)]
    assert (answer.status, answer.json()["error"]) == (status, code)
    assert answer.json()["message"]
    assert headers(answer, "Set-Cookie") == []


def test_refresh_answer_keeps_the_secret_out_of_the_body_when_the_cookie_is_http_only(
    crossmint: Crossmint, signer: Signer
) -> None:
    """The answer to ``POST /refresh {}`` is readable by every script of the page:
    the secret of an HttpOnly cookie stays in the cookie."""
    new = material(signer)
    for options, shown in (
        (CookieOptions(), False),
        (CookieOptions(http_only=False), True),
        (CookieOptions(expose_refresh_secret=True), True),
    ):
        core = AuthCore(crossmint, jwks=signer.jwks(), clock=lambda: NOW, cookie_options=options)
        cookie = f"crossmint-refresh-token={SECRET}"
        answer, _ = drive(make_gate(core).handle(post("/refresh", cookie=cookie)), b"{}", new)
        assert answer.status == 200
        body = answer.json()
        assert body["jwt"] == new.jwt
        assert body["refreshToken"]["expiresAt"] == "2030-01-01T00:00:00.000Z"
        assert ("secret" in body["refreshToken"]) is shown, options
        if shown:
            assert body["refreshToken"]["secret"] == NEW_SECRET
        # The cookie carries it either way.
        refresh_cookie = headers(answer, "Set-Cookie")[1]
        assert refresh_cookie.startswith(f"crossmint-refresh-token={NEW_SECRET};")


@pytest.mark.parametrize(
    ("jwt_ttl", "body", "kept"),
    [
        pytest.param(100, b"{}", True, id="valid-jwt-kept"),
        pytest.param(100, f'{{"refresh": "{SECRET}"}}'.encode(), True, id="readable-secret-kept"),
        pytest.param(-1, b"{}", False, id="expired-jwt-503"),
        pytest.param(None, b"{}", False, id="no-jwt-503"),
        pytest.param(100, b'{"refresh": "one-time"}', False, id="login-secret-not-kept"),
    ],
)
def test_refresh_route_outage_keeps_a_valid_session(
    core: AuthCore, signer: Signer, jwt_ttl: int | None, body: bytes, kept: bool
) -> None:
    """Crossmint's browser SDK logs the user out on any error status: through
    an outage, a JWT still valid is answered 200, as it is, with no cookies."""
    jwt = signer.token(ttl=jwt_ttl) if jwt_ttl is not None else None
    cookie = f"crossmint-refresh-token={SECRET}" + (f"; crossmint-jwt={jwt}" if jwt else "")
    answer, effects = drive(
        make_gate(core).handle(post("/refresh", cookie=cookie)), body, upstream()
    )
    assert effects[0] == ReadBody(MAX_BODY)
    assert headers(answer, "Set-Cookie") == []
    if kept:
        assert answer.status == 200
        assert answer.json() == {
            "jwt": jwt,
            "refreshToken": {"expiresAt": None},
            "user": {"id": "user-1"},
        }
        assert headers(answer, "Retry-After") == []
    else:
        assert answer.status == 503
        assert answer.json()["error"] == "UPSTREAM_UNAVAILABLE"


def test_refresh_route_outage_shows_the_readable_secret_it_kept(
    crossmint: Crossmint, signer: Signer
) -> None:
    core = AuthCore(
        crossmint,
        jwks=signer.jwks(),
        clock=lambda: NOW,
        cookie_options=CookieOptions(http_only=False),
    )
    jwt = signer.token(ttl=100)
    cookie = f"crossmint-refresh-token={SECRET}; crossmint-jwt={jwt}"
    answer, _ = drive(make_gate(core).handle(post("/refresh", cookie=cookie)), b"{}", upstream())
    assert answer.status == 200
    assert answer.json()["refreshToken"] == {"expiresAt": None, "secret": SECRET}


def test_refresh_route_outage_fetches_keys_to_judge_the_jwt(
    crossmint: Crossmint, signer: Signer
) -> None:
    core = AuthCore(crossmint, clock=lambda: NOW)  # no key set yet
    jwt = signer.token(ttl=100)
    cookie = f"crossmint-refresh-token={SECRET}; crossmint-jwt={jwt}"
    gate = make_gate(core)
    answer, effects = drive(
        gate.handle(post("/refresh", cookie=cookie)), b"{}", signer.jwks(), upstream()
    )
    # The JWT is judged first: an authentic one makes the refresh its user's.
    assert effects == [ReadBody(MAX_BODY), FetchKeys(), Refresh(SECRET, user="user-1")]
    assert answer.status == 200
    # Without keys nothing is known to be valid: 503, whatever else is tried.
    core = AuthCore(crossmint, clock=lambda: NOW)
    assert all_failing(make_gate(core).handle(post("/refresh", cookie=cookie))).status == 503


def all_failing(flow: Generator[Any, Any, Any]) -> Any:
    """Run ``flow`` with every effect failing, except the body read (``{}``)."""
    effect = next(flow)
    for _ in range(10):
        try:
            effect = flow.send(b"{}" if isinstance(effect, ReadBody) else upstream())
        except StopIteration as done:
            return done.value
    raise AssertionError("the flow never ended")


@pytest.mark.parametrize(
    ("cookie", "written"),
    [
        pytest.param(
            f"crossmint-refresh-token-{PROJECT}={SECRET}; {SCOPED_JWT}=old",
            [
                "crossmint-jwt",
                SCOPED_JWT,
                "crossmint-refresh-token",
                f"crossmint-refresh-token-{PROJECT}",
            ],
            id="scoped-request-written-back-scoped",
        ),
        pytest.param(
            f"crossmint-refresh-token={SECRET}",
            ["crossmint-jwt", "crossmint-refresh-token"],
            id="unscoped-request-unscoped",
        ),
    ],
)
def test_refresh_route_writes_back_under_the_names_the_request_used(
    core: AuthCore, signer: Signer, cookie: str, written: list[str]
) -> None:
    """A scoped secret left in place after its use would be sent again by the
    browser SDK, refused as already used, and log the user out."""
    new = material(signer)
    answer, _ = drive(make_gate(core).handle(post("/refresh", cookie=cookie)), b"{}", new)
    set_cookies = headers(answer, "Set-Cookie")
    assert cookie_names(set_cookies) == written
    refresh_values = [v for v in set_cookies if v.startswith("crossmint-refresh-token")]
    assert all(v.split(";")[0].endswith(f"={NEW_SECRET}") for v in refresh_values)


@pytest.mark.parametrize(
    ("error", "status", "cleared"),
    [
        pytest.param(rejected(), 401, True, id="rejected-clears"),
        pytest.param(upstream(), 503, False, id="upstream-keeps"),
    ],
)
def test_refresh_route_upstream_answers(
    core: AuthCore, error: CrossmintAuthError, status: int, cleared: bool
) -> None:
    cookie = f"crossmint-refresh-token={SECRET}; {SCOPED_JWT}=old"
    answer, effects = drive(make_gate(core).handle(post("/refresh", cookie=cookie)), b"{}", error)
    assert effects == [ReadBody(MAX_BODY), Refresh(SECRET)]
    assert answer.status == status
    assert answer.json() == {"error": error.code.value, "message": error.message}
    set_cookies = headers(answer, "Set-Cookie")
    if cleared:
        assert cookie_names(set_cookies) == [
            "crossmint-jwt",
            "crossmint-refresh-token",
            SCOPED_JWT,
        ]
        assert all(is_cleared(value) for value in set_cookies)
    else:
        assert set_cookies == []
    assert headers(answer, "Retry-After") == (["5"] if status == 503 else [])


def test_refresh_route_refuses_a_declared_large_body_unread(core: AuthCore) -> None:
    answer, effects = drive(make_gate(core).handle(post("/refresh", content_length=MAX_BODY + 1)))
    assert effects == []
    assert (answer.status, answer.json()["error"]) == (400, "INVALID_REQUEST")


def test_refresh_route_is_post_only(core: AuthCore) -> None:
    result, effects = drive(make_gate(core).handle(request("GET", "/refresh")))
    assert effects == []
    assert isinstance(result, Proceed)


def test_custom_route_paths(core: AuthCore) -> None:
    gate = make_gate(core, refresh_path="/api/auth/refresh", logout_path=None)
    answer, effects = drive(gate.handle(post("/api/auth/refresh")), b"{}")
    assert (answer.status, effects) == (401, [ReadBody(MAX_BODY)])
    result, effects = drive(gate.handle(post("/logout")))
    assert isinstance(result, Proceed)
    assert effects == []


# -- the logout route -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "effects", "names"),
    [
        pytest.param(
            f"crossmint-refresh-token={SECRET}; crossmint-jwt=j",
            [Revoke(SECRET), Logout(SECRET)],
            ["crossmint-jwt", "crossmint-refresh-token"],
            id="with-refresh-cookie",
        ),
        pytest.param(
            f"{SCOPED_JWT}=j; crossmint-refresh-token-{PROJECT}={SECRET}",
            [Revoke(SECRET), Logout(SECRET)],
            [
                "crossmint-jwt",
                "crossmint-refresh-token",
                SCOPED_JWT,
                f"crossmint-refresh-token-{PROJECT}",
            ],
            id="scoped-cookies",
        ),
        pytest.param(None, [], ["crossmint-jwt", "crossmint-refresh-token"], id="no-cookies"),
        pytest.param(
            "crossmint-jwt=j", [], ["crossmint-jwt", "crossmint-refresh-token"], id="jwt-only"
        ),
    ],
)
def test_logout_route(
    core: AuthCore, cookie: str | None, effects: list[Any], names: list[str]
) -> None:
    # The coordinator knew no successor; Crossmint's logout answers nothing.
    results = [[], None] if effects else []
    answer, seen = drive(make_gate(core).handle(post("/logout", cookie=cookie)), *results)
    assert seen == effects
    assert answer.status == 200
    assert answer.json() == {"ok": True}
    set_cookies = headers(answer, "Set-Cookie")
    assert cookie_names(set_cookies) == names
    assert all(is_cleared(value) for value in set_cookies)


# -- origin checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        pytest.param(f"https://{HOST}", f"{HOST}:443", True, id="https-default-port-in-host"),
        pytest.param(f"http://{HOST}:80", HOST, True, id="http-default-port-in-origin"),
        pytest.param(f"https://{HOST}", f"{HOST}:8443", False, id="other-port-in-host"),
    ],
)
def test_origin_default_ports_are_one_origin(
    core: AuthCore, origin: str, host: str, allowed: bool
) -> None:
    incoming = request("POST", "/logout", origin=origin, host=host, cookie="")
    result, _ = drive(make_gate(core).handle(incoming))
    assert result.status == (200 if allowed else 403)


@pytest.mark.parametrize(
    ("origin", "fetch_site", "scheme", "allowed"),
    [
        pytest.param(f"http://{HOST}", None, "http", True, id="same-host"),
        pytest.param(f"https://{HOST}", None, "http", True, id="https-behind-proxy"),
        pytest.param(f"HTTPS://{HOST.upper()}", None, "https", True, id="case-insensitive"),
        pytest.param(f"http://{HOST}/", None, "http", True, id="trailing-slash"),
        pytest.param("https://evil.example", None, "http", False, id="other-origin"),
        pytest.param(f"https://{HOST}.evil.example", None, "http", False, id="suffix-host"),
        pytest.param(f"http://{HOST}:8080", None, "http", False, id="other-port"),
        pytest.param("https://partner.example", None, "http", True, id="allowed-origin"),
        pytest.param("https://partner.example/", None, "http", True, id="allowed-origin-slash"),
        pytest.param("null", None, "http", False, id="origin-null"),
        pytest.param(
            "https://evil.example", "same-origin", "http", False, id="origin-beats-fetch-site"
        ),
        pytest.param(None, "cross-site", "http", False, id="sec-fetch-cross-site"),
        pytest.param(None, "same-site", "http", False, id="sec-fetch-same-site"),
        pytest.param(None, "same-origin", "http", True, id="sec-fetch-same-origin"),
        pytest.param(None, "none", "http", True, id="sec-fetch-none"),
        pytest.param(None, None, "http", True, id="no-headers-non-browser"),
    ],
)
@pytest.mark.parametrize("route", ["/refresh", "/logout"])
def test_origin_checks(
    core: AuthCore,
    origin: str | None,
    fetch_site: str | None,
    scheme: str,
    allowed: bool,
    route: str,
) -> None:
    gate = make_gate(core, allowed_origins=["https://partner.example/"])
    incoming = request(
        "POST",
        route,
        origin=origin,
        fetch_site=fetch_site,
        scheme=scheme,
        cookie=f"crossmint-refresh-token={SECRET}",
    )
    flow = gate.handle(incoming)
    if allowed:
        assert next(flow) in (ReadBody(MAX_BODY), Revoke(SECRET))
    else:
        answer, effects = drive(flow)
        assert effects == []
        assert answer.status == 403
        assert answer.json()["error"] == "FORBIDDEN_ORIGIN"
        assert headers(answer, "Set-Cookie") == []


@pytest.mark.parametrize(
    ("origin", "fetch_site", "named"),
    [
        pytest.param(
            "https://proxy.internal",
            None,
            ["'https://proxy.internal'", f"'{HOST}'", "https://partner.example"],
            id="origin-host-and-allowed",
        ),
        pytest.param(None, "cross-site", ["Sec-Fetch-Site is 'cross-site'"], id="fetch-site"),
        pytest.param("https://" + "x" * 5000, None, ["'https://xxx"], id="long-origin-shortened"),
    ],
)
def test_a_cross_site_refusal_says_what_was_compared(
    core: AuthCore, origin: str | None, fetch_site: str | None, named: list[str]
) -> None:
    gate = make_gate(core, allowed_origins=["https://partner.example"])
    answer, _ = drive(gate.handle(post("/refresh", origin=origin, fetch_site=fetch_site)))
    message = answer.json()["message"]
    assert all(part in message for part in named), message
    assert len(message) < 600


def test_origin_without_host_is_refused(core: AuthCore) -> None:
    answer, _ = drive(
        make_gate(core).handle(request("POST", "/logout", host=None, origin="http://x"))
    )
    assert answer.status == 403


# -- protection --------------------------------------------------------------------------------

BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


@pytest.mark.parametrize(
    ("method", "accept", "login_url", "query", "status", "location"),
    [
        pytest.param(
            "GET", BROWSER, "/login", "", 302, "/login?next=/dashboard/a", id="browser-redirect"
        ),
        pytest.param(
            "HEAD", BROWSER, "/login", "", 302, "/login?next=/dashboard/a", id="head-redirect"
        ),
        pytest.param(
            "GET",
            BROWSER,
            "/login",
            "tab=2&x=y",
            302,
            "/login?next=/dashboard/a%3Ftab%3D2%26x%3Dy",
            id="query-kept",
        ),
        pytest.param(
            "GET",
            BROWSER,
            "/login?lang=en",
            "",
            302,
            "/login?lang=en&next=/dashboard/a",
            id="login-with-query",
        ),
        pytest.param("GET", "application/json", "/login", "", 401, None, id="api-client"),
        pytest.param("GET", None, "/login", "", 401, None, id="no-accept"),
        pytest.param("POST", BROWSER, "/login", "", 401, None, id="browser-post"),
        pytest.param("GET", BROWSER, None, "", 401, None, id="no-login-url"),
    ],
)
def test_protect_without_session(
    core: AuthCore,
    method: str,
    accept: str | None,
    login_url: str | None,
    query: str,
    status: int,
    location: str | None,
) -> None:
    gate = make_gate(core, login_url=login_url)
    answer, effects = drive(
        gate.handle(request(method, "/dashboard/a", accept=accept, query=query))
    )
    assert effects == []
    assert answer.status == status
    assert headers(answer, "Set-Cookie") == []  # MISSING_SESSION clears nothing
    if location is None:
        assert answer.json()["error"] == "MISSING_SESSION"
    else:
        assert headers(answer, "Location") == [location]
        assert answer.body == b""


@pytest.mark.parametrize(
    ("cookie", "results", "code", "cleared"),
    [
        pytest.param("expired", (), "SESSION_EXPIRED", True, id="expired-no-refresh"),
        pytest.param(
            "expired+refresh", (rejected(),), "SESSION_EXPIRED", True, id="refresh-rejected"
        ),
        pytest.param("invalid", (), "INVALID_TOKEN", True, id="invalid"),
        pytest.param(
            "invalid+refresh", (rejected(),), "INVALID_TOKEN", True, id="invalid-refresh-rejected"
        ),
        pytest.param(
            "expired+refresh", (upstream(),), "UPSTREAM_UNAVAILABLE", False, id="upstream"
        ),
    ],
)
@pytest.mark.parametrize(
    "accept", [pytest.param(BROWSER, id="browser"), pytest.param("application/json", id="api")]
)
def test_protect_refusals(
    core: AuthCore,
    signer: Signer,
    cookie: str,
    results: tuple[Any, ...],
    code: str,
    cleared: bool,
    accept: str,
) -> None:
    jwt = signer.token(ttl=-5) if cookie.startswith("expired") else signer.token(aud="other")
    header = f"crossmint-jwt={jwt}" + (
        f"; crossmint-refresh-token={SECRET}" if "+refresh" in cookie else ""
    )
    answer, effects = drive(
        make_gate(core).handle(request("GET", "/dashboard", cookie=header, accept=accept)), *results
    )
    # Only an authentic (here expired) JWT vouches for the refresh.
    user = "user-1" if cookie.startswith("expired") else None
    assert effects == ([Refresh(SECRET, user=user)] if results else [])
    set_cookies = headers(answer, "Set-Cookie")
    if cleared:
        assert cookie_names(set_cookies) == ["crossmint-jwt", "crossmint-refresh-token"]
        assert all(is_cleared(value) for value in set_cookies)
    else:
        assert set_cookies == []
    if code == "UPSTREAM_UNAVAILABLE":
        # Never a redirect to the login page: the user is not logged out.
        assert answer.status == 503
        assert headers(answer, "Retry-After") == ["5"]
        assert answer.json()["error"] == code
    elif accept == BROWSER:
        assert answer.status == 302
        assert headers(answer, "Location") == ["/login?next=/dashboard"]
    else:
        assert answer.status == 401
        assert answer.json()["error"] == code


def test_retry_after_is_configurable(core: AuthCore, signer: Signer) -> None:
    gate = make_gate(core, retry_after=30)
    header = f"crossmint-jwt={signer.token(ttl=-5)}; crossmint-refresh-token={SECRET}"
    answer, _ = drive(gate.handle(request("GET", "/dashboard", cookie=header)), upstream())
    assert (answer.status, headers(answer, "Retry-After")) == (503, ["30"])


# -- proceeding -------------------------------------------------------------------------------


def test_unprotected_without_cookies_needs_nothing(core: AuthCore) -> None:
    result, effects = drive(make_gate(core).handle(request("GET", "/public", cookie="theme=dark")))
    assert effects == []
    assert isinstance(result, Proceed)
    assert (result.session, result.error, result.set_cookies) == (None, None, [])


@pytest.mark.parametrize("path", ["/public", "/dashboard/x"])
def test_valid_session_proceeds(core: AuthCore, signer: Signer, path: str) -> None:
    jwt = signer.token()
    result, effects = drive(
        make_gate(core).handle(request("GET", path, cookie=f"crossmint-jwt={jwt}"))
    )
    assert effects == []
    assert isinstance(result, Proceed)
    assert result.session is not None
    assert (result.session.user_id, result.session.jwt, result.error) == ("user-1", jwt, None)
    assert result.set_cookies == []


@pytest.mark.parametrize(("scheme", "secure"), [("http", False), ("https", True)])
def test_refreshed_session_proceeds_with_new_cookies(
    core: AuthCore, signer: Signer, scheme: str, secure: bool
) -> None:
    new = material(signer)
    header = f"crossmint-jwt={signer.token(ttl=-5)}; crossmint-refresh-token={SECRET}"
    result, effects = drive(
        make_gate(core).handle(request("GET", "/dashboard", cookie=header, scheme=scheme)), new
    )
    assert effects == [Refresh(SECRET, user="user-1")]
    assert isinstance(result, Proceed)
    assert result.session is not None
    assert result.session.refreshed
    assert cookie_names(result.set_cookies) == ["crossmint-jwt", "crossmint-refresh-token"]
    assert result.set_cookies[0].startswith(f"crossmint-jwt={new.jwt};")
    assert all(("; Secure" in value) is secure for value in result.set_cookies)


@pytest.mark.parametrize(
    ("cookie", "results", "code", "cleared"),
    [
        pytest.param("expired", (), "SESSION_EXPIRED", True, id="expired"),
        pytest.param("invalid", (), "INVALID_TOKEN", True, id="invalid"),
        pytest.param(
            "expired+refresh", (upstream(),), "UPSTREAM_UNAVAILABLE", False, id="upstream"
        ),
    ],
)
def test_unprotected_path_proceeds_without_a_session(
    core: AuthCore,
    signer: Signer,
    cookie: str,
    results: tuple[Any, ...],
    code: str,
    cleared: bool,
) -> None:
    jwt = signer.token(ttl=-5) if cookie.startswith("expired") else signer.token(aud="other")
    header = f"crossmint-jwt={jwt}" + (
        f"; crossmint-refresh-token={SECRET}" if "+refresh" in cookie else ""
    )
    result, _ = drive(make_gate(core).handle(request("GET", "/public", cookie=header)), *results)
    assert isinstance(result, Proceed)
    assert result.session is None
    assert result.error is not None
    assert result.error.code.value == code
    assert (
        cookie_names(result.set_cookies) == ["crossmint-jwt", "crossmint-refresh-token"]
    ) is cleared
    assert (result.set_cookies == []) is not cleared


# -- the shortcut -------------------------------------------------------------------------------


def test_shortcut(core: AuthCore, signer: Signer) -> None:
    gate = make_gate(core)
    assert gate.shortcut("GET", "/public", None) is not None
    assert gate.shortcut("GET", "/dashboard", None) is None  # protected: decide in full
    assert gate.shortcut("POST", "/refresh", None) is None
    header = f"crossmint-jwt={signer.token()}"
    assert gate.shortcut("GET", "/public", header) is None  # not seen yet
    decided, _ = drive(gate.handle(request("GET", "/public", cookie=header)))
    assert gate.shortcut("GET", "/dashboard", header) is decided


# -- mounts: the app routes path minus root_path --------------------------------------------


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        pytest.param("/app/account", "/app", "/account", id="carries-root"),
        pytest.param("/account", "/app", "/account", id="without-root"),
        pytest.param("/app", "/app", "/", id="root-itself"),
        pytest.param("/apple/account", "/app", "/apple/account", id="not-a-segment-prefix"),
        pytest.param("/account", "", "/account", id="no-mount"),
    ],
)
def test_route_path(path: str, root_path: str, expected: str) -> None:
    assert route_path(path, root_path) == expected


@pytest.mark.parametrize(
    ("path", "root_path"),
    [
        pytest.param("/sub/dashboard", "/sub", id="starlette-mount"),
        pytest.param("/sub/dashboard/x", "/sub", id="below-mount"),
        pytest.param("/dashboard", "/sub", id="server-without-root-in-path"),
        pytest.param("/sub/dashboard", "", id="raw-app-routing-the-full-path"),
    ],
)
def test_protect_under_a_mount(core: AuthCore, path: str, root_path: str) -> None:
    gate = make_gate(core, login_url=None)
    assert gate.shortcut("GET", path, None, root_path) is None or root_path == ""
    answer, effects = drive(gate.handle(request("GET", path, root_path=root_path)))
    if root_path == "":
        # No mount declared: /sub/dashboard is just another public path.
        assert isinstance(answer, Proceed)
    else:
        assert isinstance(answer, Answer)
        assert answer.status == 401
    assert effects == []


@pytest.mark.parametrize(
    ("route", "path", "root_path"),
    [
        pytest.param("/refresh", "/sub/refresh", "/sub", id="refresh-carries-root"),
        pytest.param("/refresh", "/refresh", "/sub", id="refresh-without-root"),
        pytest.param("/logout", "/sub/logout", "/sub", id="logout-carries-root"),
    ],
)
def test_routes_are_served_under_a_mount(
    core: AuthCore, signer: Signer, route: str, path: str, root_path: str
) -> None:
    gate = make_gate(core)
    assert gate.shortcut("POST", path, SECRET, root_path) is None
    cookie = f"crossmint-refresh-token={SECRET}"
    flow = gate.handle(post(path, cookie=cookie, root_path=root_path))
    if route == "/refresh":
        answer, effects = drive(flow, b"{}", material(signer))
        assert effects == [ReadBody(MAX_BODY), Refresh(SECRET)]
    else:
        answer, effects = drive(flow, [], None)
        assert effects == [Revoke(SECRET), Logout(SECRET)]
    assert isinstance(answer, Answer)
    assert answer.status == 200


def test_login_redirect_keeps_the_mount_prefix(core: AuthCore) -> None:
    gate = make_gate(core, login_url="/sub/login")
    answer, _ = drive(
        gate.handle(request("GET", "/dashboard", root_path="/sub", accept="text/html"))
    )
    assert isinstance(answer, Answer)
    assert headers(answer, "Location") == ["/sub/login?next=/sub/dashboard"]


# -- the middlewares' construction ----------------------------------------------------------


@pytest.mark.parametrize(
    ("middleware", "auth_class", "wanted"),
    [
        pytest.param("wsgi", "async", "CrossmintAuth", id="async-auth-in-wsgi"),
        pytest.param("asgi", "sync", "AsyncCrossmintAuth", id="sync-auth-in-asgi"),
    ],
)
def test_a_wrong_auth_kind_is_refused_at_construction(
    crossmint: Crossmint, middleware: str, auth_class: str, wanted: str
) -> None:
    from crossmint_wsgi import (
        AsyncCrossmintAuth,
        CrossmintASGIMiddleware,
        CrossmintAuth,
        CrossmintConfigError,
        CrossmintWSGIMiddleware,
    )

    auth = (AsyncCrossmintAuth if auth_class == "async" else CrossmintAuth)(crossmint)
    cls = CrossmintWSGIMiddleware if middleware == "wsgi" else CrossmintASGIMiddleware
    with pytest.raises(CrossmintConfigError) as caught:
        cls(lambda *args: None, auth)  # type: ignore[arg-type]
    assert caught.value.setting == "auth"
    assert f"needs a {wanted}, not {type(auth).__name__}" in str(caught.value)


# -- security round 3: a malformed Origin is foreign, never a 500 --------------------------------

MALFORMED_ORIGINS = [
    pytest.param("http://[::1", id="unclosed-bracket"),
    pytest.param("https://a]b", id="stray-bracket"),
    pytest.param("http://[example.com]", id="bracketed-name"),
    pytest.param("http://[::1]x", id="junk-after-bracket"),
    pytest.param("https://[v1.x]", id="ipvfuture"),
]


@pytest.mark.parametrize("origin", MALFORMED_ORIGINS)
@pytest.mark.parametrize("route", ["/refresh", "/logout"])
def test_a_malformed_origin_is_forbidden(core: AuthCore, origin: str, route: str) -> None:
    gate = make_gate(core)
    answer, effects = drive(
        gate.handle(post(route, origin=origin, cookie=f"crossmint-refresh-token={SECRET}"))
    )
    assert effects == []
    assert answer.status == 403
    assert answer.json()["error"] == "FORBIDDEN_ORIGIN"


@pytest.mark.parametrize("origin", MALFORMED_ORIGINS)
@pytest.mark.parametrize("path", ["/ws", "/dashboard/ws"])
def test_a_websocket_with_a_malformed_origin_gets_no_session(
    core: AuthCore, signer: Signer, origin: str, path: str
) -> None:
    gate = make_gate(core)
    cookie = f"crossmint-jwt={signer.token()}"
    outcome, effects = drive(
        gate.handle_websocket(request(path=path, origin=origin, cookie=cookie))
    )
    assert effects == []
    if path.startswith("/dashboard"):
        assert outcome is None  # closed before the app
    else:
        assert outcome.session is None
        assert outcome.error.code is ErrorCode.FORBIDDEN_ORIGIN
