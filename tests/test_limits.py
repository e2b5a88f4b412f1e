"""Floods: refused secrets per client address, refresh calls in flight, cache bytes.

Through both middlewares in process, and through the raw ASGI example under
uvicorn and the Flask example under gunicorn, where a flood really holds
workers.
"""

from __future__ import annotations

import contextlib
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
    slots = UpstreamSlots(2, reserve=0)
    with slots.hold(), slots.hold():
        with pytest.raises(CrossmintAuthError) as caught, slots.hold():
            pass
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert slots.in_flight == 0
    with slots.hold():
        assert slots.in_flight == 1


OFFICE = "93.184.216.34"  # a NAT that real users and an attacker share


@pytest.mark.parametrize(
    ("floods", "user", "client", "blocked"),
    [
        # Strangers from the office: bounded per address, as before.
        pytest.param([(OFFICE, None, 20)], None, OFFICE, True, id="stranger-after-a-flood"),
        pytest.param([(OFFICE, None, 19)], None, OFFICE, False, id="stranger-under-the-limit"),
        pytest.param([(OFFICE, None, 20)], None, "151.101.1.69", False, id="other-address"),
        # A user (an authentic JWT) from the flooded address: never counted against it.
        pytest.param([(OFFICE, None, 200)], "user-1", OFFICE, False, id="user-after-a-flood"),
        # ...but counted on their own, wherever they come from.
        pytest.param([(OFFICE, "user-1", 20)], "user-1", OFFICE, True, id="user-own-flood"),
        pytest.param(
            [("151.101.1.69", "user-1", 20)], "user-1", OFFICE, True, id="user-from-anywhere"
        ),
        pytest.param([(OFFICE, "user-1", 20)], "user-2", OFFICE, False, id="another-user"),
        pytest.param([(OFFICE, "user-1", 20)], None, OFFICE, False, id="user-never-blocks-address"),
        # Users are counted even behind a private peer: a sub names one user.
        pytest.param([("10.0.0.1", "user-1", 20)], "user-1", "10.0.0.1", True, id="user-private"),
        pytest.param([("10.0.0.1", None, 20)], None, "10.0.0.1", False, id="stranger-private"),
        pytest.param([(None, "user-1", 20)], "user-1", None, True, id="user-no-address"),
    ],
)
def test_users_and_strangers_are_counted_apart(
    floods: list[tuple[str | None, str | None, int]],
    user: str | None,
    client: str | None,
    blocked: bool,
) -> None:
    bound = FailedRefreshes(limit=20, window=60)
    for address, who, count in floods:
        for index in range(count):
            bound.failed(address, f"{address}-{who}-{index}", 0.0, who)
    assert (bound.refusal(client, 1.0, user) is not None) is blocked
    with bound.attempt(client, "a-new-secret", 1.0, user) as refused:
        assert (refused is not None) is blocked
    if blocked:
        assert refused is not None
        assert ("for this user" in refused.message) is (user is not None)


@pytest.mark.parametrize(
    ("in_flight", "failures", "same_secret", "blocked"),
    [
        pytest.param(19, 0, False, False, id="19-in-flight"),
        pytest.param(20, 0, False, True, id="20-in-flight"),
        pytest.param(10, 10, False, True, id="10-in-flight-10-refused"),
        pytest.param(10, 9, False, False, id="10-in-flight-9-refused"),
        # Fifty requests of one session share one call: the secret may join.
        pytest.param(20, 0, True, False, id="joins-its-own-secret"),
    ],
)
def test_secrets_in_flight_count_against_the_bound(
    in_flight: int, failures: int, same_secret: bool, blocked: bool
) -> None:
    bound = FailedRefreshes(limit=20, window=60)
    for index in range(failures):
        bound.failed(OFFICE, f"refused-{index}", 0.0)
    with contextlib.ExitStack() as stack:
        for index in range(in_flight):
            assert stack.enter_context(bound.attempt(OFFICE, f"flying-{index}", 1.0)) is None
        digest = "flying-0" if same_secret else "new"
        with bound.attempt(OFFICE, digest, 1.0) as refused:
            assert (refused is not None) is blocked
        if blocked:
            assert refused is not None
            assert "try again in" in refused.message
    # Once the calls landed (none refused), the address is free again.
    assert (bound.refusal(OFFICE, 1.0) is not None) is (failures >= 20)
    assert not bound._pending


