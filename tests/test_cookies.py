"""Reading the auth cookies and writing their Set-Cookie values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import bottle
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request as StarletteRequest
from werkzeug.http import parse_cookie
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest

from crossmint_wsgi import AuthMaterial, CookieOptions, RefreshToken
from crossmint_wsgi import cookies as cookies_module
from crossmint_wsgi.cookies import (
    JWT_COOKIE,
    NO_COOKIES,
    REFRESH_COOKIE,
    AuthCookies,
    clear_cookie_headers,
    cookie_header_from,
    parse_auth_cookie_header,
    read_auth_cookies,
    session_cookie_headers,
    written_names,
)

PROJECT = "proj-1"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
EXPIRES_AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
JWT_EXP = int(datetime(2029, 6, 7, 8, 9, 10, tzinfo=timezone.utc).timestamp())


def set_cookie(value: str) -> tuple[str, str, dict[str, str | bool]]:
    """(name, value, attributes) of a Set-Cookie value; flags map to True."""
    first, *rest = value.split("; ")
    name, _, cookie_value = first.partition("=")
    attributes: dict[str, str | bool] = {}
    for part in rest:
        key, sep, attribute = part.partition("=")
        attributes[key.lower()] = attribute if sep else True
    return name, cookie_value, attributes


# -- parsing the Cookie header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "jwt", "refresh", "names"),
    [
        pytest.param(
            f"{JWT_COOKIE}={JWT}; {REFRESH_COOKIE}=r1",
            JWT,
            "r1",
            (JWT_COOKIE, REFRESH_COOKIE),
            id="both-unscoped",
        ),
        pytest.param(
            f"{REFRESH_COOKIE}=abc==", None, "abc==", (REFRESH_COOKIE,), id="value-with-equals"
        ),
        pytest.param(
            f"{REFRESH_COOKIE}=a=b=c; other=1",
            None,
            "a=b=c",
            (REFRESH_COOKIE,),
            id="several-equals",
        ),
        pytest.param(
            f"{JWT_COOKIE}=first; {JWT_COOKIE}=second",
            None,
            None,
            (JWT_COOKIE,),
            id="repeated-with-two-values-is-used-by-nobody",
        ),
        pytest.param(
            f"{JWT_COOKIE}-{PROJECT}=scoped; {REFRESH_COOKIE}-{PROJECT}=rs",
            "scoped",
            "rs",
            (f"{JWT_COOKIE}-{PROJECT}", f"{REFRESH_COOKIE}-{PROJECT}"),
            id="scoped-names",
        ),
        pytest.param(
            f"{JWT_COOKIE}-{PROJECT}=scoped; {JWT_COOKIE}=plain",
            "plain",
            None,
            (JWT_COOKIE, f"{JWT_COOKIE}-{PROJECT}"),
            id="unscoped-before-scoped",
        ),
        pytest.param(
            f"{JWT_COOKIE}-{PROJECT}=scoped; {REFRESH_COOKIE}=plain-refresh",
            "scoped",
            "plain-refresh",
            (f"{JWT_COOKIE}-{PROJECT}", REFRESH_COOKIE),
            id="scoped-jwt-unscoped-refresh",
        ),
        pytest.param(f"{JWT_COOKIE}-other-project=x", None, None, (), id="other-project-ignored"),
        pytest.param(f"{JWT_COOKIE}=; {REFRESH_COOKIE}=", None, None, (), id="empty-values"),
        pytest.param(
            f"{JWT_COOKIE}=; {JWT_COOKIE}-{PROJECT}=scoped",
            "scoped",
            None,
            (f"{JWT_COOKIE}-{PROJECT}",),
            id="empty-unscoped-falls-back",
        ),
        pytest.param(
            f'{REFRESH_COOKIE}="quoted value"', None, "quoted value", (REFRESH_COOKIE,), id="quoted"
        ),
        pytest.param(
            f"  {JWT_COOKIE}={JWT} ;  {REFRESH_COOKIE}=r ",
            JWT,
            "r",
            (JWT_COOKIE, REFRESH_COOKIE),
            id="spaces",
        ),
        pytest.param(f"crossmint-jwtx={JWT}", None, None, (), id="prefix-is-not-the-name"),
        pytest.param(
            f"{JWT_COOKIE}={JWT}; junk=\xff\xfe",
            JWT,
            None,
            (JWT_COOKIE,),
            id="bytes-not-utf8-elsewhere",
        ),
    ],
)
def test_parse_auth_cookie_header(
    header: str, jwt: str | None, refresh: str | None, names: tuple[str, ...]
) -> None:
    cookies = parse_auth_cookie_header(header, PROJECT)
    assert (cookies.jwt, cookies.refresh, cookies.names) == (jwt, refresh, names)
    assert bool(cookies) is bool(jwt or refresh or cookies.ambiguous)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-header"),
        pytest.param("", id="empty"),
        pytest.param("session=abc; theme=dark", id="other-cookies"),
        pytest.param("=crossmint", id="no-dash"),
    ],
)
def test_fast_path_when_no_crossmint_cookie(
    header: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parser_must_not_run(*args: object) -> None:
        raise AssertionError("parse_cookie was called")

    monkeypatch.setattr(cookies_module, "parse_cookie", parser_must_not_run)
    assert parse_auth_cookie_header(header, PROJECT) is NO_COOKIES


def test_auth_cookies_repr_hides_values() -> None:
    cookies = AuthCookies("the-jwt-value", "the-refresh-value", (JWT_COOKIE,))
    assert "the-jwt-value" not in repr(cookies)
    assert "the-refresh-value" not in repr(cookies)
    assert not AuthCookies()


def test_read_auth_cookies_from_a_mapping() -> None:
    cookies = read_auth_cookies({REFRESH_COOKIE: "r", "x": "y"}, PROJECT)
    assert (cookies.jwt, cookies.refresh) == (None, "r")
    assert read_auth_cookies({}, PROJECT) is NO_COOKIES


# -- where cookies come from ---------------------------------------------------------------


HEADER = f"{JWT_COOKIE}={JWT}; {REFRESH_COOKIE}=a=b; {JWT_COOKIE}=second"


def _environ() -> dict[str, Any]:
    return EnvironBuilder(path="/", headers={"Cookie": HEADER}).get_environ()


def _asgi_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"host", b"example.com"), (b"cookie", HEADER.encode("latin-1"))],
    }


class _CookiesOnly:
    def __init__(self, cookies: Mapping[str, str]) -> None:
        self.cookies = cookies


def _flask_request() -> Any:
    app = Flask(__name__)
    with app.test_request_context("/", headers={"Cookie": HEADER}):
        from flask import request

        return request._get_current_object()  # type: ignore[attr-defined]


SOURCES = [
    pytest.param(_environ, id="wsgi-environ"),
    pytest.param(_asgi_scope, id="asgi-scope"),
    pytest.param(lambda: WerkzeugRequest(_environ()), id="werkzeug-request"),
    pytest.param(_flask_request, id="flask-request"),
    pytest.param(lambda: bottle.BaseRequest(_environ()), id="bottle-request"),
    pytest.param(lambda: StarletteRequest(_asgi_scope()), id="starlette-request"),
    # Quart's request has no environ; its .cookies is werkzeug's parse of the header.
    pytest.param(lambda: _CookiesOnly(parse_cookie(HEADER)), id="quart-like-request"),
]


@pytest.mark.parametrize("make_source", SOURCES)
def test_cookie_header_from_sources(make_source: Any) -> None:
    cookies = cookie_header_from(make_source())
    assert cookies is not None
    found = read_auth_cookies(cookies, PROJECT)
    assert found.refresh == "a=b"
    # The frameworks' own readers disagree on which crossmint-jwt is meant:
    # every source shows both, so none is used.
    assert (found.jwt, found.ambiguous) == (None, (JWT_COOKIE,))


@pytest.mark.parametrize(
    "source",
    [
        pytest.param({JWT_COOKIE: "j", REFRESH_COOKIE: "r"}, id="plain-dict"),
        pytest.param(
            {"headers": "not a scope", JWT_COOKIE: "j", REFRESH_COOKIE: "r"}, id="odd-dict"
        ),
    ],
)
def test_cookie_mapping_is_used_as_it_is(source: Mapping[str, str]) -> None:
    assert cookie_header_from(source) is source


def test_multiple_cookie_headers_in_a_scope_are_joined() -> None:
    scope = {
        "type": "http",
        "headers": [(b"cookie", b"a=1"), (b"Cookie", f"{JWT_COOKIE}=j".encode())],
    }
    cookies = cookie_header_from(scope)
    assert cookies is not None
    assert (cookies["a"], cookies[JWT_COOKIE]) == ("1", "j")


def test_environ_without_cookies() -> None:
    cookies = cookie_header_from({"wsgi.version": (1, 0), "PATH_INFO": "/"})
    assert cookies is not None
    assert len(cookies) == 0


def test_utf8_cookie_value_in_an_environ_is_decoded() -> None:
    raw = "crossmint-refresh-token=caf\u00e9".encode()
    cookies = cookie_header_from({"HTTP_COOKIE": raw.decode("latin-1")})
    assert cookies is not None
    assert cookies[REFRESH_COOKIE] == "caf\u00e9"


def test_none_source() -> None:
    assert cookie_header_from(None) is None


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(object(), id="object"),
        pytest.param("crossmint-jwt=x", id="string"),
        pytest.param(type("Req", (), {"cookies": "a=b"})(), id="cookies-not-mapping"),
    ],
)
def test_unknown_source(source: object) -> None:
    with pytest.raises(TypeError, match="cannot read cookies"):
        cookie_header_from(source)


# -- Set-Cookie -----------------------------------------------------------------------------


def _material() -> AuthMaterial:
    return AuthMaterial(JWT, RefreshToken("refresh-secret", EXPIRES_AT))


def test_session_cookies_defaults() -> None:
    jwt_cookie, refresh_cookie = session_cookie_headers(
        _material(), JWT_EXP, CookieOptions(), secure=False
    )
    name, value, attributes = set_cookie(jwt_cookie)
    assert (name, value) == (JWT_COOKIE, JWT)
    assert attributes == {
        "expires": "Thu, 07 Jun 2029 08:09:10 GMT",
        "path": "/",
        "samesite": "Lax",
    }
    name, value, attributes = set_cookie(refresh_cookie)
    assert (name, value) == (REFRESH_COOKIE, "refresh-secret")
    assert attributes == {
        "expires": "Wed, 02 Jan 2030 03:04:05 GMT",
        "httponly": True,
        "path": "/",
        "samesite": "Lax",
    }


@pytest.mark.parametrize(
    ("options", "secure", "expect_secure"),
    [
        pytest.param(CookieOptions(), False, False, id="http-default"),
        pytest.param(CookieOptions(), True, True, id="https-default"),
        pytest.param(CookieOptions(secure=True), False, True, id="forced-on"),
        pytest.param(CookieOptions(secure=False), True, False, id="forced-off"),
    ],
)
def test_secure_attribute(options: CookieOptions, secure: bool, expect_secure: bool) -> None:
    for header in session_cookie_headers(_material(), JWT_EXP, options, secure=secure):
        assert ("secure" in set_cookie(header)[2]) is expect_secure
    for header in clear_cookie_headers(options, secure=secure):
        assert ("secure" in set_cookie(header)[2]) is expect_secure


def test_jwt_cookie_is_never_http_only() -> None:
    options = CookieOptions(http_only=True)
    jwt_cookie, refresh_cookie = session_cookie_headers(_material(), JWT_EXP, options, secure=True)
    assert "httponly" not in set_cookie(jwt_cookie)[2]
    assert set_cookie(refresh_cookie)[2]["httponly"] is True


def test_refresh_cookie_can_be_readable() -> None:
    headers = session_cookie_headers(
        _material(), JWT_EXP, CookieOptions(http_only=False), secure=False
    )
    assert all("httponly" not in set_cookie(header)[2] for header in headers)


def test_domain_path_and_same_site_options() -> None:
    options = CookieOptions(domain="example.com", path="/app", same_site="None", secure=True)
    for header in session_cookie_headers(_material(), JWT_EXP, options, secure=False):
        attributes = set_cookie(header)[2]
        assert attributes["domain"] == "example.com"
        assert attributes["path"] == "/app"
        assert attributes["samesite"] == "None"
        assert attributes["secure"] is True


def test_unknown_expiry_gives_session_cookies() -> None:
    material = AuthMaterial(JWT, RefreshToken("refresh-secret"))
    for header in session_cookie_headers(material, None, CookieOptions(), secure=False):
        assert "expires" not in set_cookie(header)[2]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param((), [JWT_COOKIE, REFRESH_COOKIE], id="both"),
        pytest.param(
            (f"{JWT_COOKIE}-{PROJECT}", JWT_COOKIE),
            [JWT_COOKIE, REFRESH_COOKIE, f"{JWT_COOKIE}-{PROJECT}"],
            id="scoped-names-once",
        ),
    ],
)
def test_clearing_is_empty_and_expired_in_1970(names: tuple[str, ...], expected: list[str]) -> None:
    headers = clear_cookie_headers(CookieOptions(domain="example.com"), secure=False, names=names)
    parsed = [set_cookie(header) for header in headers]
    assert [name for name, _, _ in parsed] == expected
    for _, value, attributes in parsed:
        assert value == ""
        assert attributes["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
        assert attributes["path"] == "/"
        assert attributes["domain"] == "example.com"
        assert attributes["samesite"] == "Lax"


# -- names written, max_age ---------------------------------------------------------------

SCOPED_JWT = f"{JWT_COOKIE}-{PROJECT}"
SCOPED_REFRESH = f"{REFRESH_COOKIE}-{PROJECT}"


@pytest.mark.parametrize(
    ("choice", "carried", "jwt_names", "refresh_names"),
    [
        pytest.param("unscoped", (), [JWT_COOKIE], [REFRESH_COOKIE], id="unscoped"),
        pytest.param("scoped", (), [SCOPED_JWT], [SCOPED_REFRESH], id="scoped"),
        pytest.param(
            "both", (), [JWT_COOKIE, SCOPED_JWT], [REFRESH_COOKIE, SCOPED_REFRESH], id="both"
        ),
        # The browser SDK's own cookies (no refresh route): written back, so its
        # scoped secret is not left behind, used.
        pytest.param(
            "unscoped",
            (SCOPED_JWT, SCOPED_REFRESH),
            [JWT_COOKIE, SCOPED_JWT],
            [REFRESH_COOKIE, SCOPED_REFRESH],
            id="unscoped-request-carried-scoped",
        ),
        pytest.param(
            "unscoped",
            (JWT_COOKIE, SCOPED_REFRESH),
            [JWT_COOKIE, SCOPED_JWT],
            [REFRESH_COOKIE, SCOPED_REFRESH],
            id="one-scoped-name-is-enough",
        ),
        pytest.param(
            "scoped",
            (JWT_COOKIE,),
            [JWT_COOKIE, SCOPED_JWT],
            [REFRESH_COOKIE, SCOPED_REFRESH],
            id="scoped-request-carried-unscoped",
        ),
        pytest.param(
            "scoped",
            (SCOPED_JWT, SCOPED_REFRESH),
            [SCOPED_JWT],
            [SCOPED_REFRESH],
            id="scoped-request-carried-scoped",
        ),
    ],
)
def test_written_names(
    choice: str, carried: tuple[str, ...], jwt_names: list[str], refresh_names: list[str]
) -> None:
    options = CookieOptions(names=choice)
    assert written_names(options, PROJECT, carried) == (jwt_names, refresh_names)


def test_without_a_project_id_only_unscoped_names_are_written() -> None:
    assert written_names(CookieOptions(names="scoped"), None) == ([JWT_COOKIE], [REFRESH_COOKIE])


def test_a_refresh_writes_every_name_the_request_carried() -> None:
    """The browser SDK's scoped cookies, read and refreshed, get the new values:
    none is left holding the used secret."""
    carried = read_auth_cookies(
        {SCOPED_JWT: "old-jwt", SCOPED_REFRESH: "used-secret", REFRESH_COOKIE: "other"}, PROJECT
    )
    headers = session_cookie_headers(
        _material(), JWT_EXP, CookieOptions(), secure=False, project_id=PROJECT, names=carried.names
    )
    written = {name: value for name, value, _ in map(set_cookie, headers)}
    assert written == {
        JWT_COOKIE: JWT,
        SCOPED_JWT: JWT,
        REFRESH_COOKIE: "refresh-secret",
        SCOPED_REFRESH: "refresh-secret",
    }
    http_only = {
        name: attributes.get("httponly", False) for name, _, attributes in map(set_cookie, headers)
    }
    # The SDK-managed scoped secret stays readable by the SDK; ours stays HttpOnly.
    assert http_only == {
        JWT_COOKIE: False,
        SCOPED_JWT: False,
        REFRESH_COOKIE: True,
        SCOPED_REFRESH: False,
    }


@pytest.mark.parametrize(
    ("choice", "carried", "scoped_http_only"),
    [
        # The app chose scoped names, the browser sent ours: nothing says the SDK manages it.
        pytest.param("scoped", (JWT_COOKIE, REFRESH_COOKIE), True, id="app-chose-scoped"),
        # The browser SDK's own cookies (no refreshRoute): it must read the new secret.
        pytest.param("unscoped", (SCOPED_JWT, SCOPED_REFRESH), False, id="sdk-managed"),
        pytest.param("both", (SCOPED_REFRESH,), False, id="sdk-managed-secret-only"),
    ],
)
def test_a_scoped_refresh_cookie_is_readable_only_when_the_sdk_sent_it(
    choice: str, carried: tuple[str, ...], scoped_http_only: bool
) -> None:
    headers = session_cookie_headers(
        _material(),
        JWT_EXP,
        CookieOptions(names=choice),
        secure=False,
        project_id=PROJECT,
        names=carried,
    )
    attributes = {name: attrs for name, _, attrs in map(set_cookie, headers)}
    assert attributes[SCOPED_REFRESH].get("httponly", False) is scoped_http_only
    if REFRESH_COOKIE in attributes:
        assert attributes[REFRESH_COOKIE]["httponly"] is True


NOW = JWT_EXP - 3600  # the JWT has an hour left; the refresh token much longer


@pytest.mark.parametrize(
    ("max_age", "jwt_max_age", "refresh_max_age"),
    [
        pytest.param(None, None, None, id="unset"),
        pytest.param(600, "600", "600", id="shorter-than-both"),
        pytest.param(7 * 86400, "3600", "604800", id="jwt-expires-first"),
        pytest.param(
            10**9, "3600", str(int(EXPIRES_AT.timestamp()) - NOW), id="never-beyond-the-token"
        ),
        pytest.param(0, "0", "0", id="zero"),
    ],
)
def test_max_age_bounds_each_cookie_by_its_token(
    max_age: int | None, jwt_max_age: str | None, refresh_max_age: str | None
) -> None:
    jwt_cookie, refresh_cookie = session_cookie_headers(
        _material(), JWT_EXP, CookieOptions(max_age=max_age), secure=False, now=NOW
    )
    jwt_attributes, refresh_attributes = set_cookie(jwt_cookie)[2], set_cookie(refresh_cookie)[2]
    assert jwt_attributes.get("max-age") == jwt_max_age
    assert refresh_attributes.get("max-age") == refresh_max_age
    # Expires says the same moment, for clients that ignore Max-Age.
    for attributes, max_age_text in (
        (jwt_attributes, jwt_max_age),
        (refresh_attributes, refresh_max_age),
    ):
        if max_age_text is not None:
            expires = datetime.strptime(str(attributes["expires"]), "%a, %d %b %Y %H:%M:%S GMT")
            assert int(expires.replace(tzinfo=timezone.utc).timestamp()) == NOW + int(max_age_text)


def test_max_age_with_an_unknown_expiry() -> None:
    material = AuthMaterial(JWT, RefreshToken("refresh-secret"))
    headers = session_cookie_headers(
        material, None, CookieOptions(max_age=60), secure=False, now=NOW
    )
    assert [set_cookie(header)[2]["max-age"] for header in headers] == ["60", "60"]


# -- the auth cookies without the full parser -----------------------------------------------

_PIECES = st.sampled_from(
    [
        "crossmint-jwt",
        "crossmint-refresh-token",
        "crossmint-jwt-p1",
        "crossmint-",
        "xcrossmint-jwt",
        "a",
        "=",
        ";",
        " ",
        "\t",
        '"',
        "\\",
        "v.1",
        "é",
        "\n",
        ",",
    ]
)


@given(st.lists(_PIECES, max_size=24).map("".join))
@settings(max_examples=2000, deadline=None)
def test_auth_cookies_read_as_the_full_parser_reads_them(header: str) -> None:
    # The fast reading of the auth cookies must agree with werkzeug's parser
    # on every header: a disagreement would let a header mean two things.
    expected = read_auth_cookies(cookies_module._parse(header), "p1")
    assert parse_auth_cookie_header(header, "p1") == expected


@pytest.mark.parametrize(
    ("header", "jwt", "refresh"),
    [
        pytest.param("crossmint-jwt=a; crossmint-refresh-token=b", "a", "b", id="plain"),
        pytest.param("crossmint-jwt=a; crossmint-jwt=z", None, None, id="repeated-is-ambiguous"),
        pytest.param("crossmint-jwt=; crossmint-jwt=z", "z", None, id="empty-is-absent"),
        pytest.param("crossmint-jwt=a; crossmint-jwt=a", "a", None, id="identical-repeat"),
        pytest.param("crossmint-jwt=a b; crossmint-refresh-token=b", None, "b", id="space-drops"),
        pytest.param('x="; crossmint-jwt=evil"; crossmint-jwt=a', "a", None, id="quoted-semicolon"),
        pytest.param(" \tcrossmint-jwt \t= \ta \t", "a", None, id="blanks"),
        pytest.param("xcrossmint-jwt=a", None, None, id="other-name"),
    ],
)
def test_auth_cookie_edge_cases(header: str, jwt: str | None, refresh: str | None) -> None:
    found = parse_auth_cookie_header(header, "p1")
    assert (found.jwt, found.refresh) == (jwt, refresh)


# -- a name carried twice ---------------------------------------------------------------------

SCOPED_JWT = f"{JWT_COOKIE}-{PROJECT}"
SCOPED_REFRESH = f"{REFRESH_COOKIE}-{PROJECT}"


@pytest.mark.parametrize(
    ("header", "jwt", "refresh", "ambiguous"),
    [
        pytest.param(
            f"{JWT_COOKIE}=mallory; {JWT_COOKIE}=forged", None, None, (JWT_COOKIE,), id="jwt-twice"
        ),
        pytest.param(
            f"{JWT_COOKIE}=forged; {JWT_COOKIE}=mallory", None, None, (JWT_COOKIE,), id="reversed"
        ),
        pytest.param(
            f"a=1; {JWT_COOKIE}=m; b=2; {REFRESH_COOKIE}=r; {JWT_COOKIE}=f",
            None,
            "r",
            (JWT_COOKIE,),
            id="among-others",
        ),
        pytest.param(f"{JWT_COOKIE}=m; {JWT_COOKIE}=m", "m", None, (), id="identical-is-harmless"),
        pytest.param(f"{JWT_COOKIE}=; {JWT_COOKIE}=m", "m", None, (), id="empty-is-absent"),
        pytest.param(
            f"{JWT_COOKIE}=m; {REFRESH_COOKIE}=r1; {REFRESH_COOKIE}=r2",
            "m",
            None,
            (REFRESH_COOKIE,),
            id="refresh-twice",
        ),
        pytest.param(
            f"{JWT_COOKIE}=m; {SCOPED_JWT}=s1; {SCOPED_JWT}=s2",
            None,
            None,
            (SCOPED_JWT,),
            id="scoped-twice-spoils-the-unscoped-too",
        ),
        pytest.param(
            f"{SCOPED_REFRESH}=a; {SCOPED_REFRESH}=b; {REFRESH_COOKIE}=c",
            None,
            None,
            (SCOPED_REFRESH,),
            id="scoped-refresh-twice",
        ),
        pytest.param(
            f"{JWT_COOKIE}=m; {SCOPED_JWT}=s", "m", None, (), id="two-names-are-not-one-name"
        ),
        pytest.param(
            f'x="; {JWT_COOKIE}=forged"; {JWT_COOKIE}=m', "m", None, (), id="quoted-is-a-value"
        ),
        pytest.param(
            f"{JWT_COOKIE}=a; {JWT_COOKIE}=b; {REFRESH_COOKIE}=c; {REFRESH_COOKIE}=d",
            None,
            None,
            (JWT_COOKIE, REFRESH_COOKIE),
            id="both-twice",
        ),
    ],
)
def test_repeated_names(
    header: str, jwt: str | None, refresh: str | None, ambiguous: tuple[str, ...]
) -> None:
    # Every way in reads the same: the raw header, werkzeug's MultiDict, the pairs.
    for found in (
        parse_auth_cookie_header(header, PROJECT),
        read_auth_cookies(parse_cookie(header), PROJECT),
        read_auth_cookies(cookies_module.auth_cookie_pairs(header), PROJECT),
        read_auth_cookies(cookie_header_from({"HTTP_COOKIE": header}) or {}, PROJECT),
    ):
        assert (found.jwt, found.refresh, found.ambiguous) == (jwt, refresh, ambiguous)
        assert bool(found)
        assert set(ambiguous) <= set(found.names), "an ambiguous name is cleared with the rest"
        message = cookies_module.ambiguity(found)
        if ambiguous:
            assert message is not None
            assert all(name in message for name in ambiguous)
            assert "forged" not in message
            assert "mallory" not in message
        else:
            assert message is None


def test_two_cookie_lines_of_a_starlette_request_are_both_read() -> None:
    # Starlette's own request.cookies keeps one of the two lines' values.
    scope = {
        "type": "http",
        "headers": [(b"cookie", b"crossmint-jwt=mallory"), (b"cookie", b"crossmint-jwt=forged")],
    }
    request = StarletteRequest(scope)
    assert request.cookies == {JWT_COOKIE: "forged"}
    found = read_auth_cookies(cookie_header_from(request) or {}, PROJECT)
    assert (found.jwt, found.ambiguous) == (None, (JWT_COOKIE,))


@pytest.mark.parametrize(
    ("jwt", "refresh", "expected_jwt", "expected_refresh", "ambiguous"),
    [
        pytest.param(None, None, None, "r", (JWT_COOKIE,), id="nothing-given"),
        pytest.param("given", None, "given", "r", (), id="jwt-given-ends-the-doubt"),
        pytest.param(None, "r2", None, "r2", (JWT_COOKIE,), id="refresh-given-leaves-it"),
    ],
)
def test_explicit_values_replace_an_ambiguous_cookie(
    jwt: str | None,
    refresh: str | None,
    expected_jwt: str | None,
    expected_refresh: str | None,
    ambiguous: tuple[str, ...],
) -> None:
    found = parse_auth_cookie_header(f"{JWT_COOKIE}=a; {JWT_COOKIE}=b; {REFRESH_COOKIE}=r", PROJECT)
    given = found.given(jwt, refresh)
    assert (given.jwt, given.refresh, given.ambiguous) == (
        expected_jwt,
        expected_refresh,
        ambiguous,
    )
