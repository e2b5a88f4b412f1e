"""A logged-out JWT is refused from then on: in this process at once, in every
process sharing Redis within moments, and no cache serves it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_server import RedisServer, redis_server
from werkzeug.test import Client

from crossmint_wsgi import (
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    ErrorCode,
)
from crossmint_wsgi.redis import RedisCoordinator
from crossmint_wsgi.revocations import RevokedTokens, token_digest
from crossmint_wsgi.testing import CrossmintEmulator

JWT, REFRESH = "crossmint-jwt", "crossmint-refresh-token"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [])
    return [session.user_id.encode() if session else b"anonymous"]


def test_revoked_tokens_keep_each_until_its_exp() -> None:
    revoked = RevokedTokens(max_entries=10)
    assert revoked.add("a" * 64, 100.0, 50.0)
    assert not revoked.add("a" * 64, 100.0, 50.0)  # already there
    assert not revoked.add("b" * 64, 40.0, 50.0)  # expired already: nothing to refuse
    for index in range(20):
        revoked.add(f"{index:064d}", 200.0 + index, 60.0)
    assert len(revoked) <= 10
    assert f"{19:064d}" in revoked  # the ones expiring soonest went first


def test_token_digests_are_not_secret_digests() -> None:
    from crossmint_wsgi.coordination import secret_digest

    assert token_digest("x") != secret_digest("x")


@pytest.mark.parametrize("logout_with", ["both-cookies", "jwt-only"])
def test_a_copied_jwt_is_refused_after_logout(
    crossmint_emulator: CrossmintEmulator, logout_with: str
) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint()) as auth:
        client = Client(
            CrossmintWSGIMiddleware(app, auth, protect=["/account/:path*"]), use_cookies=False
        )
        login = crossmint_emulator.create_session("user-copied")
        copied = {"Cookie": f"{JWT}={login.jwt}"}
        for _ in range(2):  # the second is served from the recent-session cache
            assert client.get("/account", headers=copied).data == b"user-copied"
        assert auth.verify_crossmint_jwt(login.jwt)["sub"] == "user-copied"

        cookie = f"{JWT}={login.jwt}"
        if logout_with == "both-cookies":
            cookie += f"; {REFRESH}={login.refresh_token.secret}"
        assert client.post("/logout", headers={"Cookie": cookie}).status_code == 200

        refused = client.get("/account", headers=copied)
        assert refused.status_code == 401
        assert refused.get_json()["error"] == "SESSION_EXPIRED"
        assert client.get("/", headers=copied).data == b"anonymous"
        with pytest.raises(CrossmintAuthError) as caught:
            auth.verify_crossmint_jwt(login.jwt)
        assert caught.value.code is ErrorCode.SESSION_EXPIRED
        assert "logged out" in caught.value.message
        # Other sessions are untouched.
        other = crossmint_emulator.create_session("user-other")
        assert client.get("/account", headers={"Cookie": f"{JWT}={other.jwt}"}).status_code == 200


def test_a_forged_jwt_at_logout_is_not_recorded(crossmint_emulator: CrossmintEmulator) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint()) as auth:
        client = Client(CrossmintWSGIMiddleware(app, auth), use_cookies=False)
        forged = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4IiwiZXhwIjo5OTk5OTk5OTk5fQ.c2ln"
        client.post("/logout", headers={"Cookie": f"{JWT}={forged}"})
        assert len(auth.core.revoked) == 0


# -- through Redis: every process ------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.005)
    return time.monotonic() - start


def test_a_logout_reaches_every_process_through_redis(
    crossmint_emulator: CrossmintEmulator, redis: RedisServer
) -> None:
    crossmint = crossmint_emulator.crossmint()
    # Three auths with their own coordinators stand for three worker processes.
    workers = [
        CrossmintAuth(crossmint, coordinator=RedisCoordinator.from_url(redis.url)) for _ in range(3)
    ]
    clients = [Client(CrossmintWSGIMiddleware(app, auth), use_cookies=False) for auth in workers]
    login = crossmint_emulator.create_session("user-everywhere")
    copied = {"Cookie": f"{JWT}={login.jwt}"}
    for client in clients:
        assert client.get("/", headers=copied).data == b"user-everywhere"
    for auth in workers:
        listener = auth.coordinator._listener  # type: ignore[attr-defined]
        assert listener is not None
        assert listener.ready.wait(30)

    logout = f"{JWT}={login.jwt}; {REFRESH}={login.refresh_token.secret}"
    assert clients[0].post("/logout", headers={"Cookie": logout}).status_code == 200
    # Pushed to every process, none asking: each listener records the JWT by itself.
    for auth in workers:
        wait_for(lambda a=auth: token_digest(login.jwt) in a.core.revoked)
    for client in clients:
        assert client.get("/", headers=copied).data == b"anonymous"

    # A process that starts (or reconnects) later catches up from Redis.
    late = CrossmintAuth(crossmint, coordinator=RedisCoordinator.from_url(redis.url))
    late_client = Client(CrossmintWSGIMiddleware(app, late), use_cookies=False)
    # Its very first request, a flow, starts its listener, which reads the earlier logouts first.
    assert late_client.get("/", headers=copied).data == b"anonymous"
    for auth in [*workers, late]:
        auth.coordinator.close()  # type: ignore[attr-defined]
        auth.close()
