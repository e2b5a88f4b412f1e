"""CrossmintAuth and AsyncCrossmintAuth against the Crossmint emulator on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from flask import Flask
from support import free_port
from werkzeug.test import EnvironBuilder

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    AsyncLocalCoordinator,
    AuthMaterial,
    CookieOptions,
    Crossmint,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintConfigError,
    ErrorCode,
    LocalCoordinator,
    Session,
)
from crossmint_wsgi.config import Environment, UsageOrigin
from crossmint_wsgi.testing import CrossmintEmulator

ROOT = Path(__file__).resolve().parent.parent


def cookie_header(material: AuthMaterial | None = None, *, jwt: str | None = None) -> str:
    parts = []
    if jwt or material:
        parts.append(f"crossmint-jwt={jwt or material.jwt}")  # type: ignore[union-attr]
    if material:
        parts.append(f"crossmint-refresh-token={material.refresh_token.secret}")
    return "; ".join(parts)


def cookie_mapping(material: AuthMaterial) -> dict[str, str]:
    return {"crossmint-jwt": material.jwt, "crossmint-refresh-token": material.refresh_token.secret}


def environ_with(header: str) -> dict[str, Any]:
    return EnvironBuilder(path="/", headers={"Cookie": header}).get_environ()


def scope_with(header: str) -> dict[str, Any]:
    return {"type": "http", "path": "/", "headers": [(b"cookie", header.encode("latin-1"))]}


def code_of(error: pytest.ExceptionInfo[CrossmintAuthError]) -> ErrorCode:
    return error.value.code


# -- get_session from every kind of source --------------------------------------------------------


def _flask_request(header: str) -> Any:
    app = Flask(__name__)
    with app.test_request_context("/", headers={"Cookie": header}):
        from flask import request

        return request._get_current_object()  # type: ignore[attr-defined]


SOURCES = [
    pytest.param(lambda m: environ_with(cookie_header(m)), id="wsgi-environ"),
    pytest.param(cookie_mapping, id="cookie-mapping"),
    pytest.param(lambda m: _flask_request(cookie_header(m)), id="flask-request"),
    pytest.param(lambda m: scope_with(cookie_header(m)), id="asgi-scope"),
]


@pytest.mark.parametrize("make_source", SOURCES)
def test_get_session_from_sources(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, make_source: Any
) -> None:
    material = crossmint_emulator.create_session("user-1", email="a@example.com")
    session = auth.get_session(make_source(material))
    assert isinstance(session, Session)
    assert (session.user_id, session.jwt, session.refreshed) == ("user-1", material.jwt, False)
    assert session.refresh_token is not None
    assert session.refresh_token.secret == material.refresh_token.secret
    assert session.claims["aud"] == crossmint_emulator.project_id
    assert crossmint_emulator.requests["refresh"] == 0


def test_get_session_from_explicit_values(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-2")
    session = auth.get_session(jwt=material.jwt, refresh_token=material.refresh_token.secret)
    assert session.user_id == "user-2"
    # Explicit values win over the source's cookies.
    other = crossmint_emulator.create_session("user-3")
    assert auth.get_session(cookie_mapping(other), jwt=material.jwt).user_id == "user-2"


def test_get_session_refreshes_an_expired_jwt(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-1", email="a@example.com", jwt_ttl=-5)
    session = auth.get_session(cookie_mapping(material))
    assert session.refreshed
    assert session.user_id == "user-1"
    assert session.jwt != material.jwt
    assert session.user is not None
    assert session.user.email == "a@example.com"
    assert session.material is not None
    assert session.refresh_token is not None
    assert session.refresh_token.secret != material.refresh_token.secret
    assert crossmint_emulator.requests["refresh"] == 1
    # The new cookies for the answer.
    cookies = auth.session_cookies(session.material)
    assert cookies[0].startswith(f"crossmint-jwt={session.jwt};")
    assert cookies[1].startswith(f"crossmint-refresh-token={session.refresh_token.secret};")


@pytest.mark.parametrize(
    ("make_source", "code"),
    [
        pytest.param(lambda e: {}, ErrorCode.MISSING_SESSION, id="no-cookies"),
        pytest.param(lambda e: None, ErrorCode.MISSING_SESSION, id="no-source"),
        pytest.param(
            lambda e: {"crossmint-jwt": e.issue_jwt("u", ttl=-5)},
            ErrorCode.SESSION_EXPIRED,
            id="expired-no-refresh",
        ),
        pytest.param(
            lambda e: {
                "crossmint-jwt": e.issue_jwt("u", ttl=-5),
                "crossmint-refresh-token": "bogus",
            },
            ErrorCode.SESSION_EXPIRED,
            id="expired-refresh-unknown",
        ),
        pytest.param(
            lambda e: {"crossmint-jwt": e.issue_jwt("u", claims={"aud": "other-project"})},
            ErrorCode.INVALID_TOKEN,
            id="wrong-audience",
        ),
        pytest.param(
            lambda e: {"crossmint-jwt": "not-a-jwt", "crossmint-refresh-token": "bogus"},
            ErrorCode.INVALID_TOKEN,
            id="garbage-refresh-unknown",
        ),
    ],
)
def test_get_session_failures(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, make_source: Any, code: ErrorCode
) -> None:
    with pytest.raises(CrossmintAuthError) as caught:
        auth.get_session(make_source(crossmint_emulator))
    assert code_of(caught) is code


def test_verify_crossmint_jwt(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    token = crossmint_emulator.issue_jwt("user-9", claims={"email": "n@example.com"})
    claims = auth.verify_crossmint_jwt(token)
    assert (claims["sub"], claims["email"]) == ("user-9", "n@example.com")
    with pytest.raises(CrossmintAuthError) as caught:
        auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-9", ttl=-1))
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED
    with pytest.raises(CrossmintAuthError) as caught:
        auth.verify_crossmint_jwt(token[:-4] + "AAAA")
    assert code_of(caught) is ErrorCode.INVALID_TOKEN
    assert token[:-4] not in str(caught.value)


@pytest.mark.parametrize("kind", ["one-time-secret", "refresh-token"])
def test_refresh(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, kind: str) -> None:
    if kind == "one-time-secret":
        secret = crossmint_emulator.one_time_secret("user-5", email="f@example.com")
    else:
        secret = crossmint_emulator.create_session(
            "user-5", email="f@example.com"
        ).refresh_token.secret
    material = auth.refresh(secret)
    assert auth.verify_crossmint_jwt(material.jwt)["sub"] == "user-5"
    assert material.user is not None
    assert material.user.email == "f@example.com"
    assert material.refresh_token.expires_at is not None
    assert material.refresh_token.secret != secret


def test_refresh_refused(auth: CrossmintAuth) -> None:
    with pytest.raises(CrossmintAuthError) as caught:
        auth.refresh("no-such-secret")
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED
    assert "no-such-secret" not in str(caught.value)


def test_logout_revokes(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    material = crossmint_emulator.create_session("user-6")
    cleared = auth.logout(cookie_mapping(material))
    assert crossmint_emulator.requests["logout"] == 1
    assert [value.split("=", 1)[0] for value in cleared] == [
        "crossmint-jwt",
        "crossmint-refresh-token",
    ]
    assert all("Expires=Thu, 01 Jan 1970 00:00:00 GMT" in value for value in cleared)
    with pytest.raises(CrossmintAuthError) as caught:
        auth.refresh(material.refresh_token.secret)
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED


def test_logout_without_a_refresh_token_calls_nothing(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    assert len(auth.logout({})) == 2
    assert crossmint_emulator.requests["logout"] == 0


def test_logout_is_best_effort(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    crossmint_emulator.fail_next(1, status=500, endpoint="logout")
    assert len(auth.logout(refresh_token="whatever")) == 2


def test_get_user(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    crossmint_emulator.create_session(
        "user-7", email="g@example.com", user_fields={"twitter": {"username": "g", "id": "1"}}
    )
    user = auth.get_user("user-7")
    assert (user.id, user.email) == ("user-7", "g@example.com")
    assert user.twitter == {"username": "g", "id": "1"}
    with pytest.raises(CrossmintAuthError) as caught:
        auth.get_user("nobody")
    assert code_of(caught) is ErrorCode.INVALID_REQUEST


def test_handle_custom_refresh(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    secret = crossmint_emulator.one_time_secret("user-8")
    answer = auth.handle_custom_refresh(body={"refresh": secret}, secure=True)
    assert answer.status == 200
    data = answer.json()
    assert set(data) == {"jwt", "refreshToken", "user"}
    assert auth.verify_crossmint_jwt(data["jwt"])["sub"] == "user-8"
    set_cookies = [value for name, value in answer.headers if name == "Set-Cookie"]
    assert len(set_cookies) == 2
    assert all("; Secure" in value for value in set_cookies)
    # The refresh cookie is HttpOnly: its secret is in the cookie, not the body.
    assert "secret" not in data["refreshToken"]
    secret = set_cookies[1].split(";")[0].partition("crossmint-refresh-token=")[2]
    # The browser SDK posts {} when the refresh cookie is HttpOnly: the cookie is used.
    cookie = {"crossmint-refresh-token": secret}
    again = auth.handle_custom_refresh(cookie, body=b"{}")
    assert again.status == 200
    assert "crossmint-refresh-token=" in dict(again.headers)["Set-Cookie"]
    assert crossmint_emulator.requests["refresh"] == 2
    refused = auth.handle_custom_refresh({}, body="{}")
    assert (refused.status, refused.json()["error"]) == (401, "MISSING_SESSION")


def test_clear_cookies(auth: CrossmintAuth) -> None:
    values = auth.clear_cookies(secure=True)
    assert len(values) == 2
    assert all("; Secure" in value and "=;" in value for value in values)


# -- the key set ----------------------------------------------------------------------------------


def test_a_thousand_sessions_fetch_the_key_set_once(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-1")
    environ = environ_with(cookie_header(material))
    for _ in range(1000):
        assert auth.get_session(environ).user_id == "user-1"
    assert crossmint_emulator.requests["jwks"] == 1
    assert crossmint_emulator.requests["refresh"] == 0


def test_distinct_tokens_share_one_key_set_fetch(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    for index in range(50):
        assert auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt(f"user-{index}"))
    assert crossmint_emulator.requests["jwks"] == 1


def test_unknown_kid_after_rotation_refetches_once(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    before = crossmint_emulator.issue_jwt("user-1")
    assert auth.verify_crossmint_jwt(before)["sub"] == "user-1"
    crossmint_emulator.rotate_keys(keep_old=True)
    after = crossmint_emulator.create_session("user-1")
    assert auth.get_session(cookie_mapping(after)).user_id == "user-1"
    assert auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-2"))["sub"] == "user-2"
    assert auth.verify_crossmint_jwt(before)["sub"] == "user-1"
    assert crossmint_emulator.requests["jwks"] == 2
    # A second unknown kid within 30 s gets no refetch: invalid, no network call.
    crossmint_emulator.rotate_keys(keep_old=True)
    with pytest.raises(CrossmintAuthError) as caught:
        auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-3"))
    assert code_of(caught) is ErrorCode.INVALID_TOKEN
    assert crossmint_emulator.requests["jwks"] == 2


@pytest.mark.parametrize("fault", ["http-500", "down"])
def test_stale_keys_keep_verifying_when_the_key_set_fails(
    crossmint_emulator: CrossmintEmulator, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    # jwks_ttl=0: every verification after the first finds the set stale.
    with CrossmintAuth(crossmint_emulator.crossmint(), jwks_ttl=0, leeway=0) as auth:
        assert auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-1"))
        if fault == "down":
            crossmint_emulator.set_down(True)
        else:
            crossmint_emulator.fail_next(100, status=500, endpoint="jwks")
        for index in range(5):
            token = crossmint_emulator.issue_jwt(f"user-{index}")
            assert auth.verify_crossmint_jwt(token)["sub"] == f"user-{index}"
        # One failed refetch, then stale keys serve without retrying at once.
        assert crossmint_emulator.requests["jwks"] == 2
        assert "serving cached keys" in caplog.text


def test_no_key_set_at_all_is_upstream_unavailable(crossmint_emulator: CrossmintEmulator) -> None:
    crossmint_emulator.fail_next(1, status=503, endpoint="jwks")
    with CrossmintAuth(crossmint_emulator.crossmint(), leeway=0) as auth:
        material = crossmint_emulator.create_session("user-1")
        with pytest.raises(CrossmintAuthError) as caught:
            auth.get_session(cookie_mapping(material))
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
        assert not caught.value.clears_cookies


def test_static_key_set_is_never_fetched(crossmint_emulator: CrossmintEmulator) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint(), jwks=crossmint_emulator.key_set) as auth:
        assert auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-1"))["sub"] == "user-1"
    assert crossmint_emulator.requests["jwks"] == 0


# -- Crossmint unavailable: never a logout --------------------------------------------------------


def test_timeout_is_upstream_unavailable_not_a_logout(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    # The key set given, never fetched: only the slow refresh meets the short timeout.
    keys = crossmint_emulator.key_set
    with CrossmintAuth(crossmint_emulator.crossmint(), jwks=keys, leeway=0, timeout=0.3) as auth:
        material = crossmint_emulator.create_session("user-1", jwt_ttl=-5)
        crossmint_emulator.set_latency(1.5)
        with pytest.raises(CrossmintAuthError) as caught:
            auth.get_session(cookie_mapping(material))
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
        assert not caught.value.clears_cookies
        with pytest.raises(CrossmintAuthError) as caught:
            auth.refresh(material.refresh_token.secret)
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(503, None, id="503"),
        pytest.param(200, b"<html>oops</html>", id="200-html"),
        pytest.param(200, {"unexpected": True}, id="200-wrong-shape"),
    ],
)
def test_bad_refresh_answers_are_upstream_unavailable(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, status: int, body: Any
) -> None:
    material = crossmint_emulator.create_session("user-1", jwt_ttl=-5)
    crossmint_emulator.fail_next(1, status=status, body=body, endpoint="refresh")
    with pytest.raises(CrossmintAuthError) as caught:
        auth.get_session(cookie_mapping(material))
    assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
    # The refresh token was not spent: once Crossmint answers, the session comes back.
    assert auth.get_session(cookie_mapping(material)).refreshed


def test_connection_refused_is_upstream_unavailable(crossmint_emulator: CrossmintEmulator) -> None:
    crossmint_emulator.set_down(True)
    with CrossmintAuth(crossmint_emulator.crossmint(), leeway=0) as auth:
        with pytest.raises(CrossmintAuthError) as caught:
            auth.refresh("any-secret")
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE


# -- fork safety ----------------------------------------------------------------------------------


@contextlib.contextmanager
def forked() -> Iterator[int]:
    """Fork; yields 0 in the child (which must os._exit) and the child's pid in the parent."""
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads (the emulator's).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    yield pid


def test_fork_safety(auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator) -> None:
    # Used before the fork: keys cached, a connection open in the parent.
    assert auth.get_session(cookie_mapping(crossmint_emulator.create_session("parent")))
    material = crossmint_emulator.create_session("child", jwt_ttl=-5)
    read_end, write_end = os.pipe()
    with forked() as pid:
        if pid == 0:
            os.close(read_end)
            try:
                session = auth.get_session(cookie_mapping(material))
                result = {"user_id": session.user_id, "refreshed": session.refreshed}
            except BaseException as error:  # report anything to the parent
                result = {"error": repr(error)}
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 30
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung")
        time.sleep(0.02)
    with os.fdopen(read_end, "rb") as pipe:
        result = json.loads(pipe.read() or b"{}")
    assert os.WIFEXITED(waited[1])
    assert os.WEXITSTATUS(waited[1]) == 0
    assert result == {"user_id": "child", "refreshed": True}
    # The parent keeps working too.
    assert (
        auth.get_session(cookie_mapping(crossmint_emulator.create_session("again"))).user_id
        == "again"
    )
    assert crossmint_emulator.requests["refresh"] == 1


def _outage_answers(answers: list[Any], material: AuthMaterial) -> None:
    kept, expired, after = answers
    # A valid JWT through an outage: 200 with that JWT, no cookies (the browser
    # SDK would log the user out on a 503).
    assert kept.status == 200
    assert kept.json() == {
        "jwt": material.jwt,
        "refreshToken": {"expiresAt": None},
        "user": {"id": "user-9"},
    }
    assert [name for name, _ in kept.headers if name == "Set-Cookie"] == []
    # Nothing valid left: 503, cookies kept.
    assert expired.status == 503
    assert expired.json()["error"] == "UPSTREAM_UNAVAILABLE"
    assert [name for name, _ in expired.headers if name == "Set-Cookie"] == []
    # Crossmint back: the same secret, never used through the outage, refreshes.
    assert after.status == 200
    assert after.json()["jwt"] != material.jwt


def test_handle_custom_refresh_keeps_a_valid_session_through_an_outage(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-9", jwt_ttl=100)
    expired = crossmint_emulator.create_session("user-9", jwt_ttl=-5)
    auth.verify_crossmint_jwt(material.jwt)  # the key set, fetched before the outage
    crossmint_emulator.set_down(True)
    answers = [
        auth.handle_custom_refresh(cookie_mapping(material), body=b"{}"),
        auth.handle_custom_refresh(cookie_mapping(expired), body=b"{}"),
    ]
    crossmint_emulator.set_down(False)
    answers.append(auth.handle_custom_refresh(cookie_mapping(material), body=b"{}"))
    _outage_answers(answers, material)


@pytest.mark.anyio
async def test_async_handle_custom_refresh_keeps_a_valid_session_through_an_outage(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-9", jwt_ttl=100)
    expired = crossmint_emulator.create_session("user-9", jwt_ttl=-5)
    await async_auth.verify_crossmint_jwt(material.jwt)
    crossmint_emulator.set_down(True)
    answers = [
        await async_auth.handle_custom_refresh(scope_with(cookie_header(material)), body=b"{}"),
        await async_auth.handle_custom_refresh(cookie_mapping(expired), body=None),
    ]
    crossmint_emulator.set_down(False)
    answers.append(await async_auth.handle_custom_refresh(cookie_mapping(material), body=b"{}"))
    _outage_answers(answers, material)


# -- async, on asyncio and trio -------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_get_session_from_a_scope(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-1")
    session = await async_auth.get_session(scope_with(cookie_header(material)))
    assert (session.user_id, session.refreshed) == ("user-1", False)
    session = await async_auth.get_session(jwt=material.jwt)
    assert session.refresh_token is None


@pytest.mark.anyio
async def test_async_refresh_paths(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    expired = crossmint_emulator.create_session("user-1", email="a@example.com", jwt_ttl=-5)
    session = await async_auth.get_session(cookie_mapping(expired))
    assert session.refreshed
    assert session.user is not None
    assert session.user.email == "a@example.com"
    material = await async_auth.refresh(crossmint_emulator.one_time_secret("user-2"))
    claims = await async_auth.verify_crossmint_jwt(material.jwt)
    assert claims["sub"] == "user-2"
    with pytest.raises(CrossmintAuthError) as caught:
        await async_auth.refresh("no-such-secret")
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED


@pytest.mark.anyio
async def test_async_logout_user_and_custom_refresh(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    material = crossmint_emulator.create_session("user-3", email="c@example.com")
    user = await async_auth.get_user("user-3")
    assert user.email == "c@example.com"
    answer = await async_auth.handle_custom_refresh(
        body={"refresh": crossmint_emulator.one_time_secret("user-4")}
    )
    assert answer.status == 200
    cleared = await async_auth.logout(cookie_mapping(material))
    assert len(cleared) == 2
    assert crossmint_emulator.requests["logout"] == 1
    with pytest.raises(CrossmintAuthError) as caught:
        await async_auth.refresh(material.refresh_token.secret)
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED


@pytest.mark.anyio
async def test_async_a_thousand_sessions_fetch_the_key_set_once(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    scope = scope_with(cookie_header(crossmint_emulator.create_session("user-1")))
    for _ in range(1000):
        assert (await async_auth.get_session(scope)).user_id == "user-1"
    assert crossmint_emulator.requests["jwks"] == 1


@pytest.mark.anyio
async def test_async_concurrent_first_requests_share_one_key_fetch(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    tokens = [crossmint_emulator.issue_jwt(f"user-{index}") for index in range(20)]
    crossmint_emulator.set_latency(0.2)
    results: list[str] = []

    async def verify(token: str) -> None:
        results.append((await async_auth.verify_crossmint_jwt(token))["sub"])

    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(verify, token)
    assert sorted(results) == sorted(f"user-{index}" for index in range(20))
    assert crossmint_emulator.requests["jwks"] == 1


@pytest.mark.anyio
async def test_async_unknown_kid_after_rotation(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    assert await async_auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-1"))
    crossmint_emulator.rotate_keys(keep_old=True)
    claims = await async_auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-2"))
    assert claims["sub"] == "user-2"
    assert crossmint_emulator.requests["jwks"] == 2


@pytest.mark.anyio
async def test_async_timeout_is_upstream_unavailable(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    material = crossmint_emulator.create_session("user-1", jwt_ttl=-5)
    # The key set given, never fetched: only the slow refresh meets the short timeout.
    keys = crossmint_emulator.key_set
    async with AsyncCrossmintAuth(
        crossmint_emulator.crossmint(), jwks=keys, leeway=0, timeout=0.3
    ) as auth:
        crossmint_emulator.set_latency(1.5)
        with pytest.raises(CrossmintAuthError) as caught:
            await auth.get_session(cookie_mapping(material))
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
        assert not caught.value.clears_cookies


@pytest.mark.anyio
async def test_async_stale_keys_keep_verifying(crossmint_emulator: CrossmintEmulator) -> None:
    async with AsyncCrossmintAuth(crossmint_emulator.crossmint(), jwks_ttl=0, leeway=0) as auth:
        assert await auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-0"))
        crossmint_emulator.set_down(True)
        for index in range(3):
            claims = await auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt(f"user-{index}"))
            assert claims["sub"] == f"user-{index}"
        assert crossmint_emulator.requests["jwks"] == 2


# -- construction: every setting checked at once, naming itself --------------------------------

OFFLINE = Crossmint(
    api_key="sk_development_offline",
    project_id="project",
    environment=Environment.DEVELOPMENT,
    usage_origin=UsageOrigin.SERVER,
    base_url="http://127.0.0.1:1",
)
AUTH_CLASSES = [
    pytest.param(CrossmintAuth, id="sync"),
    pytest.param(AsyncCrossmintAuth, id="async"),
]


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        pytest.param("leeway", -1, "at least 0", id="leeway-negative"),
        pytest.param("leeway", 1.5, "whole number", id="leeway-float"),
        pytest.param("leeway", "5", "whole number", id="leeway-text"),
        pytest.param("timeout", 0, "greater than 0", id="timeout-zero"),
        pytest.param("timeout", "5", "number of seconds", id="timeout-text"),
        pytest.param("timeout", float("nan"), "greater than 0", id="timeout-nan"),
        pytest.param("refresh_grace", -1, "0 or more", id="grace-negative"),
        pytest.param("jwks_ttl", -1, "0 or more", id="jwks-ttl-negative"),
        pytest.param("kid_refetch_interval", True, "number of seconds", id="refetch-bool"),
        pytest.param("token_cache_size", -1, "at least 0", id="token-cache-negative"),
        pytest.param("cache_budget", 2.5, "whole number", id="budget-float"),
        pytest.param("issuer", "", "non-empty string", id="issuer-empty"),
        pytest.param("jwks", {"keys": []}, "no usable", id="jwks-without-keys"),
        pytest.param("jwks", {"kty": "RSA"}, "no 'keys' list", id="jwks-a-single-key"),
        pytest.param(
            "cookie_options",
            {"secure": True},
            "use crossmint_wsgi.CookieOptions(",
            id="cookie-dict",
        ),
    ],
)
def test_a_wrong_setting_is_refused_at_construction_naming_it(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth], setting: str, value: Any, words: str
) -> None:
    with pytest.raises(CrossmintConfigError) as caught:
        auth_class(OFFLINE, **{setting: value})
    assert caught.value.setting == setting
    assert str(caught.value).startswith(setting)
    assert words in str(caught.value)


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
def test_crossmint_must_come_from_create_crossmint(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth],
) -> None:
    with pytest.raises(CrossmintConfigError, match=r"create_crossmint\(api_key\)") as caught:
        auth_class("sk_development_abc")  # type: ignore[arg-type]
    assert caught.value.setting == "crossmint"


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
def test_every_setting_reaches_the_core(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth],
    crossmint_emulator: CrossmintEmulator,
) -> None:
    options = CookieOptions(secure=True, same_site="Strict")
    auth = auth_class(
        OFFLINE,
        cookie_options=options,
        jwks=crossmint_emulator.key_set,
        jwks_ttl=60,
        kid_refetch_interval=0,
        token_cache_size=0,
        leeway=7,
        issuer="https://issuer.example",
        timeout=1.5,
        refresh_grace=0,
        cache_budget=1 << 20,
        clock=lambda: 12.0,
    )
    core = auth.core
    assert (auth.timeout, auth.refresh_grace) == (1.5, 0)
    assert core.cookie_options is options
    assert core.keys.static
    assert (core.keys.ttl, core.keys.refetch_interval) == (60, 0)
    assert core.tokens.max_size == 0
    assert (core.leeway, core.issuer, core.cache_budget, core.clock()) == (
        7,
        "https://issuer.example",
        1 << 20,
        12.0,
    )


@pytest.mark.parametrize("auth_class", AUTH_CLASSES)
@pytest.mark.parametrize(
    ("token_cache_size", "max_size"),
    [
        pytest.param({}, None, id="default-budget-only"),
        pytest.param({"token_cache_size": None}, None, id="none-budget-only"),
        pytest.param({"token_cache_size": 10}, 10, id="counted"),
    ],
)
def test_verified_tokens_are_bounded_by_the_budget_and_any_count(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth],
    token_cache_size: dict[str, Any],
    max_size: int | None,
) -> None:
    tokens = auth_class(OFFLINE, cache_budget=1 << 20, **token_cache_size).core.tokens
    assert tokens.max_size == max_size
    assert tokens.stats().budget == (1 << 20) // 8


def _redis_coordinator(kind: str) -> object:
    from crossmint_wsgi.redis import AsyncRedisCoordinator, RedisCoordinator

    url = "redis://127.0.0.1:1/0"  # never contacted: construction makes no connection
    return RedisCoordinator.from_url(url) if kind == "sync" else AsyncRedisCoordinator.from_url(url)


@pytest.mark.parametrize(
    ("auth_class", "make", "setting", "use"),
    [
        pytest.param(
            AsyncCrossmintAuth,
            lambda: _redis_coordinator("sync"),
            "coordinator",
            "use AsyncRedisCoordinator",
            id="sync-redis-in-async-auth",
        ),
        pytest.param(
            CrossmintAuth,
            lambda: _redis_coordinator("async"),
            "coordinator",
            "use RedisCoordinator",
            id="async-redis-in-sync-auth",
        ),
        pytest.param(
            AsyncCrossmintAuth,
            LocalCoordinator,
            "coordinator",
            "use AsyncLocalCoordinator",
            id="sync-local-in-async-auth",
        ),
        pytest.param(
            CrossmintAuth,
            AsyncLocalCoordinator,
            "coordinator",
            "use LocalCoordinator",
            id="async-local-in-sync-auth",
        ),
        pytest.param(
            CrossmintAuth, object, "coordinator", "needs a RefreshCoordinator", id="not-one"
        ),
        pytest.param(
            CrossmintAuth,
            httpx.AsyncHTTPTransport,
            "transport",
            "use httpx.HTTPTransport",
            id="async-transport-in-sync-auth",
        ),
        pytest.param(
            AsyncCrossmintAuth,
            httpx.HTTPTransport,
            "transport",
            "use httpx.AsyncHTTPTransport",
            id="sync-transport-in-async-auth",
        ),
    ],
)
def test_a_wrong_pairing_is_refused_naming_the_class_to_use(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth],
    make: Callable[[], object],
    setting: str,
    use: str,
) -> None:
    with pytest.raises(CrossmintConfigError) as caught:
        auth_class(OFFLINE, **{setting: make()})
    assert caught.value.setting == setting
    assert use in str(caught.value)
    assert auth_class.__name__ in str(caught.value)


@pytest.mark.parametrize(
    ("auth_class", "coordinator"),
    [
        pytest.param(CrossmintAuth, LocalCoordinator, id="sync"),
        pytest.param(AsyncCrossmintAuth, AsyncLocalCoordinator, id="async"),
        pytest.param(CrossmintAuth, lambda: _redis_coordinator("sync"), id="sync-redis"),
        pytest.param(AsyncCrossmintAuth, lambda: _redis_coordinator("async"), id="async-redis"),
    ],
)
def test_the_right_pairing_is_accepted(
    auth_class: type[CrossmintAuth | AsyncCrossmintAuth], coordinator: Callable[[], Any]
) -> None:
    given = coordinator()
    auth = auth_class(OFFLINE, coordinator=given, transport=httpx.MockTransport(lambda r: None))
    assert auth.coordinator is given


MISTAKES = """\
from crossmint_wsgi import AsyncCrossmintAuth, CookieOptions, CrossmintAuth, create_crossmint
from crossmint_wsgi.redis import AsyncRedisCoordinator, RedisCoordinator

crossmint = create_crossmint("sk_development_...")
CrossmintAuth(crossmint, leway=5)
CrossmintAuth(crossmint, coordinator=AsyncRedisCoordinator.from_url("redis://"))
AsyncCrossmintAuth(crossmint, coordinator=RedisCoordinator.from_url("redis://"))
CrossmintAuth(crossmint, cookie_options={"secure": True})
CrossmintAuth(crossmint, leeway=5, coordinator=RedisCoordinator.from_url("redis://"))
AsyncCrossmintAuth(crossmint, cookie_options=CookieOptions(), issuer="https://i.example")
"""


def test_mypy_catches_a_misspelt_setting_and_a_wrong_pairing(tmp_path: Path) -> None:
    from mypy import api

    (tmp_path / "mistakes.py").write_text(MISTAKES)
    report, _, _ = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(tmp_path / "mistakes.py"),
        ]
    )
    errors = {
        int(line.split(":")[1]): line
        for line in report.splitlines()
        if "mistakes.py" in line and ": error:" in line
    }
    assert sorted(errors) == [5, 6, 7, 8], report
    assert '"leway"' in errors[5]
    assert '"coordinator"' in errors[6]
    assert '"coordinator"' in errors[7]
    assert '"cookie_options"' in errors[8]


