"""The Crossmint emulator, over real loopback HTTP."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, InvalidKeyIdError
from joserfc.jwk import KeySet

import crossmint_wsgi.testing
from crossmint_wsgi._base58 import b58encode
from crossmint_wsgi.config import build_crossmint, parse_api_key
from crossmint_wsgi.errors import CrossmintConfigError
from crossmint_wsgi.models import AuthMaterial, parse_timestamp
from crossmint_wsgi.testing import CrossmintEmulator, connect_emulator
from crossmint_wsgi.testing.__main__ import _instructions as cli_instructions
from crossmint_wsgi.testing._keys import mint_api_key

pytest_plugins = ["pytester"]

API = "/api/2024-09-26"
REFRESH = f"{API}/session/sdk/auth/refresh"
LOGOUT = f"{API}/session/sdk/auth/logout"
JWKS = "/.well-known/jwks.json"


# Every URL here is plain http, and building a TLS context per client costs up
# to half a second: all clients share one.
TLS = ssl.create_default_context()


def http_client(**kwargs: Any) -> httpx.Client:
    kwargs.setdefault("timeout", 10)
    return httpx.Client(verify=TLS, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 10)
    return httpx.get(url, verify=TLS, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 10)
    return httpx.post(url, verify=TLS, **kwargs)


def user_path(user_id: str) -> str:
    return f"{API}/sdk/auth/user/{user_id}"


@pytest.fixture
def emulator(crossmint_emulator: CrossmintEmulator) -> CrossmintEmulator:
    return crossmint_emulator


@pytest.fixture
def client(emulator: CrossmintEmulator) -> Iterator[httpx.Client]:
    with http_client(
        base_url=emulator.url, headers={"x-api-key": emulator.api_key}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def control(emulator: CrossmintEmulator) -> Iterator[httpx.Client]:
    """A client with no API key: the control routes need none."""
    with http_client(base_url=f"{emulator.url}/_emulator", timeout=10) as client:
        yield client


def refresh(client: httpx.Client, secret: str) -> httpx.Response:
    return client.post(REFRESH, json={"refresh": secret})


def verify(emulator: CrossmintEmulator, token: str, *, now: int | None = None) -> dict[str, Any]:
    """Verify a JWT against the JWK Set the emulator serves, audience included."""
    key_set = KeySet.import_key_set(get(f"{emulator.url}{JWKS}").json())
    decoded = jwt.decode(token, key_set, algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(
        now=now,
        leeway=0,
        exp={"essential": True},
        sub={"essential": True},
        aud={"essential": True, "value": emulator.project_id},
    ).validate(decoded.claims)
    return {"header": decoded.header, **decoded.claims}


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT, read without any check."""
    header, claims = (
        json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in token.split(".")[:2]
    )
    return header, claims


def fake_key(key_data: str, *, origin: str = "sk", environment: str = "production") -> str:
    """A well-formed key whose signature nobody can verify, like a real key here."""
    payload = b58encode(f"{key_data}:{b58encode(b'not a real signature')}".encode())
    return f"{origin}_{environment}_{payload}"


# -- the package surface


def test_public_names() -> None:
    assert crossmint_wsgi.testing.__all__ == ["CrossmintEmulator", "connect_emulator"]
    assert sorted(crossmint_wsgi.testing.__all__) == crossmint_wsgi.testing.__all__


def test_lifecycle_is_idempotent_and_closes_the_socket() -> None:
    emulator = CrossmintEmulator()
    with pytest.raises(RuntimeError, match="before start"):
        _ = emulator.url
    assert emulator.start() is emulator
    url = emulator.url
    assert emulator.start() is emulator
    assert emulator.url == url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
    assert get(f"{url}{JWKS}").status_code == 200
    emulator.stop()
    emulator.stop()
    with pytest.raises(httpx.ConnectError):
        get(f"{url}{JWKS}")


def test_restart_keeps_the_state() -> None:
    with CrossmintEmulator() as emulator:
        material = emulator.create_session("user-1")
        kid = emulator.kid
    with emulator, http_client(headers={"x-api-key": emulator.api_key}) as client:
        answer = client.post(
            f"{emulator.url}{REFRESH}", json={"refresh": material.refresh_token.secret}
        )
        assert answer.status_code == 200
        assert emulator.kid == kid


def test_a_taken_port_raises_os_error() -> None:
    with CrossmintEmulator() as first:
        port = int(first.url.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="already in use"):
            CrossmintEmulator(port=port).start()


def test_repr_shows_no_key(emulator: CrossmintEmulator) -> None:
    text = repr(emulator)
    assert emulator.url in text
    assert emulator.api_key not in text


# -- the API key


def test_minted_key_validates_against_the_emulator_signing_key(
    emulator: CrossmintEmulator,
) -> None:
    crossmint = emulator.crossmint(app_id="demo-app")
    assert crossmint.project_id == emulator.project_id
    assert crossmint.base_url == emulator.url
    assert crossmint.app_id == "demo-app"
    parsed = parse_api_key(emulator.api_key, signing_key=emulator.signing_key)
    assert (parsed.origin, parsed.environment.value) == ("sk", "development")
    assert parsed.key_data.startswith(f"{emulator.project_id}.")
    # Crossmint's own key does not vouch for it: validation is not weakened.
    with pytest.raises(CrossmintConfigError, match="bad signature"):
        build_crossmint(emulator.api_key, base_url=emulator.url)


