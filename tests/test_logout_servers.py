"""A logout ends the session, through real servers: the stolen previous secret, the
stale secret of a tab that missed a rotation, and the logged-out one itself get
nothing afterwards, from any worker.

Servers: the raw ASGI example under uvicorn and hypercorn (trio), the Flask
example under gunicorn with two workers sharing a real redis-server, and under
gunicorn with four workers and no Redis (the host store, the default).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from redis_server import RedisServer, redis_server
from support import Server, require_program, serve

from crossmint_wsgi import CrossmintAuth, CrossmintAuthError
from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

REFRESH = "crossmint-refresh-token"

SERVERS = {
    "raw-asgi-uvicorn": ["uvicorn", "--app-dir", "examples", "raw_asgi:app", "--port", "{port}"],
    "raw-asgi-hypercorn-trio": [
        "hypercorn",
        "-k",
        "trio",
        "--bind",
        "127.0.0.1:{port}",
        "examples/raw_asgi.py:app",
    ],
    "flask-gunicorn-2-workers-redis": [
        "gunicorn",
        "--chdir",
        "examples",
        "--workers",
        "2",
        "--bind",
        "127.0.0.1:{port}",
        "flask_app:app",
    ],
    "flask-gunicorn-4-workers-host-store": [
        "gunicorn",
        "--chdir",
        "examples",
        "--workers",
        "4",
        "--bind",
        "127.0.0.1:{port}",
        "flask_app:app",
    ],
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrossmintEmulator]:
    with CrossmintEmulator(reuse_window=0) as instance:
        yield instance


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module", params=list(SERVERS))
def server(
    request: pytest.FixtureRequest, emulator: CrossmintEmulator, shared_redis: RedisServer
) -> Iterator[Server]:
    program, *args = SERVERS[request.param]

    def command(port: int) -> list[str]:
        return [require_program(program), *(arg.replace("{port}", str(port)) for arg in args)]

    def env(port: int) -> dict[str, str]:
        env = {"CROSSMINT_EMULATOR_URL": emulator.url, "PORT": str(port)}
        if request.param.endswith("-redis"):
            env["CROSSMINT_REDIS_URL"] = shared_redis.url
        return env

    with serve(command, env=env) as running:
        yield running


def refresh(client: httpx.Client, secret: str) -> httpx.Response:
    # No cookie jar: each request carries exactly what the test gives it.
    return client.post("/refresh", json={"refresh": secret}, headers={"Cookie": ""})


@pytest.mark.parametrize("logout_with", ["current", "previous"])
def test_logout_ends_every_secret_of_the_session(
    server: Server, emulator: CrossmintEmulator, logout_with: str
) -> None:
    login = emulator.create_session("user-logout", jwt_ttl=-30)
    s1 = login.refresh_token.secret
    # Several connections: with gunicorn, requests land on both workers.
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(4)]
    try:
        first = refresh(clients[0], s1)
        assert first.status_code == 200, first.text
        s2 = first.cookies[REFRESH]
        # Within the grace window every worker still hands S1's holder the new pair.
        assert all(refresh(client, s1).status_code == 200 for client in clients)

        cookie = f"{REFRESH}={s2 if logout_with == 'current' else s1}"
        answer = clients[1].post("/logout", headers={"Cookie": cookie})
        assert answer.status_code == 200

        for client in clients:
            for stolen in (s1, s2):
                refused = refresh(client, stolen)
                assert refused.status_code == 401, (stolen == s1, refused.text)
                assert refused.json()["error"] == "SESSION_EXPIRED"
        # Crossmint itself was told: the newest secret is dead there too.
        with CrossmintAuth(emulator.crossmint()) as fresh, pytest.raises(CrossmintAuthError):
            fresh.refresh(s2)
    finally:
        for client in clients:
            client.close()


def test_a_logged_out_jwt_is_refused_by_every_worker_within_a_second(
    server: Server, emulator: CrossmintEmulator
) -> None:
    login = emulator.create_session("user-logout-jwt")
    cookie = f"crossmint-jwt={login.jwt}"
    # Many connections, many requests: the JWT is verified and cached in every worker.
    clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(8)]
    try:
        for _ in range(3):
            for client in clients:
                answer = client.get("/api/me", headers={"Cookie": cookie})
                assert answer.status_code == 200, answer.text
        out = clients[0].post(
            "/logout", headers={"Cookie": f"{cookie}; {REFRESH}={login.refresh_token.secret}"}
        )
        assert out.status_code == 200
        start = time.monotonic()
        served_after = 0
        while True:
            statuses = [
                client.get("/api/me", headers={"Cookie": cookie}).status_code for client in clients
            ]
            if set(statuses) == {401}:
                break
            served_after += statuses.count(200)
            assert time.monotonic() - start < 10, statuses
            time.sleep(0.02)
        delay = time.monotonic() - start
        print(
            f"\n[logout] {server.url}: refused everywhere after {delay:.2f} s,"
            f" {served_after} requests served meanwhile"
        )
        assert delay < 1.5, (delay, served_after)
    finally:
        for client in clients:
            client.close()
