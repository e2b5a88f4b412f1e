"""Redis with the host store beneath it, on a real redis-server that dies and comes back.

Each auth stands for one worker process; auths given the same host store
directory are workers of one host. Refresh secrets are single use
(``reuse_window=0``), so a second trade of one shows up as a logged-out user.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, redis_server
from support import refused, until

from crossmint_wsgi import CrossmintAuth, CrossmintAuthError, ErrorCode
from crossmint_wsgi.redis import RedisCoordinator
from crossmint_wsgi.testing import CrossmintEmulator


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def emulator(crossmint_emulator: CrossmintEmulator) -> CrossmintEmulator:
    crossmint_emulator.configure(reuse_window=0)
    return crossmint_emulator


def worker(emulator: CrossmintEmulator, redis: RedisServer, host: Path) -> CrossmintAuth:
    """One worker process of the host whose store is in ``host``, on the shared Redis."""
    return CrossmintAuth(
        emulator.crossmint(),
        coordinator=RedisCoordinator.from_url(redis.url),
        host_store=host,
        leeway=0,
    )


def test_with_redis_down_the_workers_of_a_host_still_trade_once(
    emulator: CrossmintEmulator, own_redis: RedisServer, tmp_path: Path
) -> None:
    auths = [worker(emulator, own_redis, tmp_path / "host-1") for _ in range(4)]
    # Each worker has talked to Redis once, then Redis dies and stays dead.
    for auth in auths:
        auth.refresh(emulator.one_time_secret("warm"))
    own_redis.kill()
    login = emulator.create_session("user-r", jwt_ttl=-30)
    emulator.set_latency(0.3)
    before = emulator.requests["refresh"]
    barrier = threading.Barrier(len(auths))

    def refresh(auth: CrossmintAuth) -> str:
        barrier.wait()
        return auth.refresh(login.refresh_token.secret).refresh_token.secret

    with concurrent.futures.ThreadPoolExecutor(len(auths)) as pool:
        secrets = list(pool.map(refresh, auths))
    emulator.set_latency(0)
    assert emulator.requests["refresh"] - before == 1
    assert len(set(secrets)) == 1  # nobody logged out
    for auth in auths:
        auth.close()


def test_a_logout_while_redis_is_down_sticks_here_and_reaches_other_hosts_once_it_is_back(
    emulator: CrossmintEmulator,
    own_redis: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    login = emulator.create_session("user-r")
    here = [worker(emulator, own_redis, tmp_path / "host-1") for _ in range(2)]
    there = worker(emulator, own_redis, tmp_path / "host-2")
    for auth in [*here, there]:
        assert auth.verify_crossmint_jwt(login.jwt)["sub"] == "user-r"  # listening, cached
    own_redis.kill()
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        here[0].logout(jwt=login.jwt, refresh_token=login.refresh_token.secret)
        # This host: every worker, at once, with no Redis.
        assert until(lambda: refused(here[1], login.jwt)) < 1.0
        assert not refused(there, login.jwt)  # the other host cannot know yet
        own_redis.start()
        # Redis back: the held-back logout is told to every host.
        delay = until(lambda: refused(there, login.jwt))
    assert delay < 3.0, delay
    assert "cannot reach the other hosts yet" in caplog.text
    assert "logout of JWT" in caplog.text or "told to every host" in caplog.text
    assert login.jwt not in caplog.text
    assert login.refresh_token.secret not in caplog.text
    for auth in [*here, there]:
        auth.close()


def test_with_redis_down_a_refusal_across_hosts_keeps_the_session(
    emulator: CrossmintEmulator, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Two hosts trade one secret while Redis is dead: Crossmint refuses the second
    trade, but the browser holds the new pair from the first host: no logout."""
    hosts = [worker(emulator, own_redis, tmp_path / f"host-{i}") for i in (1, 2)]
    for auth in hosts:
        auth.refresh(emulator.one_time_secret("warm"))
    own_redis.kill()
    login = emulator.create_session("user-r", jwt_ttl=-30)
    cookies = {"crossmint-jwt": login.jwt, "crossmint-refresh-token": login.refresh_token.secret}
    emulator.set_latency(0.3)
    barrier = threading.Barrier(len(hosts))

    def session(auth: CrossmintAuth) -> ErrorCode | str:
        barrier.wait()
        try:
            return auth.get_session(cookies).user_id
        except CrossmintAuthError as error:
            return error.code

    with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
        outcomes = list(map(str, pool.map(session, hosts)))
    emulator.set_latency(0)
    assert sorted(outcomes) == ["UPSTREAM_UNAVAILABLE", "user-r"]  # kept, not SESSION_EXPIRED
    # The losing host answers the same old cookies at once for a while: no second ride-out.
    loser = hosts[outcomes.index("UPSTREAM_UNAVAILABLE")]
    start = time.monotonic()
    with pytest.raises(CrossmintAuthError) as again:
        loser.get_session(cookies)
    assert again.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert time.monotonic() - start < 1.0
    # A made-up secret with no authentic JWT is a stranger's: refused as it is.
    with pytest.raises(CrossmintAuthError) as caught:
        hosts[0].get_session({"crossmint-refresh-token": "made-up-secret-0001"})
    assert caught.value.code is ErrorCode.SESSION_EXPIRED
    for auth in hosts:
        auth.close()