def test_project_id_of_the_minted_key() -> None:
    with CrossmintEmulator(project_id="my-project") as emulator:
        assert emulator.project_id == "my-project"
        assert emulator.crossmint().project_id == "my-project"
        token = emulator.create_session("user-1").jwt
        assert verify(emulator, token)["aud"] == "my-project"


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1).filter(lambda text: not {".", ":"} & set(text) and text == text.strip()))
def test_any_project_id_survives_the_key(project_id: str) -> None:
    minted = mint_api_key(project_id)
    assert minted.signing_key is not None
    parsed = parse_api_key(minted.api_key, signing_key=minted.signing_key)
    assert parsed.project_id == project_id


def test_a_given_key_is_the_only_one_accepted() -> None:
    key = fake_key("3f1b0a52-1f7c-4c1e-9a4e-2f3f5a6b7c8d.secretpart")
    with CrossmintEmulator(api_key=key) as emulator:
        assert emulator.api_key == key
        assert emulator.project_id == "3f1b0a52-1f7c-4c1e-9a4e-2f3f5a6b7c8d"
        assert emulator.signing_key is None
        assert emulator.config()["signing_key"] is None
        material = emulator.create_session("user-1")
        assert verify(emulator, material.jwt)["aud"] == emulator.project_id
        with http_client(base_url=emulator.url) as client:
            other = fake_key("other-project.secretpart")
            rejected = client.post(
                REFRESH,
                json={"refresh": material.refresh_token.secret},
                headers={"x-api-key": other},
            )
            assert rejected.status_code == 401
            accepted = client.post(
                REFRESH, json={"refresh": material.refresh_token.secret}, headers={"x-api-key": key}
            )
            assert accepted.status_code == 200
        # The fake key's signature is checked against Crossmint's key, and fails.
        with pytest.raises(CrossmintConfigError, match="bad signature"):
            emulator.crossmint()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"api_key": "sk_live_abc"}, CrossmintConfigError, id="old-format"),
        pytest.param({"api_key": "xk_development_abc"}, CrossmintConfigError, id="bad-origin"),
        pytest.param({"api_key": "sk_mainnet_abc"}, CrossmintConfigError, id="bad-environment"),
        pytest.param({"api_key": "sk_development_0OIl"}, CrossmintConfigError, id="not-base58"),
        pytest.param(
            {"api_key": f"sk_development_{b58encode(b'no-colon')}"},
            CrossmintConfigError,
            id="no-signature",
        ),
        pytest.param(
            {"api_key": fake_key("p.x"), "project_id": "p"}, ValueError, id="key-and-project"
        ),
        pytest.param({"project_id": "a.b"}, ValueError, id="project-with-dot"),
        pytest.param({"project_id": ""}, ValueError, id="empty-project"),
        pytest.param({"algorithm": "HS256"}, ValueError, id="symmetric-algorithm"),
        pytest.param({"reuse_window": -1}, ValueError, id="negative-window"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        CrossmintEmulator(**kwargs)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="missing"),
        pytest.param({"x-api-key": ""}, 401, id="empty"),
        pytest.param({"x-api-key": "sk_development_wrong"}, 401, id="wrong"),
        pytest.param({"X-API-KEY": "<key>"}, 200, id="header-case-insensitive"),
    ],
)
@pytest.mark.parametrize("endpoint", ["refresh", "logout", "user"])
def test_api_key_is_required(
    emulator: CrossmintEmulator, headers: dict[str, str], status: int, endpoint: str
) -> None:
    material = emulator.create_session("user-1")
    headers = {
        name: emulator.api_key if value == "<key>" else value for name, value in headers.items()
    }
    body = {"refresh": material.refresh_token.secret}
    with http_client(base_url=emulator.url, headers=headers) as client:
        if endpoint == "user":
            answer = client.get(user_path("user-1"))
        else:
            answer = client.post(REFRESH if endpoint == "refresh" else LOGOUT, json=body)
    assert answer.status_code == status
    if status == 401:
        assert "API key" in answer.json()["message"]
        # A rejected key changes nothing: the refresh token still works.
        with http_client(base_url=emulator.url, headers={"x-api-key": emulator.api_key}) as ok:
            assert refresh(ok, material.refresh_token.secret).status_code == 200


