"""In-process coordination: one upstream refresh per expired session, through the middlewares."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx
import pytest
from werkzeug.test import Client

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    ErrorCode,
)
from crossmint_wsgi.coordination import (
    LOGGED_OUT,
    AsyncLocalCoordinator,
    AsyncSingleFlight,
    GraceCache,
    LocalCoordinator,
    SingleFlight,
    secret_digest,
)
from crossmint_wsgi.models import AuthMaterial, RefreshToken
from crossmint_wsgi.testing import CrossmintEmulator

BURST = 200
JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"


def expired_login(emulator: CrossmintEmulator) -> tuple[AuthMaterial, str]:
    """A session whose JWT has expired, in strict rotation, and its Cookie header."""
    emulator.configure(reuse_window=0)
    login = emulator.create_session("user-storm", email="storm@example.com", jwt_ttl=-30)
    # A slower Crossmint keeps the burst inside one refresh round trip.
    emulator.set_latency(0.05)
    cookie = f"{JWT_COOKIE}={login.jwt}; {REFRESH_COOKIE}={login.refresh_token.secret}"
    return login, cookie


def cookie_value(set_cookies: tuple[str, ...], name: str) -> str:
    for header in set_cookies:
        if header.startswith(name + "="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no {name} cookie in {set_cookies}")


def assert_one_refresh_for_all(
    emulator: CrossmintEmulator,
    login: AuthMaterial,
    answers: list[tuple[int, bytes, tuple[str, ...]]],
) -> None:
    assert emulator.requests["refresh"] == 1
    assert len(answers) == BURST
    assert {status for status, _, _ in answers} == {200}
    assert {body for _, body, _ in answers} == {b"user-storm"}  # every request had a session
    cookies = {set_cookies for _, _, set_cookies in answers}
    assert len(cookies) == 1, cookies  # the same new cookies, byte for byte
    (set_cookies,) = cookies
    new_jwt = cookie_value(set_cookies, JWT_COOKIE)
    new_secret = cookie_value(set_cookies, REFRESH_COOKIE)
    assert new_jwt
    assert new_jwt != login.jwt
    assert new_secret
    assert new_secret != login.refresh_token.secret


# -- WSGI, threads ------------------------------------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [session.user_id.encode() if session else b"no session"]


def test_wsgi_burst_of_threads_makes_one_refresh(
    crossmint_emulator: CrossmintEmulator, auth: CrossmintAuth
) -> None:
    login, cookie = expired_login(crossmint_emulator)
    app = CrossmintWSGIMiddleware(wsgi_app, auth)
    barrier = threading.Barrier(BURST)
    answers: list[tuple[int, bytes, tuple[str, ...]]] = []
    failures: list[BaseException] = []

    def request() -> None:
        client = Client(app, use_cookies=False)
        barrier.wait()
        try:
            response = client.get("/", headers={"Cookie": cookie})
            answers.append(
                (
                    response.status_code,
                    response.get_data(),
                    tuple(response.headers.getlist("Set-Cookie")),
                )
            )
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=request) for _ in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert_one_refresh_for_all(crossmint_emulator, login, answers)


# -- ASGI, asyncio and trio tasks -----------------------------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    session = scope["state"]["crossmint_session"]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    body = session.user_id.encode() if session else b"no session"
    await send({"type": "http.response.body", "body": body})


async def asgi_get(
    app: CrossmintASGIMiddleware, path: str, cookie: str
) -> tuple[int, bytes, tuple[str, ...]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode("latin-1"))],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    set_cookies = tuple(v.decode("latin-1") for k, v in start["headers"] if k == b"set-cookie")
    return start["status"], body, set_cookies


@pytest.mark.anyio
async def test_asgi_burst_of_tasks_makes_one_refresh(
    crossmint_emulator: CrossmintEmulator, async_auth: AsyncCrossmintAuth
) -> None:
    login, cookie = expired_login(crossmint_emulator)
    app = CrossmintASGIMiddleware(asgi_app, async_auth)
    go = anyio.Event()
    answers: list[tuple[int, bytes, tuple[str, ...]]] = []

    async def request() -> None:
        await go.wait()
        answers.append(await asgi_get(app, "/", cookie))

    async with anyio.create_task_group() as group:
        for _ in range(BURST):
            group.start_soon(request)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert_one_refresh_for_all(crossmint_emulator, login, answers)


# -- the parts ------------------------------------------------------------------------------


def material(tag: str) -> AuthMaterial:
    return AuthMaterial(
        f"jwt-{tag}", RefreshToken(f"secret-{tag}", datetime(2030, 1, 1, tzinfo=timezone.utc))
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_grace_cache_serves_within_the_window_only() -> None:
    clock = Clock()
    cache = GraceCache(window=30, clock=clock)
    cache.put("a", material("a"))
    clock.now += 29.9
    assert cache.get("a") == material("a")
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0  # an expired entry is dropped when met


def test_grace_cache_is_bounded() -> None:
    clock = Clock()
    cache = GraceCache(window=30, max_entries=3, clock=clock)
    for name in "abcdefgh":
        cache.put(name, material(name))
        clock.now += 1
    assert len(cache) <= 3
    # What stays when full is crossmint_wsgi.caches' policy; nothing stored is wrong.
    assert all(cache.get(name) in (None, material(name)) for name in "abcdefgh")
    assert cache.stats().entries <= 3  # outcomes and the links between them


def test_grace_cache_is_bounded_by_bytes() -> None:
    cache = GraceCache(window=30, max_entries=10**6, clock=Clock(), budget=64 * 1024)
    for index in range(2000):
        cache.put(f"d{index}", material(f"{index}-{'x' * 500}"))
    stats = cache.stats()
    assert stats.bytes <= 64 * 1024
    assert 0 < len(cache) < 2000


def test_grace_cache_never_serves_expired_entries() -> None:
    clock = Clock()
    cache = GraceCache(window=10, clock=clock)
    for name in "abc":
        cache.put(name, material(name))
    clock.now += 11
    cache.put("d", material("d"))
    assert [cache.get(name) for name in "abc"] == [None, None, None]
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("window", "max_entries"),
    [pytest.param(0, 10, id="no-window"), pytest.param(30, 0, id="no-room")],
)
def test_grace_cache_can_be_turned_off(window: float, max_entries: int) -> None:
    cache = GraceCache(window=window, max_entries=max_entries)
    cache.put("a", material("a"))
    assert cache.get("a") is None
    assert len(cache) == 0


def test_single_flight_shares_an_error_and_does_not_keep_it() -> None:
    flight: SingleFlight[str] = SingleFlight()
    threads_count = 20
    calls = 0
    refused = CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refused")

    def waiting() -> int:
        """How many threads wait on the flight in progress, inside do()."""
        # The private event's condition is the only witness that a thread waits.
        return len(flight._calls["key"].done._cond._waiters)  # type: ignore[attr-defined]

    def call() -> str:
        nonlocal calls
        calls += 1
        # Fail only once every other thread waits on this call: none arrives late.
        deadline = time.monotonic() + 30
        while waiting() < threads_count - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise refused

    errors: list[BaseException] = []

    def run() -> None:
        try:
            flight.do("key", call)
        except CrossmintAuthError as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert calls == 1
    assert len(errors) == threads_count
    assert all(error is refused for error in errors)
    # The error is not remembered: the next call runs.
    assert flight.do("key", lambda: "fresh") == "fresh"


def test_local_coordinator_does_not_cache_errors() -> None:
    coordinator = LocalCoordinator(grace=30)
    refused = CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, "down")

    def fail() -> AuthMaterial:
        raise refused

    with pytest.raises(CrossmintAuthError):
        coordinator.refresh("secret", fail)
    assert coordinator.refresh("secret", lambda: material("ok")) == material("ok")
    # Now the grace cache answers, without a call.
    assert coordinator.refresh("secret", lambda: material("other")) == material("ok")


def test_local_coordinator_remembers_a_refusal_briefly() -> None:
    clock = [0.0]
    coordinator = LocalCoordinator(grace=30)
    coordinator.cache = GraceCache(window=30, clock=lambda: clock[0], refusal_window=5)
    refused = CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refused")
    calls = []

    def fail() -> AuthMaterial:
        calls.append(1)
        raise refused

    for _ in range(3):
        with pytest.raises(CrossmintAuthError) as caught:
            coordinator.refresh("dead", fail)
        assert caught.value is refused
    # A refused secret never comes back: one upstream call answers the others.
    assert len(calls) == 1
    clock[0] = 5.0
    with pytest.raises(CrossmintAuthError):
        coordinator.refresh("dead", fail)
    assert len(calls) == 2


@pytest.mark.anyio
async def test_async_local_coordinator_remembers_a_refusal() -> None:
    coordinator = AsyncLocalCoordinator(grace=30)
    calls = []

    async def fail() -> AuthMaterial:
        calls.append(1)
        raise CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refused")

    for _ in range(3):
        with pytest.raises(CrossmintAuthError):
            await coordinator.refresh("dead", fail)
    assert len(calls) == 1


@pytest.mark.anyio
async def test_async_single_flight_survives_a_cancelled_leader() -> None:
    flight: AsyncSingleFlight[str] = AsyncSingleFlight()
    calls = 0
    leader_started = anyio.Event()

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            leader_started.set()
            await anyio.sleep_forever()
        return f"value-{calls}"

    got: list[str] = []
    leader = anyio.CancelScope()

    async def lead() -> None:
        with leader:
            await flight.do("key", call)

    async def wait() -> None:
        got.append(await flight.do("key", call))

    async with anyio.create_task_group() as group:
        group.start_soon(lead)
        await leader_started.wait()
        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()  # the second task waits on the leader
        leader.cancel()
    assert leader.cancelled_caught
    # The waiter did not inherit the cancellation: it ran the call again, as leader.
    assert got == ["value-2"]
    assert calls == 2


@pytest.mark.anyio
async def test_async_single_flight_shares_an_error() -> None:
    flight: AsyncSingleFlight[str] = AsyncSingleFlight()
    calls = 0
    release = anyio.Event()
    refused = CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refused")

    async def call() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise refused

    errors: list[BaseException] = []

    async def run() -> None:
        try:
            await flight.do("key", call)
        except CrossmintAuthError as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert len(errors) == 10
    assert all(error is refused for error in errors)


@pytest.mark.anyio
async def test_async_local_coordinator_shares_one_call() -> None:
    coordinator = AsyncLocalCoordinator(grace=30)
    calls = 0
    release = anyio.Event()

    async def perform() -> AuthMaterial:
        nonlocal calls
        calls += 1
        await release.wait()
        return material("shared")

    results: list[AuthMaterial] = []

    async def run() -> None:
        results.append(await coordinator.refresh("secret", perform))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 1
    assert results == [material("shared")] * 50


# -- logout ends the whole chain --------------------------------------------------------------


def digest_of(tag: str) -> str:
    return secret_digest(f"secret-{tag}")


@pytest.mark.parametrize(
    ("presented", "successors"),
    [
        pytest.param("1", ["secret-2", "secret-3"], id="oldest-secret"),
        pytest.param("2", ["secret-3"], id="middle-secret"),
        pytest.param("3", [], id="newest-secret"),
    ],
)
def test_revoke_ends_every_secret_of_the_chain(presented: str, successors: list[str]) -> None:
    cache = GraceCache(window=30, clock=Clock())
    # Keys are digests of the secrets, as the coordinators write them.
    cache.put(digest_of("1"), material("2"))
    cache.put(digest_of("2"), material("3"))
    assert cache.revoke(digest_of(presented)) == successors
    for tag in "123":
        with pytest.raises(CrossmintAuthError) as caught:
            cache.get(digest_of(tag))
        assert caught.value is LOGGED_OUT


def test_revoked_secrets_stay_revoked_past_the_grace_window() -> None:
    clock = Clock()
    cache = GraceCache(window=30, clock=clock, revoked_window=600)
    cache.put(digest_of("1"), material("2"))
    cache.revoke(digest_of("2"))
    clock.now += 599
    with pytest.raises(CrossmintAuthError):
        cache.get(digest_of("1"))
    # A refresh that was in flight during the logout lands late: still logged out.
    cache.put(digest_of("2"), material("3"))
    with pytest.raises(CrossmintAuthError):
        cache.get(digest_of("2"))
    clock.now += 2
    assert cache.get(digest_of("1")) is None


def test_revoke_of_an_unknown_secret_refuses_it_alone() -> None:
    cache = GraceCache(window=30, clock=Clock())
    cache.put(digest_of("a"), material("b"))
    assert cache.revoke(digest_of("x")) == []
    assert cache.get(digest_of("a")) == material("b")


def test_a_stale_secret_is_refused_when_its_successor_was_logged_out() -> None:
    """S1 -> S2 -> S3; the link from S3 back to S1 is lost, a logout with S3 still ends S2."""
    cache = GraceCache(window=30, clock=Clock())
    cache.put(digest_of("1"), material("2"))
    cache.put(digest_of("2"), material("3"))
    cache._cache.discard("<" + digest_of("3"))  # as if evicted
    assert cache.revoke(digest_of("3")) == []
    for tag in "12":
        with pytest.raises(CrossmintAuthError):
            cache.get(digest_of(tag))


@pytest.mark.parametrize("middleware", ["wsgi", "asgi"])
def test_logout_through_the_middleware_ends_stolen_and_stale_secrets(
    crossmint_emulator: CrossmintEmulator, middleware: str
) -> None:
    """S1 -> (J2, S2) by a refresh; a logout with either secret ends both, here and upstream."""
    crossmint_emulator.configure(reuse_window=0)
    for presented_at_logout in ("old", "new"):
        login = crossmint_emulator.create_session("user-chain", jwt_ttl=-30)
        s1 = login.refresh_token.secret
        post = _poster(crossmint_emulator, middleware)
        status, _, set_cookies = post("/refresh", {"refresh": s1}, "")
        assert status == 200
        s2 = cookie_value(set_cookies, REFRESH_COOKIE)
        logout_secret = s1 if presented_at_logout == "old" else s2
        status, _, _ = post("/logout", None, f"{REFRESH_COOKIE}={logout_secret}")
        assert status == 200
        for stolen in (s1, s2):
            status, body, _ = post("/refresh", {"refresh": stolen}, "")
            assert status == 401, (presented_at_logout, body)
            assert json.loads(body)["error"] == "SESSION_EXPIRED"
        # Crossmint itself no longer accepts the newest secret either.
        with (
            CrossmintAuth(crossmint_emulator.crossmint()) as fresh,
            pytest.raises(CrossmintAuthError),
        ):
            fresh.refresh(s2)


def _poster(
    emulator: CrossmintEmulator, middleware: str
) -> Callable[[str, Any, str], tuple[int, bytes, tuple[str, ...]]]:
    """POST through one middleware instance (one process's caches) with raw cookies."""
    if middleware == "wsgi":
        client = Client(CrossmintWSGIMiddleware(_not_found, CrossmintAuth(emulator.crossmint())))

        def post_wsgi(path: str, body: Any, cookie: str) -> tuple[int, bytes, tuple[str, ...]]:
            headers = {"Cookie": cookie} if cookie else {}
            response = client.post(path, json=body, headers=headers)
            return (
                response.status_code,
                response.data,
                tuple(response.headers.getlist("Set-Cookie")),
            )

        return post_wsgi
    app = CrossmintASGIMiddleware(_asgi_not_found, AsyncCrossmintAuth(emulator.crossmint()))

    def post_asgi(path: str, body: Any, cookie: str) -> tuple[int, bytes, tuple[str, ...]]:
        async def go() -> tuple[int, bytes, tuple[str, ...]]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                headers = {"Cookie": cookie} if cookie else {}
                response = await client.post(path, json=body, headers=headers)
                return (
                    response.status_code,
                    response.content,
                    tuple(response.headers.get_list("set-cookie")),
                )

        return anyio.run(go)

    return post_asgi


def _not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


async def _asgi_not_found(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_a_flood_of_logouts_never_evicts_a_refresh_result() -> None:
    """Tombstones live apart: made-up logouts cannot push a real session's result out."""
    cache = GraceCache(window=30, budget=8 << 10)
    cache.put(digest_of("real"), material("real"))
    for n in range(30_000):
        cache.revoke(digest_of(f"fake-{n}"))
    found = cache.get(digest_of("real"))
    assert found is not None
    assert found.jwt == material("real").jwt
    # Tombstones are bounded too, the newest kept.
    with pytest.raises(CrossmintAuthError):
        cache.get(digest_of("fake-29999"))
    assert cache.get(digest_of("fake-0")) is None