def test_a_refused_attempt_is_not_in_flight() -> None:
    bound = FailedRefreshes(limit=1, window=60)
    with bound.attempt(OFFICE, "a", 0.0) as first, bound.attempt(OFFICE, "b", 0.0) as second:
        assert first is None
        assert second is not None
        assert sum(len(pending) for pending in bound._pending.values()) == 1
    assert not bound._pending


@pytest.mark.parametrize(
    ("limit", "reserve", "strangers", "users"),
    [
        pytest.param(64, None, 48, 64, id="default-a-quarter-kept"),
        pytest.param(8, None, 6, 8, id="8"),
        pytest.param(3, None, 2, 3, id="3-at-least-one-kept"),
        pytest.param(2, None, 1, 2, id="2"),
        pytest.param(1, None, 1, 1, id="1-shared"),
        pytest.param(10, 10, 0, 10, id="all-kept"),
        pytest.param(0, None, 1000, 1000, id="unbounded"),
    ],
)
def test_upstream_slots_keep_a_reserve_for_users(
    limit: int, reserve: int | None, strangers: int, users: int
) -> None:
    slots = UpstreamSlots(limit, reserve)
    codes: set[ErrorCode] = set()

    def fill(vouched: bool, stack: contextlib.ExitStack) -> int:
        taken = 0
        while taken < 1000:
            try:
                stack.enter_context(slots.hold(vouched=vouched))
            except CrossmintAuthError as error:
                codes.add(error.code)
                break
            taken += 1
        return taken

    with contextlib.ExitStack() as stack:
        assert fill(False, stack) == strangers
        # Strangers filled theirs: users still get the reserve.
        assert fill(True, stack) == (users - strangers if limit else 1000)
    assert slots.in_flight == 0
    with contextlib.ExitStack() as stack:
        assert fill(True, stack) == users
        # Users may fill every slot; strangers then get none.
        assert fill(False, stack) == (0 if limit else 1000)
    assert codes <= {ErrorCode.UPSTREAM_UNAVAILABLE}


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


def session_cookie(material: Any) -> str:
    return f"{JWT}={material.jwt}; {REFRESH}={material.refresh_token.secret}"


@pytest.mark.parametrize(
    "route", [pytest.param(True, id="refresh-route"), pytest.param(False, id="page")]
)
def test_a_flood_from_a_shared_address_never_logs_a_user_out(
    crossmint_emulator: CrossmintEmulator, route: bool
) -> None:
    """Made-up secrets from an office NAT block the address; a user there
    whose JWT expired (authentic, merely expired) refreshes as usual."""
    with CrossmintAuth(crossmint_emulator.crossmint(), refresh_failure_limit=5) as auth:
        client = Client(
            CrossmintWSGIMiddleware(app_ok, auth, protect=["/account/:path*"]), use_cookies=False
        )
        office = {"REMOTE_ADDR": OFFICE}
        for _ in range(8):
            client.post(
                "/refresh", json={"refresh": secrets.token_urlsafe(24)}, environ_base=office
            )
        assert crossmint_emulator.requests["refresh"] == 5
        stranger = client.post("/refresh", json={"refresh": "x" * 30}, environ_base=office)
        assert stranger.status_code == 503

        user = crossmint_emulator.create_session("user-at-the-office", jwt_ttl=-30)
        if route:
            answer = client.post(
                "/refresh", json={}, headers={"Cookie": session_cookie(user)}, environ_base=office
            )
            assert answer.status_code == 200, answer.json
            assert answer.json is not None
            assert answer.json["jwt"] != user.jwt
        else:
            answer = client.get(
                "/account", headers={"Cookie": session_cookie(user)}, environ_base=office
            )
            assert answer.status_code == 200
            assert answer.data == b"user user-at-the-office"
        assert crossmint_emulator.requests["refresh"] == 6
        # Still a stranger's address: made-up secrets stay refused.
        stranger = client.post("/refresh", json={"refresh": "y" * 30}, environ_base=office)
        assert stranger.status_code == 503