def test_jwks_needs_no_api_key(emulator: CrossmintEmulator) -> None:
    answer = get(f"{emulator.url}{JWKS}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == emulator.key_set


# -- JWTs and keys


@pytest.mark.parametrize(
    ("algorithm", "kty"),
    [pytest.param("RS256", "RSA", id="RS256"), pytest.param("ES256", "EC", id="ES256")],
)
def test_jwts_verify_against_the_served_key_set(algorithm: str, kty: str) -> None:
    with CrossmintEmulator(algorithm=algorithm, jwt_ttl=120) as emulator:
        material = emulator.create_session("user-1", email="one@example.com")
        claims = verify(emulator, material.jwt)
        assert claims["header"]["alg"] == algorithm
        assert claims["header"]["kid"] == emulator.kid
        assert claims["sub"] == "user-1"
        assert claims["aud"] == emulator.project_id
        assert claims["exp"] - claims["iat"] == 120
        (key,) = emulator.key_set["keys"]
        assert key["kty"] == kty
        assert (key["kid"], key["alg"], key["use"]) == (emulator.kid, algorithm, "sig")
        assert "d" not in key


def test_a_wrong_audience_fails_verification(emulator: CrossmintEmulator) -> None:
    token = emulator.issue_jwt("user-1", claims={"aud": "another-project"})
    with pytest.raises(InvalidClaimError):
        verify(emulator, token)


@pytest.mark.parametrize(
    ("kwargs", "expected_claims", "absent_claims", "expected_header"),
    [
        pytest.param({}, {"sub": "user-1"}, set(), {"typ": "JWT"}, id="defaults"),
        pytest.param(
            {"claims": {"iss": "https://issuer.example", "sub": "other"}},
            {"iss": "https://issuer.example", "sub": "other"},
            set(),
            {},
            id="added-and-overridden-claims",
        ),
        pytest.param({"claims": {"aud": None}}, {}, {"aud"}, {}, id="claim-removed"),
        pytest.param({"claims": {"exp": None}}, {}, {"exp"}, {}, id="no-exp"),
        pytest.param({"header": {"kid": "unknown"}}, {}, set(), {"kid": "unknown"}, id="other-kid"),
        pytest.param({"header": {"typ": None}}, {}, set(), {"typ": None}, id="no-typ"),
    ],
)
def test_issue_jwt(
    emulator: CrossmintEmulator,
    kwargs: dict[str, Any],
    expected_claims: dict[str, Any],
    absent_claims: set[str],
    expected_header: dict[str, Any],
) -> None:
    header, claims = unverified(emulator.issue_jwt("user-1", **kwargs))
    for name, value in expected_claims.items():
        assert claims[name] == value
    assert not absent_claims & claims.keys()
    for name, value in expected_header.items():
        assert header.get(name) == value
    assert header["alg"] == "RS256"


@pytest.mark.parametrize(
    ("keep_old", "old_still_verifies"),
    [pytest.param(True, True, id="keep-old"), pytest.param(False, False, id="drop-old")],
)
def test_rotate_keys(emulator: CrossmintEmulator, keep_old: bool, old_still_verifies: bool) -> None:
    old_kid = emulator.kid
    old_token = emulator.create_session("user-1").jwt
    new_kid = emulator.rotate_keys(keep_old=keep_old)
    assert new_kid != old_kid
    assert emulator.kid == new_kid
    kids = [key["kid"] for key in emulator.key_set["keys"]]
    assert kids[-1] == new_kid
    assert (old_kid in kids) is old_still_verifies
    new_token = emulator.create_session("user-1").jwt
    assert verify(emulator, new_token)["header"]["kid"] == new_kid
    if old_still_verifies:
        assert verify(emulator, old_token)["header"]["kid"] == old_kid
    else:
        with pytest.raises(InvalidKeyIdError, match=old_kid):
            verify(emulator, old_token)


# -- refresh tokens


def test_refresh_rotates_the_secret(emulator: CrossmintEmulator, client: httpx.Client) -> None:
    material = emulator.create_session("user-1", email="one@example.com", phone_number="+15550100")
    answer = refresh(client, material.refresh_token.secret)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"jwt", "refresh", "user"}
    assert body["user"] == {"id": "user-1", "email": "one@example.com", "phoneNumber": "+15550100"}
    assert set(body["refresh"]) == {"secret", "expiresAt"}
    assert body["refresh"]["secret"] != material.refresh_token.secret
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["refresh"]["expiresAt"])
    assert verify(emulator, body["jwt"])["sub"] == "user-1"
    # Single use: the old secret is spent, the new one works.
    assert refresh(client, material.refresh_token.secret).status_code == 401
    again = refresh(client, body["refresh"]["secret"])
    assert again.status_code == 200
    assert again.json()["refresh"]["secret"] not in (
        material.refresh_token.secret,
        body["refresh"]["secret"],
    )


def test_refresh_token_expiry_is_refresh_ttl_from_now(emulator: CrossmintEmulator) -> None:
    emulator.configure(refresh_ttl=3600)
    before = time.time()
    material = emulator.create_session("user-1")
    after = time.time()
    expires_at = material.refresh_token.expires_at
    assert expires_at is not None
    # expiresAt is written with milliseconds, so allow for their truncation.
    assert before + 3600 - 0.001 <= expires_at.timestamp() <= after + 3600


def test_session_material_matches_the_wire_shape(emulator: CrossmintEmulator) -> None:
    material = emulator.create_session(
        "user-1", user_fields={"twitter": {"username": "one", "id": "1"}}
    )
    assert isinstance(material, AuthMaterial)
    assert material.user is not None
    assert material.user.twitter == {"username": "one", "id": "1"}
    assert material.refresh_token.expires_at == parse_timestamp(
        material.refresh_token.to_json()["expiresAt"]
    )


@pytest.mark.parametrize(
    ("uses", "statuses"),
    [
        pytest.param(2, [200, 200], id="twice-within-window"),
        pytest.param(4, [200, 200, 200, 200], id="many-within-window"),
    ],
)
def test_reuse_window_lets_a_used_secret_work_again(
    emulator: CrossmintEmulator, client: httpx.Client, uses: int, statuses: list[int]
) -> None:
    emulator.configure(reuse_window=60)
    secret = emulator.create_session("user-1").refresh_token.secret
    answers = [refresh(client, secret) for _ in range(uses)]
    assert [answer.status_code for answer in answers] == statuses
    new_secrets = {answer.json()["refresh"]["secret"] for answer in answers}
    assert len(new_secrets) == uses


