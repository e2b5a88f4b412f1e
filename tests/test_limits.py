"""Floods: refused secrets per client address, refresh calls in flight, cache bytes.

Through both middlewares in process, and through the raw ASGI example under
uvicorn and the Flask example under gunicorn, where a flood really holds
workers.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from support import Server, free_port, require_program, run_server
from werkzeug.test import Client

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintWSGIMiddleware,
    ErrorCode,
)
from crossmint_wsgi.limits import FailedRefreshes, UpstreamSlots
from crossmint_wsgi.testing import CrossmintEmulator

REFRESH = "crossmint-refresh-token"
JWT = "crossmint-jwt"


# -- the two bounds, alone ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "distinct", "at", "blocked"),
    [
        pytest.param(19, True, 0, False, id="under-the-limit"),
        pytest.param(20, True, 0, True, id="at-the-limit"),
        pytest.param(200, False, 0, False, id="one-secret-retried-counts-once"),
        pytest.param(20, True, 59.9, True, id="within-the-window"),
        pytest.param(20, True, 60, False, id="after-the-window"),
    ],
)
def test_failed_refreshes(failures: int, distinct: bool, at: float, blocked: bool) -> None:
    bound = FailedRefreshes(limit=20, window=60)
    for index in range(failures):
        bound.failed("93.184.216.34", f"digest-{index if distinct else 0}", 0.0)
    assert (bound.refusal("93.184.216.34", at) is not None) is blocked
    assert bound.refusal("151.101.1.69", at) is None
    assert bound.refusal(None, at) is None


def test_failed_refreshes_tracks_a_bounded_number_of_addresses() -> None:
    bound = FailedRefreshes(limit=1, window=60, max_clients=100)
    for index in range(1000):
        bound.failed(f"93.184.{index // 256}.{index % 256}", "d", 0.0)
    assert len(bound._clients) == 100


def test_a_blocked_client_is_told_when_to_come_back() -> None:
    bound = FailedRefreshes(limit=2, window=60)
    bound.failed("client-a", "d1", 100.0)
    bound.failed("client-a", "d2", 110.0)
    refusal = bound.refusal("client-a", 130.0)
    assert refusal is not None
    assert refusal.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "try again in 31 s" in refusal.message


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        pytest.param("93.184.216.34", True, id="public-v4"),
        pytest.param("2606:2800:220:1:248:1893:25c8:1946", True, id="public-v6"),
        pytest.param("127.0.0.1", False, id="loopback"),
        pytest.param("10.1.2.3", False, id="private"),
        pytest.param("192.168.0.7", False, id="private-192"),
        pytest.param("fe80::1%eth0", False, id="link-local-v6"),
        pytest.param("edge-proxy", True, id="not-an-address"),
    ],
)
def test_only_public_addresses_are_counted(address: str, counted: bool) -> None:
    """A private peer is a proxy speaking for many clients: blocking it would block them all."""
    bound = FailedRefreshes(limit=1, window=60)
    bound.failed(address, "d", 0.0)
    assert (bound.refusal(address, 1.0) is not None) is counted


def test_upstream_slots_never_wait() -> None:
    slots = UpstreamSlots(2)
    with slots.hold(), slots.hold():
        with pytest.raises(CrossmintAuthError) as caught, slots.hold():
            pass
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert slots.in_flight == 0
    with slots.hold():
        assert slots.in_flight == 1


# -- through the middlewares, in process ----------------------------------------------------


def app_ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"user " + session.user_id.encode() if session else b"anonymous"]


def random_cookie() -> str:
    return f"{REFRESH}={secrets.token_urlsafe(24)}"


def test_random_secrets_from_one_address_stop_reaching_crossmint(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    now = [1_000_000.0]
    with CrossmintAuth(crossmint_emulator.crossmint(), clock=lambda: now[0]) as auth:
        client = Client(
            CrossmintWSGIMiddleware(app_ok, auth, protect=["/account/:path*"]), use_cookies=False
        )
        attacker = {"REMOTE_ADDR": "93.184.216.34"}
        statuses = [
            client.get(path, headers={"Cookie": random_cookie()}, environ_base=attacker).status_code
            for path in ["/", "/account"] * 30
        ]
        assert crossmint_emulator.requests["refresh"] == 20
        # Unprotected paths still answer (with no session); protected ones say why.
        assert set(statuses[:20]) == {200, 401}
        assert set(statuses[20:]) == {200, 503}
        refused = client.get("/account", headers={"Cookie": random_cookie()}, environ_base=attacker)
        assert refused.headers["Retry-After"] == "5"
        assert refused.json is not None
        assert "too many refused" in refused.json["message"]
        assert refused.headers.get("Set-Cookie") is None  # cookies kept

        # Everybody else is served as usual, a new login included.
        login = crossmint_emulator.create_session("user-ok", jwt_ttl=-30)
        other = {"REMOTE_ADDR": "151.101.1.69"}
        cookie = f"{JWT}={login.jwt}; {REFRESH}={login.refresh_token.secret}"
        answer = client.get("/account", headers={"Cookie": cookie}, environ_base=other)
        assert answer.status_code == 200
        assert answer.data == b"user user-ok"

        now[0] += 61
        client.get("/", headers={"Cookie": random_cookie()}, environ_base=attacker)
        assert crossmint_emulator.requests["refresh"] == 22


def test_the_refresh_route_counts_too(crossmint_emulator: CrossmintEmulator) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint(), refresh_failure_limit=3) as auth:
        client = Client(CrossmintWSGIMiddleware(app_ok, auth), use_cookies=False)
        statuses = [
            client.post(
                "/refresh",
                json={"refresh": secrets.token_urlsafe(24)},
                environ_base={"REMOTE_ADDR": "93.184.216.34"},
            ).status_code
            for _ in range(6)
        ]
    assert statuses == [401, 401, 401, 503, 503, 503]
    assert crossmint_emulator.requests["refresh"] == 3


@pytest.mark.anyio
async def test_refresh_calls_in_flight_are_capped(crossmint_emulator: CrossmintEmulator) -> None:
    crossmint_emulator.set_latency(0.5)
    async with AsyncCrossmintAuth(
        crossmint_emulator.crossmint(), max_concurrent_refreshes=3
    ) as auth:
        app = CrossmintASGIMiddleware(asgi_ok, auth, protect=["/account/:path*"])
        transport = httpx.ASGITransport(app=app)
        statuses: list[int] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one(index: int) -> None:
                # Each from its own address: the per-address bound stays out of it.
                scoped = httpx.ASGITransport(app=app, client=(f"10.1.0.{index}", 1000))
                async with httpx.AsyncClient(transport=scoped, base_url="http://t") as own:
                    answer = await own.get("/account", headers={"Cookie": random_cookie()})
                    statuses.append(answer.status_code)

            async with anyio.create_task_group() as group:
                for index in range(12):
                    group.start_soon(one, index)
            assert (await client.get("/")).status_code == 200
    assert crossmint_emulator.requests["refresh"] == 3
    assert sorted(statuses) == [401] * 3 + [503] * 9


async def asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_junk_cookies_cannot_grow_the_session_cache(crossmint_emulator: CrossmintEmulator) -> None:
    """A signed-in user adding a new large cookie per request: memory stays within budget."""
    budget = 2 * 1024 * 1024
    with CrossmintAuth(crossmint_emulator.crossmint(), cache_budget=budget) as auth:
        middleware = CrossmintWSGIMiddleware(app_ok, auth)
        client = Client(middleware, use_cookies=False)
        login = crossmint_emulator.create_session("user-junk")
        base = f"{JWT}={login.jwt}; {REFRESH}={login.refresh_token.secret}"
        for index in range(300):
            junk = f"junk{index}={'x' * 3000}"
            answer = client.get("/", headers={"Cookie": f"{base}; {junk}"})
            assert answer.data == b"user user-junk"
            # Auth cookies named like ours but unknown: the auth pairs change too.
            answer = client.get("/", headers={"Cookie": f"{base}; crossmint-x{index}={junk}"})
            assert answer.data == b"user user-junk"
        stats = middleware.gate.recent.stats()
        assert stats.bytes <= budget * 3 // 4
        assert stats.entries < 3 * 600
        assert crossmint_emulator.requests["refresh"] == 0


# -- through real servers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrossmintEmulator]:
    with CrossmintEmulator() as instance:
        yield instance


SERVERS = {
    "raw-asgi-uvicorn": ["uvicorn", "--app-dir", "examples", "raw_asgi:app", "--port", "{port}"],
    "flask-gunicorn": [
        "gunicorn",
        "--chdir",
        "examples",
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:{port}",
        "flask_app:app",
    ],
}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, emulator: CrossmintEmulator) -> Iterator[Server]:
    port = free_port()
    program, *args = SERVERS[request.param]
    command = [require_program(program), *(arg.replace("{port}", str(port)) for arg in args)]
    env = {
        "CROSSMINT_EMULATOR_URL": emulator.url,
        "PORT": str(port),
        "CROSSMINT_CLIENT_IP_HEADER": "X-Forwarded-For",
    }
    with run_server(command, port=port, env=env) as running:
        WORKERS[running.url] = 2 if program == "gunicorn" else 1
        yield running


WORKERS: dict[str, int] = {}


@pytest.mark.slow
def test_a_flood_of_random_secrets_through_a_real_server(
    server: Server, emulator: CrossmintEmulator
) -> None:
    emulator.reset()
    login = emulator.create_session("user-flood")
    valid = f"{JWT}={login.jwt}; {REFRESH}={login.refresh_token.secret}"
    served: list[int] = []
    stop = threading.Event()

    def keep_visiting() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                served.append(client.get("/api/me", headers={"Cookie": valid}).status_code)

    visitor = threading.Thread(target=keep_visiting)
    visitor.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(100):
                # One public client behind the trusted proxy (uvicorn trusts 127.0.0.1's
                # X-Forwarded-For; the gunicorn example names the header).
                client.get(
                    "/", headers={"Cookie": random_cookie(), "X-Forwarded-For": "93.184.216.34"}
                )
    finally:
        stop.set()
        visitor.join()
    # One client address: 20 calls reach Crossmint per worker process at most.
    assert 20 <= emulator.requests["refresh"] <= 20 * WORKERS[server.url], emulator.requests
    assert served
    assert set(served) == {200}, served[:20]
