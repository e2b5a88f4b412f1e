"""Crossmint API requests, built once, and the parsing of their answers."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import pytest

import crossmint_wsgi
from crossmint_wsgi import (
    AuthMaterial,
    CrossmintAuthError,
    CrossmintConfigError,
    ErrorCode,
    RefreshToken,
    User,
)
from crossmint_wsgi.api import (
    API_VERSION,
    ApiRequest,
    check_key_set_answer,
    jwks_request,
    logout_request,
    parse_jwks_answer,
    parse_logout_answer,
    parse_refresh_answer,
    parse_refresh_route_answer,
    parse_user_answer,
    refresh_request,
    unreachable,
    upstream_unavailable,
    user_request,
)
from crossmint_wsgi.config import Crossmint, build_crossmint
from crossmint_wsgi.testing._keys import mint_api_key

SECRET = "refresh-secret-value-0123456789"


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'RS256'})}.{b64(claims)}.c2lnbmF0dXJl"


# The answer's JWT is read (not verified) for its sub and exp.
JWT = _unsigned_jwt({"sub": "user-1", "exp": 1_900_000_000})


@pytest.fixture(scope="module")
def minted() -> Any:
    return mint_api_key("project-9")


def crossmint_for(minted: Any, **kwargs: Any) -> Crossmint:
    kwargs.setdefault("base_url", "http://127.0.0.1:9999")
    return build_crossmint(minted.api_key, signing_key=minted.signing_key, **kwargs)


# -- requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "method", "path", "body"),
    [
        pytest.param(
            lambda c: refresh_request(c, SECRET),
            "POST",
            "/api/2024-09-26/session/sdk/auth/refresh",
            {"refresh": SECRET},
            id="refresh",
        ),
        pytest.param(
            lambda c: logout_request(c, SECRET),
            "POST",
            "/api/2024-09-26/session/sdk/auth/logout",
            {"refresh": SECRET},
            id="logout",
        ),
        pytest.param(
            lambda c: user_request(c, "user-1"),
            "GET",
            "/api/2024-09-26/sdk/auth/user/user-1",
            None,
            id="user",
        ),
        pytest.param(
            lambda c: user_request(c, "a/b c?d"),
            "GET",
            "/api/2024-09-26/sdk/auth/user/a%2Fb%20c%3Fd",
            None,
            id="user-id-quoted",
        ),
        pytest.param(lambda c: jwks_request(c), "GET", "/.well-known/jwks.json", None, id="jwks"),
    ],
)
@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://127.0.0.1:9999", id="root"),
        pytest.param("https://proxy.example/crossmint/", id="with-prefix"),
    ],
)
def test_request_building(
    minted: Any, build: Any, method: str, path: str, body: Any, base_url: str
) -> None:
    crossmint = crossmint_for(minted, base_url=base_url)
    request: ApiRequest = build(crossmint)
    assert request.method == method
    assert request.url == base_url.rstrip("/") + path
    assert request.headers["x-api-key"] == minted.api_key
    assert request.headers["x-client-name"] == "crossmint-wsgi"
    assert request.headers["x-client-version"] == crossmint_wsgi.__version__
    assert "x-app-identifier" not in request.headers
    if body is None:
        assert request.body is None
        assert "content-type" not in request.headers
    else:
        assert request.body is not None
        assert json.loads(request.body) == body
        assert request.headers["content-type"] == "application/json"


def test_app_identifier_header(minted: Any) -> None:
    crossmint = crossmint_for(minted, app_id="my-app")
    for request in (
        refresh_request(crossmint, SECRET),
        logout_request(crossmint, SECRET),
        user_request(crossmint, "u"),
        jwks_request(crossmint),
    ):
        assert request.headers["x-app-identifier"] == "my-app"


def test_api_version() -> None:
    assert API_VERSION == "2024-09-26"


def test_request_repr_has_no_secret(minted: Any) -> None:
    crossmint = crossmint_for(minted)
    for request in (refresh_request(crossmint, SECRET), logout_request(crossmint, SECRET)):
        text = repr(request)
        assert SECRET not in text
        assert minted.api_key not in text
        assert request.url in text


# -- the refresh answer -------------------------------------------------------------------------


def answer(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jwt": JWT,
        "refresh": {"secret": SECRET, "expiresAt": "2030-01-02T03:04:05.678Z"},
        "user": {"id": "user-1", "email": "a@example.com", "custom": 1},
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def body(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


#: A CDN's block page, as Cloudflare answers a blocked region ("error 1009").
CLOUDFLARE_1009 = (
    b"<!DOCTYPE html>\n<html><head><title>Access denied | www.crossmint.com used Cloudflare"
    b" to restrict access</title></head><body><h1>Error 1009</h1></body></html>"
)


def test_good_refresh_answer() -> None:
    material = parse_refresh_answer(200, body(answer()))
    assert material == AuthMaterial(
        JWT,
        RefreshToken(SECRET, datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)),
        User("user-1", email="a@example.com"),
    )
    assert material.user is not None
    assert material.user.raw["custom"] == 1


@pytest.mark.parametrize(
    ("status", "data", "user"),
    [
        pytest.param(201, answer(), "user-1", id="201"),
        pytest.param(200, answer(user=None), None, id="no-user"),
        pytest.param(200, answer(user="not an object"), None, id="user-not-object"),
        pytest.param(200, answer(extra={"x": 1}), "user-1", id="unknown-fields"),
    ],
)
def test_refresh_answer_variants(status: int, data: Any, user: str | None) -> None:
    material = parse_refresh_answer(status, body(data))
    assert material.jwt == JWT
    assert (material.user.id if material.user else None) == user


@pytest.mark.parametrize(
    ("status", "data", "code", "message"),
    [
        pytest.param(400, {"message": "bad"}, ErrorCode.SESSION_EXPIRED, "HTTP 400", id="400"),
        pytest.param(401, {"message": "no"}, ErrorCode.SESSION_EXPIRED, "HTTP 401", id="401"),
        pytest.param(403, {}, ErrorCode.SESSION_EXPIRED, "HTTP 403", id="403-empty-object"),
        pytest.param(404, {"message": "x"}, ErrorCode.SESSION_EXPIRED, "HTTP 404", id="404-json"),
        pytest.param(410, answer(), ErrorCode.SESSION_EXPIRED, "HTTP 410", id="410-with-body"),
        # Not JSON: a WAF, CDN or proxy answered, never Crossmint; no verdict on the secret.
        pytest.param(
            403, CLOUDFLARE_1009, ErrorCode.UPSTREAM_UNAVAILABLE, "403 .* HTML", id="403-cloudflare"
        ),
        pytest.param(403, b"<html>", ErrorCode.UPSTREAM_UNAVAILABLE, "403 .* HTML", id="403-html"),
        pytest.param(401, b"", ErrorCode.UPSTREAM_UNAVAILABLE, "401 .* empty", id="401-empty"),
        pytest.param(404, b"  \n", ErrorCode.UPSTREAM_UNAVAILABLE, "404 .* empty", id="404-blank"),
        pytest.param(
            400, b"Bad Request", ErrorCode.UPSTREAM_UNAVAILABLE, "not a JSON object", id="400-text"
        ),
        pytest.param(
            403,
            b'{"message": "x"',
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "not a JSON",
            id="truncated-4xx",
        ),
        pytest.param(401, None, ErrorCode.UPSTREAM_UNAVAILABLE, "not a JSON", id="401-null"),
        pytest.param(401, [], ErrorCode.UPSTREAM_UNAVAILABLE, "not a JSON", id="401-list"),
        pytest.param(401, "no", ErrorCode.UPSTREAM_UNAVAILABLE, "not a JSON", id="401-string"),
        pytest.param(
            403, b"\xff\xfe", ErrorCode.UPSTREAM_UNAVAILABLE, "not a JSON", id="403-not-utf8"
        ),
        pytest.param(429, {"message": "slow"}, ErrorCode.UPSTREAM_UNAVAILABLE, "429", id="429"),
        pytest.param(408, b"", ErrorCode.UPSTREAM_UNAVAILABLE, "408", id="408"),
        pytest.param(500, answer(), ErrorCode.UPSTREAM_UNAVAILABLE, "HTTP 500", id="500"),
        pytest.param(502, b"<html>", ErrorCode.UPSTREAM_UNAVAILABLE, "HTTP 502", id="502-html"),
        pytest.param(503, b"", ErrorCode.UPSTREAM_UNAVAILABLE, "HTTP 503", id="503-empty"),
        pytest.param(302, {}, ErrorCode.UPSTREAM_UNAVAILABLE, "unexpected HTTP 302", id="302"),
        pytest.param(204, b"", ErrorCode.UPSTREAM_UNAVAILABLE, "not JSON", id="204-empty"),
        pytest.param(200, b"not json", ErrorCode.UPSTREAM_UNAVAILABLE, "not JSON", id="bad-json"),
        pytest.param(
            200, b'{"jwt": "x"', ErrorCode.UPSTREAM_UNAVAILABLE, "not JSON", id="truncated"
        ),
        pytest.param(200, b"\xff\xfe", ErrorCode.UPSTREAM_UNAVAILABLE, "not JSON", id="not-utf8"),
        pytest.param(200, [answer()], ErrorCode.UPSTREAM_UNAVAILABLE, "not an object", id="list"),
        pytest.param(200, "text", ErrorCode.UPSTREAM_UNAVAILABLE, "not an object", id="string"),
        pytest.param(200, answer(jwt=None), ErrorCode.UPSTREAM_UNAVAILABLE, "shape", id="no-jwt"),
        pytest.param(200, answer(jwt=""), ErrorCode.UPSTREAM_UNAVAILABLE, "shape", id="empty-jwt"),
        pytest.param(200, answer(jwt=5), ErrorCode.UPSTREAM_UNAVAILABLE, "shape", id="jwt-number"),
        pytest.param(
            200, answer(jwt="not-a-jwt"), ErrorCode.UPSTREAM_UNAVAILABLE, "shape", id="jwt-garbage"
        ),
        pytest.param(
            200,
            answer(jwt=_unsigned_jwt({"exp": 1_900_000_000})),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "without sub or exp",
            id="jwt-without-sub",
        ),
        pytest.param(
            200,
            answer(jwt=_unsigned_jwt({"sub": "user-1"})),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "without sub or exp",
            id="jwt-without-exp",
        ),
        pytest.param(
            200, answer(refresh=None), ErrorCode.UPSTREAM_UNAVAILABLE, "shape", id="no-refresh"
        ),
        pytest.param(
            200,
            answer(refresh=SECRET),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="refresh-string",
        ),
        pytest.param(
            200,
            answer(refresh=[SECRET]),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="refresh-list",
        ),
        pytest.param(
            200,
            answer(refresh={"expiresAt": "2030-01-01T00:00:00Z"}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="no-secret",
        ),
        pytest.param(
            200,
            answer(refresh={"secret": "", "expiresAt": "2030-01-01T00:00:00Z"}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="empty-secret",
        ),
        pytest.param(
            200,
            answer(refresh={"secret": SECRET}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="no-expires-at",
        ),
        pytest.param(
            200,
            answer(refresh={"secret": SECRET, "expiresAt": "next week"}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="bad-expires-at",
        ),
        pytest.param(
            200,
            answer(refresh={"secret": SECRET, "expiresAt": 1893456000}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="numeric-expires-at",
        ),
        pytest.param(
            200,
            answer(refresh={"secret": SECRET, "expiresAt": None}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="null-expires-at",
        ),
        pytest.param(
            200,
            answer(user={"email": "no-id@example.com"}),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "shape",
            id="user-without-id",
        ),
    ],
)
def test_refresh_answer_failures(status: int, data: Any, code: ErrorCode, message: str) -> None:
    with pytest.raises(CrossmintAuthError, match=message) as caught:
        parse_refresh_answer(status, body(data))
    assert caught.value.code is code
    assert SECRET not in str(caught.value)
    assert JWT not in str(caught.value)


def test_refused_refresh_is_logged_without_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="crossmint_wsgi.api"), pytest.raises(CrossmintAuthError):
        parse_refresh_answer(401, body({"message": SECRET}))
    assert "HTTP 401" in caplog.text
    assert SECRET not in caplog.text


def route_answer(**overrides: Any) -> dict[str, Any]:
    data = answer(**overrides)
    data["refreshToken"] = data.pop("refresh")
    return data


@pytest.mark.parametrize(
    ("status", "data", "outcome"),
    [
        pytest.param(200, route_answer(), None, id="200"),
        pytest.param(401, {"message": "no"}, ErrorCode.SESSION_EXPIRED, id="401-json"),
        pytest.param(401, {}, ErrorCode.SESSION_EXPIRED, id="401-empty-object"),
        # A 401 that is not JSON is a proxy's or a WAF's, not the route's verdict.
        pytest.param(401, b"", ErrorCode.UPSTREAM_UNAVAILABLE, id="401-empty"),
        pytest.param(
            401, b"<html>Unauthorized</html>", ErrorCode.UPSTREAM_UNAVAILABLE, id="401-html"
        ),
        pytest.param(401, [], ErrorCode.UPSTREAM_UNAVAILABLE, id="401-list"),
        pytest.param(403, {"message": "no"}, ErrorCode.UPSTREAM_UNAVAILABLE, id="403-json"),
        pytest.param(403, CLOUDFLARE_1009, ErrorCode.UPSTREAM_UNAVAILABLE, id="403-cloudflare"),
        pytest.param(404, b"", ErrorCode.UPSTREAM_UNAVAILABLE, id="404"),
        pytest.param(502, b"<html>", ErrorCode.UPSTREAM_UNAVAILABLE, id="502-html"),
    ],
)
def test_refresh_route_answer(status: int, data: Any, outcome: ErrorCode | None) -> None:
    if outcome is None:
        assert parse_refresh_route_answer(status, body(data)).jwt == JWT
        return
    with pytest.raises(CrossmintAuthError) as caught:
        parse_refresh_route_answer(status, body(data))
    assert caught.value.code is outcome


@pytest.mark.parametrize(
    ("status", "data", "done"),
    [
        pytest.param(200, {}, True, id="200"),
        pytest.param(204, b"", True, id="204-empty"),
        pytest.param(200, b"<html>", True, id="200-html-ignored"),
        # A JSON refusal: the secret was dead already.
        pytest.param(401, {"message": "no"}, True, id="401-json"),
        pytest.param(400, {"message": "bad"}, True, id="400-json"),
        # No verdict: the secret may still be alive at Crossmint.
        pytest.param(403, CLOUDFLARE_1009, False, id="403-cloudflare"),
        pytest.param(401, b"", False, id="401-empty"),
        pytest.param(429, {"message": "slow"}, False, id="429"),
        pytest.param(500, {"message": "oops"}, False, id="500"),
        pytest.param(503, b"", False, id="503"),
        pytest.param(302, b"", False, id="302"),
    ],
)
def test_logout_answer(status: int, data: Any, done: bool) -> None:
    if done:
        assert parse_logout_answer(status, body(data)) is None
        return
    with pytest.raises(CrossmintAuthError) as caught:
        parse_logout_answer(status, body(data))
    assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "logout" in caught.value.message


# -- user and key set answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "data", "expected"),
    [
        pytest.param(200, {"id": "u1", "email": "e@x"}, User("u1", email="e@x"), id="200"),
        pytest.param(404, {"message": "no"}, ErrorCode.INVALID_REQUEST, id="404"),
        pytest.param(403, b"", ErrorCode.INVALID_REQUEST, id="403"),
        pytest.param(500, {"id": "u1"}, ErrorCode.UPSTREAM_UNAVAILABLE, id="500"),
        pytest.param(200, b"<html>", ErrorCode.UPSTREAM_UNAVAILABLE, id="not-json"),
        pytest.param(200, {"email": "e@x"}, ErrorCode.UPSTREAM_UNAVAILABLE, id="no-id"),
        pytest.param(200, ["u1"], ErrorCode.UPSTREAM_UNAVAILABLE, id="list"),
    ],
)
def test_user_answer(status: int, data: Any, expected: User | ErrorCode) -> None:
    if isinstance(expected, User):
        assert parse_user_answer(status, body(data)) == expected
    else:
        with pytest.raises(CrossmintAuthError) as caught:
            parse_user_answer(status, body(data))
        assert caught.value.code is expected


@pytest.mark.parametrize(
    ("status", "data", "ok"),
    [
        pytest.param(200, {"keys": []}, True, id="200"),
        pytest.param(404, {"keys": []}, False, id="404"),
        pytest.param(503, b"", False, id="503"),
        pytest.param(200, b"nope", False, id="not-json"),
        pytest.param(200, [{"kty": "RSA"}], False, id="list"),
    ],
)
def test_jwks_answer(status: int, data: Any, ok: bool) -> None:
    if ok:
        assert parse_jwks_answer(status, body(data)) == data
    else:
        with pytest.raises(CrossmintAuthError) as caught:
            parse_jwks_answer(status, body(data))
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
        assert "key set" in caught.value.message


def test_upstream_unavailable() -> None:
    error = upstream_unavailable("refresh", "ConnectTimeout")
    assert error.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert error.message == "Crossmint refresh call failed: ConnectTimeout"


def test_upstream_unavailable_names_the_url() -> None:
    error = upstream_unavailable("key set", "HTTP 503", "http://127.0.0.1:9/.well-known/jwks.json")
    assert error.message == (
        "Crossmint key set call to http://127.0.0.1:9/.well-known/jwks.json failed: HTTP 503"
    )


KEYS_URL = "http://127.0.0.1:9/prefix/.well-known/jwks.json"
KEYS_REQUEST = ApiRequest("key set", "GET", KEYS_URL, {"x-api-key": "sk_secret_never_shown"})
JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "k1",
}


@pytest.mark.parametrize(
    ("status", "data", "outcome", "words"),
    [
        pytest.param(200, {"keys": [JWK]}, None, "", id="crossmint"),
        pytest.param(404, {"message": "Not Found"}, "config", "HTTP 404", id="404-wrong-prefix"),
        pytest.param(301, b"", "config", "a redirect", id="redirect"),
        pytest.param(401, b"", "config", "HTTP 401", id="401-a-proxy"),
        pytest.param(200, b"<!DOCTYPE html><html></html>", "config", "HTML", id="html"),
        pytest.param(200, b"hello", "config", "not JSON", id="text"),
        pytest.param(200, {"status": "ok"}, "config", "not a JWK Set", id="other-json"),
        pytest.param(200, [JWK], "config", "not a JWK Set", id="json-list"),
        pytest.param(200, {"keys": [{"kty": "oct", "k": "AA"}]}, "config", "no usable", id="hmac"),
        pytest.param(503, b"", "outage", "HTTP 503", id="503"),
        pytest.param(429, b"", "outage", "HTTP 429", id="429"),
        pytest.param(408, b"", "outage", "HTTP 408", id="408"),
    ],
)
def test_key_set_answer_tells_a_wrong_base_url_from_an_outage(
    status: int, data: Any, outcome: str | None, words: str
) -> None:
    # At start-up: a configuration error, or an outage, both naming the URL.
    if outcome is None:
        assert check_key_set_answer(KEYS_REQUEST, status, body(data)) == data
        assert parse_jwks_answer(status, body(data)) == data
        return
    expected = CrossmintConfigError if outcome == "config" else CrossmintAuthError
    with pytest.raises(expected) as caught:
        check_key_set_answer(KEYS_REQUEST, status, body(data))
    message = str(caught.value)
    assert KEYS_URL in message
    assert words in message
    assert "sk_secret" not in message
    if isinstance(caught.value, CrossmintConfigError):
        assert caught.value.setting == "base_url"
    else:
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    # Per request: never a crash, always a refusal to verify, saying which it was.
    if words == "no usable":
        return  # a JWK Set: the key cache refuses its keys per request
    with pytest.raises(CrossmintAuthError) as per_request:
        parse_jwks_answer(status, body(data), url=KEYS_URL)
    assert per_request.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert KEYS_URL in per_request.value.message
    assert ("Crossmint is not there" in per_request.value.message) is (outcome == "config")


@pytest.mark.parametrize(
    ("error", "why"),
    [
        pytest.param(ConnectionRefusedError(), "unreachable (ConnectionRefusedError)", id="raw"),
        pytest.param(
            upstream_unavailable("key set", "ConnectError"),
            "unreachable (ConnectError)",
            id="from-a-driver",
        ),
    ],
)
def test_unreachable_names_the_url(error: BaseException, why: str) -> None:
    named = unreachable(KEYS_REQUEST, error)
    assert named.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert named.message == f"Crossmint key set call to {KEYS_URL} failed: {why}"
    assert unreachable(KEYS_REQUEST, named) is named