def test_reuse_window_from_the_constructor() -> None:
    with (
        CrossmintEmulator(reuse_window=60) as emulator,
        http_client(base_url=emulator.url, headers={"x-api-key": emulator.api_key}) as client,
    ):
        secret = emulator.create_session("user-1").refresh_token.secret
        assert [refresh(client, secret).status_code for _ in range(2)] == [200, 200]


def test_reuse_past_the_window_is_rejected(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    emulator.configure(reuse_window=0.05)
    secret = emulator.create_session("user-1").refresh_token.secret
    assert refresh(client, secret).status_code == 200
    time.sleep(0.1)
    answer = refresh(client, secret)
    assert answer.status_code == 401
    assert answer.json() == {"message": "Refresh token has already been used"}


def test_expired_refresh_token_is_rejected(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    emulator.configure(refresh_ttl=0)
    secret = emulator.create_session("user-1").refresh_token.secret
    answer = refresh(client, secret)
    assert answer.status_code == 401
    assert answer.json() == {"message": "Refresh token has expired"}


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda e: e.create_session("user-1", jwt_ttl=-1).jwt, id="session-jwt-ttl"),
        pytest.param(lambda e: e.issue_jwt("user-1", ttl=-1), id="issue-jwt-ttl"),
    ],
)
def test_expired_jwts(emulator: CrossmintEmulator, make_token: Any) -> None:
    token = make_token(emulator)
    with pytest.raises(ExpiredTokenError):
        verify(emulator, token)
    claims = unverified(token)[1]
    assert claims["exp"] - claims["iat"] == -1


def test_configured_jwt_ttl_applies_to_refreshed_tokens(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    secret = emulator.create_session("user-1").refresh_token.secret
    assert emulator.configure(jwt_ttl=-5)["jwt_ttl"] == -5
    token = refresh(client, secret).json()["jwt"]
    claims = unverified(token)[1]
    assert claims["exp"] - claims["iat"] == -5
    with pytest.raises(ExpiredTokenError):
        verify(emulator, token)


def test_one_time_secret_is_single_use_even_within_a_reuse_window(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    emulator.configure(reuse_window=60)
    secret = emulator.one_time_secret("user-1", email="one@example.com")
    first = refresh(client, secret)
    assert first.status_code == 200
    assert first.json()["user"] == {"id": "user-1", "email": "one@example.com"}
    assert verify(emulator, first.json()["jwt"])["sub"] == "user-1"
    second = refresh(client, secret)
    assert second.status_code == 401
    # The refresh token it was traded for is an ordinary one.
    assert refresh(client, first.json()["refresh"]["secret"]).status_code == 200


def test_concurrent_refreshes_of_one_secret_let_exactly_one_through(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    secret = emulator.create_session("user-1").refresh_token.secret
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: refresh(client, secret).status_code, range(16)))
    assert sorted(statuses) == [200] + [401] * 15
    assert emulator.requests["refresh"] == 16


# -- logout


def test_logout_revokes_the_refresh_token(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    emulator.configure(reuse_window=60)
    kept = emulator.create_session("user-1").refresh_token.secret
    secret = emulator.create_session("user-1").refresh_token.secret
    answer = client.post(LOGOUT, json={"refresh": secret})
    assert (answer.status_code, answer.json()) == (200, {})
    rejected = refresh(client, secret)
    assert rejected.status_code == 401
    assert rejected.json() == {"message": "Refresh token has been revoked"}
    # Other sessions of the same user are untouched.
    assert refresh(client, kept).status_code == 200


def test_logout_of_an_unknown_secret_is_still_200(client: httpx.Client) -> None:
    answer = client.post(LOGOUT, json={"refresh": "never-issued"})
    assert (answer.status_code, answer.json()) == (200, {})


def test_unknown_refresh_secret_is_401(client: httpx.Client) -> None:
    answer = refresh(client, "never-issued")
    assert (answer.status_code, answer.json()) == (401, {"message": "Invalid refresh token"})


# -- users


def test_get_user(emulator: CrossmintEmulator, client: httpx.Client) -> None:
    emulator.create_session("user-1", email="one@example.com")
    emulator.create_session(
        "user-1", phone_number="+15550100", user_fields={"twitter": {"username": "one", "id": "1"}}
    )
    answer = client.get(user_path("user-1"))
    assert answer.status_code == 200
    assert answer.json() == {
        "id": "user-1",
        "email": "one@example.com",
        "phoneNumber": "+15550100",
        "twitter": {"username": "one", "id": "1"},
    }


def test_get_user_with_an_escaped_id(emulator: CrossmintEmulator, client: httpx.Client) -> None:
    emulator.create_session("email:one@example.com")
    answer = client.get(user_path("email%3Aone%40example.com"))
    assert answer.json() == {"id": "email:one@example.com"}


def test_unknown_user_is_404(client: httpx.Client) -> None:
    answer = client.get(user_path("nobody"))
    assert (answer.status_code, answer.json()) == (404, {"message": "User not found"})


# -- malformed requests


@pytest.mark.parametrize(
    "path", [pytest.param(REFRESH, id="refresh"), pytest.param(LOGOUT, id="logout")]
)
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{", id="truncated-json"),
        pytest.param(b"refresh=abc", id="form-encoded"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"abc"', id="string"),
        pytest.param(b"{}", id="missing-refresh"),
        pytest.param(b'{"refresh": 42}', id="refresh-number"),
        pytest.param(b'{"refresh": null}', id="refresh-null"),
        pytest.param(b'{"refresh": ["abc"]}', id="refresh-array"),
        pytest.param(b'{"refresh": ""}', id="refresh-empty"),
        pytest.param(b"", id="empty-body"),
        pytest.param(b"[" * 20000 + b"]" * 20000, id="deeply-nested"),
    ],
)
def test_malformed_bodies_are_400(client: httpx.Client, path: str, content: bytes) -> None:
    answer = client.post(path, content=content, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(answer.json()["message"], str)


def _chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 1024):
        yield b" " * 1024


@pytest.mark.parametrize(
    "path", [pytest.param(REFRESH, id="refresh"), pytest.param(LOGOUT, id="logout")]
)
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: b'{"refresh": "' + b"a" * (64 * 1024) + b'"}', id="over-64k"),
        pytest.param(lambda: b" " * (1024 * 1024), id="one-mebibyte"),
        pytest.param(lambda: _chunks(128 * 1024), id="chunked-128k"),
    ],
)
def test_oversize_bodies_are_413(client: httpx.Client, path: str, content: Any) -> None:
    answer = client.post(path, content=content())
    assert answer.status_code == 413
    assert answer.json() == {"message": "Request body is larger than 65536 bytes"}