# -- the start-up check: a wrong base_url is not an outage ---------------------------------------


def _pointed(crossmint_emulator: CrossmintEmulator, where: str) -> Crossmint:
    crossmint = crossmint_emulator.crossmint()
    if where == "dead-port":
        return dataclasses.replace(crossmint, base_url=f"http://127.0.0.1:{free_port()}")
    if where == "wrong-prefix":
        return dataclasses.replace(crossmint, base_url=f"{crossmint.base_url}/crossmint")
    return crossmint


CHECKS = [
    pytest.param("emulator", None, None, None, id="crossmint"),
    pytest.param("dead-port", None, CrossmintAuthError, "unreachable", id="dead-port"),
    pytest.param("wrong-prefix", None, CrossmintConfigError, "HTTP 404", id="wrong-prefix"),
    pytest.param("emulator", (404, None), CrossmintConfigError, "HTTP 404", id="404"),
    pytest.param(
        "emulator", (200, b"<html><p>hi</p></html>"), CrossmintConfigError, "HTML", id="html"
    ),
    pytest.param("emulator", (200, {"ok": True}), CrossmintConfigError, "not a JWK Set", id="json"),
    pytest.param("emulator", (503, None), CrossmintAuthError, "HTTP 503", id="outage"),
]


def _expect_check(
    crossmint: Crossmint,
    error: BaseException | None,
    kind: type[Exception] | None,
    words: str | None,
) -> None:
    url = f"{crossmint.base_url}/.well-known/jwks.json"
    if kind is None:
        assert error is None
        return
    assert isinstance(error, kind), error
    message = str(error)
    assert url in message
    assert words is not None
    assert words in message
    assert crossmint.api_key not in message
    if isinstance(error, CrossmintConfigError):
        assert error.setting == "base_url"
    else:
        assert isinstance(error, CrossmintAuthError)
        assert error.code is ErrorCode.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(("where", "fault", "kind", "words"), CHECKS)