@pytest.mark.parametrize(
    ("jwt", "vouched"),
    [
        pytest.param("expired", True, id="authentic-expired"),
        pytest.param("live", True, id="authentic-live"),
        pytest.param("forged", False, id="forged"),
        pytest.param("other-project", False, id="other-audience"),
        pytest.param("logged-out", False, id="logged-out"),
        pytest.param(None, False, id="none"),
    ],
)
def test_only_an_authentic_jwt_makes_a_refresh_a_users(
    crossmint_emulator: CrossmintEmulator, jwt: str | None, vouched: bool
) -> None:
    with CrossmintAuth(crossmint_emulator.crossmint(), refresh_failure_limit=1) as auth:
        client = Client(CrossmintWSGIMiddleware(app_ok, auth), use_cookies=False)
        office = {"REMOTE_ADDR": OFFICE}
        client.post("/refresh", json={"refresh": secrets.token_urlsafe(24)}, environ_base=office)
        assert crossmint_emulator.requests["refresh"] == 1  # the address is blocked now
        token = {
            "expired": lambda: crossmint_emulator.issue_jwt("user-7", ttl=-30),
            "live": lambda: crossmint_emulator.issue_jwt("user-7"),
            "forged": lambda: forged_jwt(crossmint_emulator.issue_jwt("user-7", ttl=-30)),
            "other-project": lambda: crossmint_emulator.issue_jwt(
                "user-7", ttl=-30, claims={"aud": "another-project"}
            ),
            "logged-out": lambda: crossmint_emulator.issue_jwt("user-7", ttl=5),
            None: lambda: None,
        }[jwt]()
        if jwt == "logged-out":
            assert token is not None
            client.post("/logout", headers={"Cookie": f"{JWT}={token}"})
        cookie = f"{JWT}={token}" if token else ""
        answer = client.post(
            "/refresh",
            json={"refresh": secrets.token_urlsafe(24)},
            headers={"Cookie": cookie},
            environ_base=office,
        )
        # A user's made-up secret reaches Crossmint (and is refused); a stranger's does not.
        assert answer.status_code == (401 if vouched else 503), answer.json
        assert crossmint_emulator.requests["refresh"] == (2 if vouched else 1)


def forged_jwt(token: str) -> str:
    """The same claims, signed by nobody: the signature of another token."""
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature[::-1]}"