def test_a_body_of_exactly_64k_is_read(client: httpx.Client) -> None:
    body = b'{"refresh": "unknown"}'
    body += b" " * (64 * 1024 - len(body))
    answer = client.post(REFRESH, content=body)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/nowhere", 404, id="unknown-path"),
        pytest.param("GET", REFRESH, 405, id="get-refresh"),
        pytest.param("POST", JWKS, 405, id="post-jwks"),
        pytest.param("POST", f"{REFRESH}/", 404, id="trailing-slash"),
        pytest.param("POST", "/api//2024-09-26/session/sdk/auth/refresh", 404, id="double-slash"),
        pytest.param("POST", "/_emulator/nothing", 404, id="unknown-control"),
    ],
)
def test_unknown_routes_answer_json(
    emulator: CrossmintEmulator, client: httpx.Client, method: str, path: str, status: int
) -> None:
    answer = client.request(method, path, json={})
    assert answer.status_code == status
    assert isinstance(answer.json()["message"], str)
    assert emulator.requests == dict.fromkeys(["jwks", "refresh", "logout", "user"], 0)


# -- faults, latency, downtime, counters


@pytest.mark.parametrize(
    ("kwargs", "status", "content"),
    [
        pytest.param({}, 503, b'{"message": "injected failure (503)"}', id="default"),
        pytest.param(
            {"status": 500, "body": {"error": "boom"}}, 500, b'{"error": "boom"}', id="json"
        ),
        pytest.param({"status": 200, "body": b'{"jwt":'}, 200, b'{"jwt":', id="truncated-200"),
        pytest.param(
            {"status": 502, "body": b"<html>Bad gateway</html>"},
            502,
            b"<html>Bad gateway</html>",
            id="html",
        ),
        pytest.param({"status": 400, "body": b""}, 400, b"", id="empty"),
    ],
)
def test_fail_next(
    emulator: CrossmintEmulator,
    client: httpx.Client,
    kwargs: dict[str, Any],
    status: int,
    content: bytes,
) -> None:
    secret = emulator.create_session("user-1").refresh_token.secret
    emulator.fail_next(1, **kwargs)
    failed = refresh(client, secret)
    assert (failed.status_code, failed.content) == (status, content)
    assert failed.headers["content-type"] == "application/json"
    # The injected answer did not use the secret up.
    assert refresh(client, secret).status_code == 200
    assert emulator.requests["refresh"] == 2


def test_fail_next_counts_down_and_can_target_one_endpoint(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    emulator.fail_next(2, status=500, endpoint="refresh")
    emulator.fail_next(1, status=504)
    assert client.get(JWKS).status_code == 504
    assert client.get(JWKS).status_code == 200
    assert [refresh(client, "unknown").status_code for _ in range(3)] == [500, 500, 401]
    assert client.post(LOGOUT, json={"refresh": "x"}).status_code == 200
    assert emulator.requests == {"jwks": 2, "refresh": 3, "logout": 1, "user": 0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"endpoint": "sessions"}, "endpoint must be", id="unknown-endpoint"),
        pytest.param({"status": 99}, "not an HTTP status", id="status-too-low"),
        pytest.param({"status": 600}, "not an HTTP status", id="status-too-high"),
        pytest.param({"n": -1}, "must not be negative", id="negative-count"),
    ],
)
def test_fail_next_rejects_bad_arguments(
    emulator: CrossmintEmulator, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        emulator.fail_next(**kwargs)
    assert emulator.requests == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}
    assert get(f"{emulator.url}{JWKS}").status_code == 200