def test_check_tells_a_wrong_base_url_from_an_outage(
    crossmint_emulator: CrossmintEmulator,
    where: str,
    fault: tuple[int, Any] | None,
    kind: type[Exception] | None,
    words: str | None,
) -> None:
    crossmint = _pointed(crossmint_emulator, where)
    if fault is not None:
        # Once for the check, once for the request after it.
        crossmint_emulator.fail_next(2, status=fault[0], body=fault[1], endpoint="jwks")
    error: BaseException | None = None
    with CrossmintAuth(crossmint) as auth:
        try:
            auth.check()
        except (CrossmintAuthError, CrossmintConfigError) as raised:
            error = raised
        # Per request, whatever the cause, a token cannot be verified: a refusal, no crash.
        if kind is not None and where != "dead-port":
            with pytest.raises(CrossmintAuthError) as caught:
                auth.verify_crossmint_jwt(crossmint_emulator.issue_jwt("user-1"))
            assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
    _expect_check(crossmint, error, kind, words)


@pytest.mark.anyio
@pytest.mark.parametrize(("where", "fault", "kind", "words"), CHECKS)
async def test_async_check(
    crossmint_emulator: CrossmintEmulator,
    where: str,
    fault: tuple[int, Any] | None,
    kind: type[Exception] | None,
    words: str | None,
) -> None:
    crossmint = _pointed(crossmint_emulator, where)
    if fault is not None:
        crossmint_emulator.fail_next(1, status=fault[0], body=fault[1], endpoint="jwks")
    error: BaseException | None = None
    async with AsyncCrossmintAuth(crossmint) as auth:
        try:
            await auth.check()
        except (CrossmintAuthError, CrossmintConfigError) as raised:
            error = raised
    _expect_check(crossmint, error, kind, words)


