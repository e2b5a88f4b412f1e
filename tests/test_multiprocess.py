"""Several worker processes: the Flask example under gunicorn, with Redis, with the
host store alone (the default), and with neither.

An expired session arrives many times at once and is spread over four
gunicorn workers. Refresh tokens are single use (``reuse_window=0``): through
Redis, or through the host store that the workers of one host share by
default, the workers make one upstream refresh between them and every request
keeps its session. With the host store turned off and no Redis, each worker
refreshes on its own and the losers are logged out; that run is reported, not
asserted.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis_server import RedisServer, redis_server
from support import ROOT, Server, free_port, require_program, run_server

from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

WORKERS = 4
THREADS = 8
BURST = 64
LATENCY = 0.1
JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"
ACCESS = re.compile(r"^ACCESS pid=<?(\d+)>? path=(\S+) status=(\d+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrossmintEmulator]:
    """An emulator in this process for the workers; refresh tokens are single use."""
    with CrossmintEmulator(jwt_ttl=30, reuse_window=0) as instance:
        yield instance


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@contextlib.contextmanager
def gunicorn_server(
    emulator: CrossmintEmulator, redis_url: str | None, host_store: str | None = None
) -> Iterator[Server]:
    port = free_port()
    env = {"CROSSMINT_EMULATOR_URL": emulator.url, "CROSSMINT_REDIS_URL": redis_url or ""}
    if host_store is not None:
        env["CROSSMINT_HOST_STORE"] = host_store
    command = [
        require_program("gunicorn"),
        "--chdir",
        str(ROOT / "examples"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        "--threads",
        str(THREADS),
        # The app (and its coordinator) is built before the fork, as many deployments do.
        "--preload",
        "--graceful-timeout",
        "2",
        "--access-logfile",
        "-",
        "--access-logformat",
        "ACCESS pid=%(p)s path=%(U)s status=%(s)s",
        "flask_app:app",
    ]
    with run_server(command, port=port, env=env) as server:
        yield server


@dataclass
class Burst:
    statuses: collections.Counter[int]
    user_ids: collections.Counter[str | None]
    new_jwts: set[str]
    refreshes: int
    workers: int


def new_jwt(set_cookies: list[str]) -> str | None:
    for header in set_cookies:
        name, _, rest = header.partition("=")
        if name == JWT_COOKIE:
            return rest.split(";", 1)[0] or None
    return None


def burst(emulator: CrossmintEmulator, server: Server) -> Burst:
    """``BURST`` requests for /api/me at once, all with one expired session."""
    emulator.reset()
    login = emulator.create_session("user-mp", email="mp@example.com", jwt_ttl=-30)
    cookie = f"{JWT_COOKIE}={login.jwt}; {REFRESH_COOKIE}={login.refresh_token.secret}"
    emulator.set_latency(LATENCY)
    log_before = len(server.output())
    port = int(server.url.rsplit(":", 1)[1])
    barrier = threading.Barrier(BURST)

    def request(_: int) -> tuple[int, str | None, str | None]:
        # http.client: a fresh connection per request, cheap to set up for 64 threads.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            barrier.wait()
            connection.request("GET", "/api/me", headers={"Cookie": cookie})
            response = connection.getresponse()
            body = json.loads(response.read())
            jwt = new_jwt(response.headers.get_all("Set-Cookie") or [])
            return response.status, body.get("user_id"), jwt
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(request, range(BURST)))
    emulator.set_latency(0)
    refreshes = emulator.requests["refresh"]
    # Access log lines are written after the answer: wait for all of them.
    deadline = time.monotonic() + 10
    while True:
        lines = ACCESS.findall(server.output()[log_before:])
        pids = [pid for pid, path, _ in lines if path == "/api/me"]
        if len(pids) >= BURST or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return Burst(
        statuses=collections.Counter(status for status, _, _ in answers),
        user_ids=collections.Counter(user_id for _, user_id, _ in answers),
        new_jwts={jwt for _, _, jwt in answers if jwt},
        refreshes=refreshes,
        workers=len(set(pids)),
    )


def report(label: str, result: Burst) -> str:
    return (
        f"\n[multiprocess] {label}: {BURST} requests over {result.workers} of {WORKERS}"
        f" workers -> {result.refreshes} upstream refreshes, {result.statuses[200]} kept"
        f" their session, {BURST - result.statuses[200]} were logged out"
        f" (statuses {dict(result.statuses)})"
    )


def spread_burst(emulator: CrossmintEmulator, server: Server) -> Burst:
    # The kernel may hand a whole burst to one worker on a busy machine: that proves
    # nothing either way, so burst again (a new session each time) until it spreads.
    for _ in range(5):
        result = burst(emulator, server)
        if result.workers > 1:
            break
    assert result.workers > 1, f"five bursts reached {result.workers} worker(s) only"
    return result


def assert_one_refresh_for_all(result: Burst) -> None:
    assert result.refreshes == 1, result
    assert result.statuses == {200: BURST}, result  # nobody was logged out
    assert result.user_ids == {"user-mp": BURST}
    assert len(result.new_jwts) == 1, result  # the same new session everywhere


def test_workers_share_one_refresh_through_redis(
    emulator: CrossmintEmulator, redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with gunicorn_server(emulator, redis.url) as server:
        result = spread_burst(emulator, server)
    with capsys.disabled():
        print(report("with Redis", result))
    assert_one_refresh_for_all(result)


def test_workers_share_one_refresh_through_the_host_store(
    emulator: CrossmintEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The default deployment: no Redis, nothing configured."""
    with gunicorn_server(emulator, None, str(tmp_path)) as server:
        result = spread_burst(emulator, server)
    with capsys.disabled():
        print(report("host store, no Redis", result))
    assert_one_refresh_for_all(result)


def test_workers_with_nothing_shared_are_reported(
    emulator: CrossmintEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    with gunicorn_server(emulator, None, "off") as server:
        result = burst(emulator, server)
    with capsys.disabled():
        print(report("host store off, no Redis", result))
    # Each request got an answer: its session, or a clean refusal.
    assert set(result.statuses) <= {200, 401}, result