def test_latency_delays_api_answers_but_not_control_routes(
    emulator: CrossmintEmulator, control: httpx.Client
) -> None:
    emulator.set_latency(30)
    with pytest.raises(httpx.ReadTimeout):
        get(f"{emulator.url}{JWKS}", timeout=0.2)
    # The client gave up first: the emulator counts the request once its thread reads it.
    deadline = time.monotonic() + 30
    while control.get("/requests").json()["jwks"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert control.get("/requests").json()["jwks"] == 1
    emulator.set_latency(0)
    assert get(f"{emulator.url}{JWKS}", timeout=10).status_code == 200


def test_latency_applies_to_injected_failures(emulator: CrossmintEmulator) -> None:
    emulator.fail_next(1, status=500)
    emulator.set_latency(30)
    with pytest.raises(httpx.ReadTimeout):
        get(f"{emulator.url}{JWKS}", timeout=0.2)


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        pytest.param("GET", JWKS, "jwks", id="jwks"),
        pytest.param("POST", REFRESH, "refresh", id="refresh"),
        pytest.param("POST", LOGOUT, "logout", id="logout"),
        pytest.param("GET", user_path("user-1"), "user", id="user"),
        pytest.param("GET", "/nowhere", None, id="unknown-path"),
    ],
)
def test_down_resets_api_connections(
    emulator: CrossmintEmulator,
    client: httpx.Client,
    control: httpx.Client,
    method: str,
    path: str,
    endpoint: str | None,
) -> None:
    emulator.set_down(True)
    with pytest.raises(httpx.TransportError):
        client.request(method, path, json={"refresh": "x"})
    # The control routes still answer, and the attempt was counted.
    counters = control.get("/requests").json()
    assert sum(counters.values()) == (0 if endpoint is None else 1)
    if endpoint is not None:
        assert counters[endpoint] == 1
    emulator.set_down(False)
    assert client.request(method, path, json={"refresh": "x"}).status_code in (200, 401, 404)


def test_requests_counts_every_request_that_reached_an_endpoint(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    assert emulator.requests == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}
    client.get(JWKS)
    client.get(JWKS, headers={"x-api-key": "wrong"})
    refresh(client, "unknown")
    client.post(REFRESH, content=b"{")
    post(f"{emulator.url}{LOGOUT}", json={"refresh": "x"})
    client.get(user_path("nobody"))
    snapshot = emulator.requests
    assert snapshot == {"jwks": 2, "refresh": 2, "logout": 1, "user": 1}
    snapshot["jwks"] = 100
    assert emulator.requests["jwks"] == 2


def test_reset_forgets_everything_but_the_server_and_keys(
    emulator: CrossmintEmulator, client: httpx.Client
) -> None:
    url, kid = emulator.url, emulator.kid
    secret = emulator.create_session("user-1").refresh_token.secret
    emulator.configure(jwt_ttl=1, refresh_ttl=1, reuse_window=1)
    emulator.fail_next(5)
    emulator.set_latency(30)
    emulator.set_down(True)
    emulator.reset()
    assert (emulator.url, emulator.kid) == (url, kid)
    assert emulator.requests == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}
    assert client.get(JWKS, timeout=10).status_code == 200
    assert refresh(client, secret).status_code == 401
    assert client.get(user_path("user-1")).status_code == 404
    assert emulator.configure() == {"jwt_ttl": 900, "refresh_ttl": 7 * 24 * 3600, "reuse_window": 0}


# -- the HTTP control routes


def test_control_config_and_connect_emulator(
    emulator: CrossmintEmulator, control: httpx.Client
) -> None:
    config = control.get("/config").json()
    assert config == {
        "url": emulator.url,
        "api_key": emulator.api_key,
        "project_id": emulator.project_id,
        "signing_key": emulator.signing_key,
    }
    for url in (emulator.url, f"{emulator.url}/"):
        crossmint = connect_emulator(url, app_id="demo")
        assert crossmint == emulator.crossmint(app_id="demo")
        assert crossmint.base_url == emulator.url


def test_connect_emulator_to_a_given_key_checks_it_against_crossmint() -> None:
    with (
        CrossmintEmulator(api_key=fake_key("p.x")) as emulator,
        pytest.raises(CrossmintConfigError, match="bad signature"),
    ):
        connect_emulator(emulator.url)


def test_connect_emulator_to_nothing_names_the_url_and_what_to_do() -> None:
    with CrossmintEmulator() as emulator:
        url = emulator.url
    with pytest.raises(CrossmintConfigError) as caught:
        connect_emulator(url, timeout=2)
    message = str(caught.value)
    assert f"no Crossmint emulator answers at {url!r} (connection refused)" in message
    assert "python -m crossmint_wsgi.testing" in message
    assert caught.value.setting == "url"
    # No transport traceback chained under it.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def _answering(status: int, body: bytes) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(f"{status} X", [("Content-Type", "application/json")])
        return [body]

    return app


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        pytest.param(404, b"{}", "GET /_emulator/config answered 404", id="not-found"),
        pytest.param(
            200, b"<html>", "GET /_emulator/config did not answer the emulator's JSON", id="html"
        ),
        pytest.param(
            200,
            b'{"url": 1}',
            "GET /_emulator/config did not answer the emulator's JSON",
            id="other-json",
        ),
        pytest.param(
            200, b"[]", "GET /_emulator/config did not answer the emulator's JSON", id="json-list"
        ),
    ],
)
def test_connect_emulator_to_something_else_says_so(status: int, body: bytes, reason: str) -> None:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _answering(status, body))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(CrossmintConfigError) as caught:
            connect_emulator(url, timeout=10)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    assert str(caught.value).startswith(f"{url!r} is not a Crossmint emulator ({reason}")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("127.0.0.1:8787", "not an http:// URL", id="no-scheme"),
        pytest.param("ftp://127.0.0.1:8787", "not an http:// URL", id="ftp"),
        pytest.param("http://[::1", "not an http:// URL", id="malformed"),
    ],
)
def test_connect_emulator_to_a_bad_url_names_it(url: str, reason: str) -> None:
    with pytest.raises(CrossmintConfigError, match=re.escape(f"({reason})")):
        connect_emulator(url, timeout=2)