# -- refresh_route: refreshing at another app's refresh route -------------------------------


@contextlib.contextmanager
def _refresh_service(crossmint_emulator: CrossmintEmulator) -> Iterator[str]:
    """App A: the middleware's refresh route, holding the server key, served over loopback.

    Its refresh cookie is HttpOnly, so its answers carry the new secret only in
    ``Set-Cookie``: app B must read it there.
    """
    from werkzeug.serving import make_server

    from crossmint_wsgi import CrossmintWSGIMiddleware

    def nothing(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b""]

    with CrossmintAuth(crossmint_emulator.crossmint()) as service:
        app = CrossmintWSGIMiddleware(nothing, service)
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}/refresh"
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def refresh_service(crossmint_emulator: CrossmintEmulator) -> Iterator[str]:
    with _refresh_service(crossmint_emulator) as url:
        yield url


def test_refresh_route_is_validated(crossmint_emulator: CrossmintEmulator) -> None:
    for wrong in ("/refresh", "ftp://a.example/refresh", "https://", 5):
        with pytest.raises(CrossmintConfigError) as caught:
            CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=wrong)  # type: ignore[arg-type]
        assert caught.value.setting == "refresh_route"


def test_get_session_refreshes_at_the_refresh_route(
    crossmint_emulator: CrossmintEmulator, refresh_service: str
) -> None:
    """App B refreshes an expired session through app A's route, never calling
    Crossmint itself, with the same coordination, caching and outcomes."""
    crossmint_emulator.configure(reuse_window=0)
    expired = crossmint_emulator.create_session("user-r", email="r@example.com", jwt_ttl=-5)
    with CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=refresh_service) as app_b:
        # Fifty concurrent requests with one expired session: one refresh, shared.
        with ThreadPoolExecutor(max_workers=10) as pool:
            sessions = list(
                pool.map(lambda _: app_b.get_session(cookie_mapping(expired)), range(50))
            )
        assert crossmint_emulator.requests["refresh"] == 1
        assert {s.jwt for s in sessions} == {sessions[0].jwt}
        session = sessions[0]
        assert (session.user_id, session.refreshed) == ("user-r", True)
        assert session.user is not None
        assert session.user.email == "r@example.com"
        # A's answer left the HttpOnly secret out of its body: B read it from Set-Cookie.
        new = session.refresh_token
        assert new is not None
        assert new.secret != expired.refresh_token.secret
        assert new.expires_at is not None
        # The new secret works, through A, for B's next refresh.
        again = app_b.refresh(new.secret)
        assert crossmint_emulator.requests["refresh"] == 2
        assert app_b.verify_crossmint_jwt(again.jwt)["sub"] == "user-r"
        # Outcomes: a refused secret ends the session; an outage behind A does not.
        with pytest.raises(CrossmintAuthError) as caught:
            app_b.get_session(refresh_token="no-such-secret")
        assert code_of(caught) is ErrorCode.SESSION_EXPIRED
        crossmint_emulator.set_down(True)
        with pytest.raises(CrossmintAuthError) as caught:
            app_b.refresh(again.refresh_token.secret)
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE


def test_refresh_route_unreachable_is_upstream_unavailable(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    route = f"http://127.0.0.1:{free_port()}/refresh"  # nothing listens there
    with (
        CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route) as app_b,
        pytest.raises(CrossmintAuthError) as caught,
    ):
        app_b.refresh("some-secret")
    assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
    assert crossmint_emulator.requests["refresh"] == 0


@pytest.mark.anyio
async def test_async_get_session_refreshes_at_the_refresh_route(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    expired = crossmint_emulator.create_session("user-a", jwt_ttl=-5)
    with _refresh_service(crossmint_emulator) as route:
        async with AsyncCrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route) as app_b:
            sessions = []

            async def one() -> None:
                sessions.append(await app_b.get_session(cookie_mapping(expired)))

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(one)
            with pytest.raises(CrossmintAuthError) as caught:
                await app_b.refresh("no-such-secret")
    assert code_of(caught) is ErrorCode.SESSION_EXPIRED
    assert {s.jwt for s in sessions} == {sessions[0].jwt}
    assert sessions[0].refreshed
    assert sessions[0].refresh_token is not None
    assert crossmint_emulator.requests["refresh"] == 2  # the twenty shared one, plus the refused


# -- security round 3: the refresh route is not trusted blindly ---------------------------------


@pytest.mark.parametrize(
    ("route", "ok"),
    [
        pytest.param("https://auth.example.com/refresh", True, id="https"),
        pytest.param("http://127.0.0.1:8000/refresh", True, id="http-loopback-v4"),
        pytest.param("http://localhost:8000/refresh", True, id="http-localhost"),
        pytest.param("http://[::1]:8000/refresh", True, id="http-loopback-v6"),
        pytest.param("http://auth.example.com/refresh", False, id="http-elsewhere"),
        pytest.param("http://10.0.0.5/refresh", False, id="http-private-address"),
        pytest.param("http://u:pw@auth.example.com/r?token=s3cret", False, id="credentials"),
        pytest.param("https://[::1/refresh", False, id="malformed"),
        pytest.param("https://auth.example.com:port/refresh", False, id="bad-port"),
    ],
)
def test_refresh_route_must_be_https_except_on_loopback(
    crossmint_emulator: CrossmintEmulator, route: str, ok: bool
) -> None:
    if ok:
        CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route).close()
        return
    with pytest.raises(CrossmintConfigError) as caught:
        CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route)
    assert caught.value.setting == "refresh_route"
    assert "refresh_route" in caught.value.message
    assert "pw" not in caught.value.message
    assert "s3cret" not in caught.value.message