@pytest.mark.anyio
async def test_concurrent_strangers_from_one_address_make_only_the_limit_of_calls(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    """Calls still in flight count: 60 at once from one address make 20 calls, not 35."""
    async with AsyncCrossmintAuth(crossmint_emulator.crossmint()) as auth:
        app = CrossmintASGIMiddleware(asgi_ok, auth, protect=["/account/:path*"])
        transport = httpx.ASGITransport(app=app, client=(OFFICE, 1000))
        statuses: list[int] = []
        crossmint_emulator.set_latency(0.3)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

            async def one() -> None:
                answer = await client.get("/account", headers={"Cookie": random_cookie()})
                statuses.append(answer.status_code)

            async with anyio.create_task_group() as group:
                for _ in range(60):
                    group.start_soon(one)
        crossmint_emulator.set_latency(0)
    assert crossmint_emulator.requests["refresh"] == 20
    assert sorted(statuses) == [401] * 20 + [503] * 40


@pytest.mark.anyio
async def test_refresh_calls_in_flight_are_capped(crossmint_emulator: CrossmintEmulator) -> None:
    """Strangers fill the slots they may take; a user with an expired session
    still gets the one kept for users."""
    user = crossmint_emulator.create_session("user-in-the-crowd", jwt_ttl=-30)
    async with AsyncCrossmintAuth(
        crossmint_emulator.crossmint(), max_concurrent_refreshes=3
    ) as auth:
        app = CrossmintASGIMiddleware(asgi_ok, auth, protect=["/account/:path*"])
        transport = httpx.ASGITransport(app=app)
        statuses: list[int] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            # Keys fetched before Crossmint slows down: only refreshes are slow.
            live = crossmint_emulator.issue_jwt("warm")
            assert (await client.get("/", headers={"Cookie": f"{JWT}={live}"})).status_code == 200
            crossmint_emulator.set_latency(0.5)

            async def one(index: int) -> None:
                # Each from its own address: the per-address bound stays out of it.
                scoped = httpx.ASGITransport(app=app, client=(f"10.1.0.{index}", 1000))
                async with httpx.AsyncClient(transport=scoped, base_url="http://t") as own:
                    answer = await own.get("/account", headers={"Cookie": random_cookie()})
                    statuses.append(answer.status_code)

            async with anyio.create_task_group() as group:
                for index in range(12):
                    group.start_soon(one, index)
                await anyio.sleep(0.2)  # the strangers' calls are in flight
                assert auth.core.upstream_slots.in_flight == 2
                cookie = f"{JWT}={user.jwt}; {REFRESH}={user.refresh_token.secret}"
                mine = await client.get("/account", headers={"Cookie": cookie})
            assert (await client.get("/")).status_code == 200
        crossmint_emulator.set_latency(0)
    assert mine.status_code == 200
    assert crossmint_emulator.requests["refresh"] == 3
    assert sorted(statuses) == [401] * 2 + [503] * 10


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


@pytest.mark.slow
def test_a_flood_from_a_shared_address_through_a_real_server(
    server: Server, emulator: CrossmintEmulator
) -> None:
    """An office NAT: a flood of made-up secrets, concurrent and with Crossmint
    slow, blocks the address; then a user there whose JWT has expired refreshes
    at ``POST /refresh`` and is served, as the browser SDK would ask."""
    emulator.reset()
    # Not OFFICE: the servers live for the module, and another test blocked it.
    office = {"X-Forwarded-For": "93.184.216.40"}
    user = emulator.create_session("user-at-the-office", jwt_ttl=-30)
    emulator.set_latency(0.2)
    try:
        statuses: list[int] = []

        def flood(count: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for _ in range(count):
                    answer = client.post(
                        "/refresh", json={"refresh": secrets.token_urlsafe(24)}, headers=office
                    )
                    statuses.append(answer.status_code)

        threads = [threading.Thread(target=flood, args=(10,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        calls = emulator.requests["refresh"]
        # At most the limit per worker process reached Crossmint, the rest were refused.
        assert 20 <= calls <= 20 * WORKERS[server.url], emulator.requests
        assert sorted(set(statuses)) == [401, 503]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(2 * WORKERS[server.url]):  # every worker is blocked
                stranger = client.post(
                    "/refresh", json={"refresh": secrets.token_urlsafe(24)}, headers=office
                )
                assert stranger.status_code == 503
            assert emulator.requests["refresh"] == calls

            refreshed = client.post(
                "/refresh", json={}, headers={"Cookie": session_cookie(user), **office}
            )
            assert refreshed.status_code == 200, refreshed.text
            jwt = refreshed.json()["jwt"]
            assert jwt != user.jwt
            me = client.get("/api/me", headers={"Cookie": f"{JWT}={jwt}", **office})
            assert me.status_code == 200, me.text
    finally:
        emulator.set_latency(0)