def test_control_sessions(
    emulator: CrossmintEmulator, control: httpx.Client, client: httpx.Client
) -> None:
    answer = control.post(
        "/sessions",
        json={
            "user_id": "user-1",
            "email": "one@example.com",
            "phone_number": "+15550100",
            "user_fields": {"twitter": {"username": "one", "id": "1"}},
            "jwt_ttl": 60,
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"jwt", "refresh", "user"}
    assert body["user"] == {
        "id": "user-1",
        "email": "one@example.com",
        "phoneNumber": "+15550100",
        "twitter": {"username": "one", "id": "1"},
    }
    claims = verify(emulator, body["jwt"])
    assert claims["exp"] - claims["iat"] == 60
    assert refresh(client, body["refresh"]["secret"]).status_code == 200


def test_control_one_time_secret(control: httpx.Client, client: httpx.Client) -> None:
    secret = control.post("/one-time-secrets", json={"user_id": "user-1"}).json()["secret"]
    assert [refresh(client, secret).status_code for _ in range(2)] == [200, 401]


def test_control_jwt(emulator: CrossmintEmulator, control: httpx.Client) -> None:
    answer = control.post(
        "/jwt",
        json={"user_id": "user-1", "ttl": 30, "claims": {"iss": "me"}, "header": {"kid": "k"}},
    )
    header, claims = unverified(answer.json()["jwt"])
    assert header["kid"] == "k"
    assert (claims["sub"], claims["iss"], claims["exp"] - claims["iat"]) == ("user-1", "me", 30)


def test_control_rotate_keys(emulator: CrossmintEmulator, control: httpx.Client) -> None:
    old = emulator.kid
    kept = control.post("/rotate-keys", json={}).json()["kid"]
    assert [key["kid"] for key in emulator.key_set["keys"]][-2:] == [old, kept]
    dropped = control.post("/rotate-keys", json={"keep_old": False}).json()["kid"]
    assert [key["kid"] for key in emulator.key_set["keys"]] == [dropped]


def test_control_faults_latency_down_reset(
    emulator: CrossmintEmulator, control: httpx.Client, client: httpx.Client
) -> None:
    assert (
        control.post(
            "/fail-next", json={"n": 1, "status": 200, "raw": '{"jwt":', "endpoint": "refresh"}
        ).status_code
        == 200
    )
    assert (
        control.post("/fail-next", json={"status": 500, "body": {"error": "boom"}}).status_code
        == 200
    )
    assert refresh(client, "x").content == b'{"jwt":'
    failed = client.get(JWKS)
    assert (failed.status_code, failed.json()) == (500, {"error": "boom"})

    assert control.post("/latency", json={"seconds": 30}).json() == {"seconds": 30}
    with pytest.raises(httpx.ReadTimeout):
        client.get(JWKS, timeout=0.2)
    assert control.post("/latency", json={"seconds": 0}).json() == {"seconds": 0}

    assert control.post("/down", json={"down": True}).json() == {"down": True}
    with pytest.raises(httpx.TransportError):
        client.get(JWKS)
    assert control.post("/down", json={"down": False}).json() == {"down": False}
    assert client.get(JWKS).status_code == 200

    assert control.get("/requests").json() == {"jwks": 4, "refresh": 1, "logout": 0, "user": 0}
    settings = control.post("/configure", json={"jwt_ttl": 5, "reuse_window": 2.5}).json()
    assert settings == {"jwt_ttl": 5, "refresh_ttl": 7 * 24 * 3600, "reuse_window": 2.5}
    assert control.post("/reset").json() == {}
    assert control.get("/requests").json() == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}
    assert emulator.configure()["jwt_ttl"] == 900


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/sessions", {}, id="sessions-no-user"),
        pytest.param("/sessions", {"user_id": 1}, id="sessions-user-number"),
        pytest.param("/sessions", {"user_id": "u", "jwt_ttl": "60"}, id="sessions-ttl-string"),
        pytest.param("/sessions", {"user_id": "u", "jwt_ttl": True}, id="sessions-ttl-bool"),
        pytest.param("/sessions", {"user_id": "u", "user_fields": []}, id="sessions-fields-list"),
        pytest.param("/one-time-secrets", {"user_id": ""}, id="one-time-empty-user"),
        pytest.param("/jwt", {"user_id": "u", "claims": "x"}, id="jwt-claims-string"),
        pytest.param("/rotate-keys", {"keep_old": "no"}, id="rotate-keep-old-string"),
        pytest.param("/fail-next", {"endpoint": "nowhere"}, id="fail-unknown-endpoint"),
        pytest.param("/fail-next", {"status": 1000}, id="fail-bad-status"),
        pytest.param("/latency", {"seconds": -1}, id="latency-negative"),
        pytest.param("/down", {"down": "yes"}, id="down-string"),
        pytest.param("/configure", {"refresh_ttl": -1}, id="configure-negative"),
        pytest.param("/sessions", [], id="not-an-object"),
    ],
)
def test_control_routes_reject_bad_input(
    emulator: CrossmintEmulator, control: httpx.Client, path: str, body: Any
) -> None:
    answer = control.post(path, json=body)
    assert answer.status_code == 400
    assert isinstance(answer.json()["message"], str)
    assert emulator.configure() == {"jwt_ttl": 900, "refresh_ttl": 7 * 24 * 3600, "reuse_window": 0}