@contextlib.contextmanager
def _fake_route(answer: Callable[[], dict[str, Any]]) -> Iterator[str]:
    """A route on loopback that answers ``answer()`` to every refresh."""
    from werkzeug.serving import make_server

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer()).encode()]

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/refresh"
    finally:
        server.shutdown()
        thread.join()


def _unsigned(emulator: CrossmintEmulator, sub: str) -> str:
    import base64

    def segment(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": sub, "aud": emulator.project_id, "iat": now, "exp": now + 600}
    return f"{segment({'alg': 'none', 'kid': emulator.kid})}.{segment(claims)}."


@pytest.mark.parametrize(
    "make_jwt",
    [
        pytest.param(lambda e: _unsigned(e, "route-admin"), id="alg-none"),
        pytest.param(
            lambda e: e.issue_jwt("route-admin", claims={"aud": "another-project"}),
            id="other-audience",
        ),
        pytest.param(lambda e: e.issue_jwt("route-admin", ttl=-60), id="expired"),
    ],
)
def test_a_refresh_routes_jwt_is_verified_before_it_is_published(
    crossmint_emulator: CrossmintEmulator, make_jwt: Callable[[CrossmintEmulator], str]
) -> None:
    def answer() -> dict[str, Any]:
        return {
            "jwt": make_jwt(crossmint_emulator),
            "refreshToken": {"secret": "next-secret", "expiresAt": None},
            "user": {"id": "route-admin"},
        }

    with (
        _fake_route(answer) as route,
        CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route) as app_b,
    ):
        with pytest.raises(CrossmintAuthError) as caught:
            app_b.get_session(refresh_token="some-secret")
        assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
        assert "does not verify" in caught.value.message
        from crossmint_wsgi import CrossmintWSGIMiddleware

        seen: list[Any] = []

        def view(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            seen.append(environ["crossmint.session"])
            start_response("200 OK", [])
            return [b""]

        middleware = CrossmintWSGIMiddleware(view, app_b)
        environ = EnvironBuilder(
            path="/", headers={"Cookie": "crossmint-refresh-token=other-secret"}
        ).get_environ()
        middleware(environ, lambda *a: None)
        assert seen == [None]


def test_an_unreachable_refresh_route_is_not_named_to_clients(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    from crossmint_wsgi import CrossmintWSGIMiddleware

    route = f"http://user:pw@127.0.0.1:{free_port()}/refresh?token=s3cret"  # nothing listens
    with CrossmintAuth(crossmint_emulator.crossmint(), refresh_route=route) as app_b:
        with pytest.raises(CrossmintAuthError) as caught:
            app_b.refresh("some-secret")
        statuses: list[str] = []
        middleware = CrossmintWSGIMiddleware(lambda e, s: [b""], app_b)
        environ = EnvironBuilder(
            path="/refresh",
            method="POST",
            json={"refresh": "some-secret"},
            headers={"Origin": "http://localhost"},
        ).get_environ()
        body = b"".join(middleware(environ, lambda status, headers: statuses.append(status)))
    assert code_of(caught) is ErrorCode.UPSTREAM_UNAVAILABLE
    assert statuses == ["503 Service Unavailable"]
    for shown in (caught.value.message, body.decode()):
        for secret in ("pw", "s3cret", "user:", str(route.split("@")[1].split("/")[0])):
            assert secret not in shown, shown