def test_control_routes_reject_bad_json(control: httpx.Client) -> None:
    answer = control.post("/sessions", content=b"{")
    assert (answer.status_code, answer.json()) == (
        400,
        {"message": "Request body is not valid JSON"},
    )


# -- logging


def test_nothing_secret_is_logged(
    emulator: CrossmintEmulator, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    material = emulator.create_session("user-1")
    answer = refresh(client, material.refresh_token.secret)
    client.post(LOGOUT, json={"refresh": answer.json()["refresh"]["secret"]})
    client.get(user_path("user-1"))
    client.post(REFRESH, content=b"{")
    emulator.set_down(True)
    with pytest.raises(httpx.TransportError):
        refresh(client, material.refresh_token.secret)
    # The test's own client logs its requests; the emulator logs nothing.
    assert [record for record in caplog.records if not record.name.startswith("http")] == []
    secrets = (emulator.api_key, material.jwt, material.refresh_token.secret, answer.json()["jwt"])
    assert not [secret for secret in secrets if secret in caplog.text]


# -- the pytest plugin


def test_pytest_fixture_is_shared_and_reset(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest

        SEEN = []

        def test_dirty(crossmint_emulator):
            SEEN.append((crossmint_emulator.url, crossmint_emulator.kid))
            crossmint_emulator.create_session("user-1")
            crossmint_emulator.configure(jwt_ttl=1)
            crossmint_emulator.fail_next(3)
            crossmint_emulator.set_down(True)
            with pytest.raises(httpx.TransportError):
                httpx.get(crossmint_emulator.url + "/.well-known/jwks.json")
            assert crossmint_emulator.requests["jwks"] == 1

        def test_clean(crossmint_emulator):
            assert SEEN == [(crossmint_emulator.url, crossmint_emulator.kid)]
            assert crossmint_emulator.requests == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}
            assert crossmint_emulator.configure()["jwt_ttl"] == 900
            answer = httpx.get(crossmint_emulator.url + "/.well-known/jwks.json")
            assert answer.status_code == 200
            assert answer.json() == crossmint_emulator.key_set
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# -- the command line


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum", [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="sigterm")]
)
def test_cli(signum: int) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crossmint_wsgi.testing",
            "--port",
            "0",
            "--jwt-ttl",
            "60",
            "--reuse-window",
            "5",
            "--algorithm",
            "ES256",
            "--project-id",
            "cli-project",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        match = re.search(
            r"listening on (http://127\.0\.0\.1:\d+) \(project cli-project\)\n", output
        )
        assert match, output
        url = match.group(1)
        # The shell line to paste, as a shell reads it.
        (export,) = [shlex.split(line) for line in lines if line.strip().startswith("export ")]
        assert export == ["export", f"CROSSMINT_EMULATOR_URL={url}"]

        # Replay the printed curl command.
        curl = shlex.split(next(line for line in lines if line.strip().startswith("curl")))
        assert curl[curl.index("-X") + 1] == "POST"
        header_name, header_value = curl[curl.index("-H") + 1].split(": ")
        answer = post(
            curl[curl.index("-X") + 2],
            content=curl[curl.index("-d") + 1],
            headers={header_name: header_value},
        )
        assert answer.status_code == 200
        header, claims = unverified(answer.json()["jwt"])
        assert header["alg"] == "ES256"
        assert (claims["aud"], claims["exp"] - claims["iat"]) == ("cli-project", 60)

        crossmint = connect_emulator(url)
        # The key is never printed: the pasted lines fetch it.
        assert crossmint.api_key not in output
        secret = answer.json()["refresh"]["secret"]
        with http_client(base_url=url, headers={"x-api-key": crossmint.api_key}) as client:
            # --reuse-window 5: a second use right away still works.
            assert [refresh(client, secret).status_code for _ in range(2)] == [200, 200]
    finally:
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Crossmint emulator stopped." in stdout
    assert "Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        get(f"{url}{JWKS}")


def test_cli_python_lines_work_as_pasted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The printed Python lines, run with the printed export, verify the emulator's sessions."""
    with CrossmintEmulator(jwt_ttl=60) as emulator:
        text = cli_instructions(emulator)
        (export,) = [line.strip() for line in text.splitlines() if "export " in line]
        name, _, value = shlex.split(export)[1].partition("=")
        monkeypatch.setenv(name, value)
        # The indented lines after "In your app...", up to the blank line.
        after = text.split("\nIn your app", 1)[1].split("\n\n", 1)[0]
        block = after.split("\n", 1)[1]
        namespace: dict[str, Any] = {}
        exec(textwrap.dedent(block), namespace)
        material = emulator.create_session("pasted")
        with namespace["auth"] as auth:
            session = auth.get_session(jwt=material.jwt)
        assert session.user_id == "pasted"
        assert emulator.api_key not in text


def test_cli_port_in_use_fails_cleanly() -> None:
    with CrossmintEmulator() as emulator:
        port = emulator.url.rsplit(":", 1)[1]
        result = subprocess.run(
            [sys.executable, "-m", "crossmint_wsgi.testing", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Address already in use" in result.stderr
