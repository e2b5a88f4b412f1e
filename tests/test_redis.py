"""The Redis coordinators against a real redis-server, and through the auth drivers."""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis_server import RedisServer, redis_server
from support import free_port
from test_redis_record import cipher_of, lock_key, material, new_secret, result_key

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintAuth,
    CrossmintAuthError,
    CrossmintConfigError,
    ErrorCode,
)
from crossmint_wsgi.coordination import secret_digest
from crossmint_wsgi.models import AuthMaterial
from crossmint_wsgi.redis import AsyncRedisCoordinator, RedisCoordinator
from crossmint_wsgi.redis.exchange import Exchange
from crossmint_wsgi.redis.health import Health
from crossmint_wsgi.redis.protocol import Perform, Settings, Sleep, Turn
from crossmint_wsgi.testing import CrossmintEmulator


@pytest.fixture(scope="module")
def _shared_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def redis(_shared_redis: RedisServer) -> RedisServer:
    """The module's redis-server, emptied for this test."""
    with _shared_redis.client() as client:
        client.flushall()
    return _shared_redis


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill."""
    with redis_server() as server:
        yield server


class Upstream:
    """Stands in for Crossmint's refresh call: counts calls, may wait, fail or block."""

    def __init__(
        self,
        outcome: AuthMaterial | BaseException,
        *,
        delay: float = 0.0,
        gate: threading.Event | None = None,
    ) -> None:
        self.outcome = outcome
        self.delay = delay
        self.gate = gate
        self.calls = 0
        self._lock = threading.Lock()

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def __call__(self) -> AuthMaterial:
        self._count()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        time.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    async def run(self) -> AuthMaterial:
        self._count()
        await anyio.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class SingleUse(Upstream):
    """Crossmint's rotation: a secret's first trade gets the material, every later one
    is refused (and would log its user out)."""

    def __init__(self, outcome: AuthMaterial, gate: threading.Event | None = None) -> None:
        super().__init__(outcome, gate=gate)
        self.traded = False

    def __call__(self) -> AuthMaterial:
        with self._lock:
            first, self.traded = not self.traded, True
        result = super().__call__()
        if not first:
            raise CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refresh token already used")
        return result


class FailureLog(logging.Handler):
    """Which threads logged a Redis failure during the refresh of which secret (give the
    coordinators ``log_interval=0`` so that every failure is logged): a flow runs in the
    thread that called ``refresh``, so it tells that a flow met the failure."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._threads: dict[str, set[int]] = collections.defaultdict(set)

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"Redis is unavailable .* secret ([0-9a-f]{8})", record.getMessage())
        if found is not None:
            self._threads[found.group(1)].add(record.thread or 0)

    def flows(self, secret: str) -> int:
        """How many threads met a Redis failure refreshing ``secret``."""
        return len(self._threads[secret_digest(secret)[:8]])

    def __enter__(self) -> FailureLog:
        logging.getLogger("crossmint_wsgi").addHandler(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        logging.getLogger("crossmint_wsgi").removeHandler(self)


class Flows:
    """``in_threads(count, call)`` in the background; :meth:`join` returns its results."""

    def __init__(self, count: int, call: Callable[[int], object]) -> None:
        self._results: list[object] = []
        self._thread = threading.Thread(
            target=lambda: self._results.extend(in_threads(count, call))
        )
        self._thread.start()

    def join(self) -> list[object]:
        self._thread.join(120)
        assert not self._thread.is_alive(), "the flows did not end"
        return self._results


def in_threads(count: int, call: Callable[[int], object]) -> list[object]:
    """Run ``call(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = call(index)
        except BaseException as error:  # collected and asserted by the caller
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


# -- through Redis -----------------------------------------------------------------------


def redis_contents(server: RedisServer) -> dict[bytes, tuple[bytes, int]]:
    with server.client() as client:
        return {key: (client.get(key) or b"", client.pttl(key)) for key in client.scan_iter()}


def test_redis_never_holds_a_secret_or_token(redis: RedisServer) -> None:
    secret = new_secret()
    upstream = Upstream(material("plain"))
    coordinator = RedisCoordinator.from_url(redis.url)
    assert coordinator.refresh(secret, upstream) == upstream.outcome
    contents = redis_contents(redis)
    # The record, and the link from the new secret back to this one (digests only).
    link = (result_key("new-secret-plain") + ":prev").encode()
    assert set(contents) == {result_key(secret).encode(), link}
    assert contents[link][0] == secret_digest(secret).encode()
    readable = [secret, "jwt-plain", "new-secret-plain", "u@example.com", "user-1"]
    for key, (value, _) in contents.items():
        for text in readable:
            assert text.encode() not in key
            assert text.encode() not in value
    coordinator.close()


@pytest.mark.parametrize(
    ("outcome", "limit_ms"),
    [
        pytest.param(material("a"), 30_000, id="result-lives-for-grace"),
        pytest.param(CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "no"), 5_000, id="rejected"),
        pytest.param(
            CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, "down"), 1_000, id="unavailable"
        ),
    ],
)
def test_lock_and_records_expire(
    redis: RedisServer, outcome: AuthMaterial | CrossmintAuthError, limit_ms: int
) -> None:
    secret = new_secret()
    coordinator = RedisCoordinator.from_url(
        redis.url, grace=30, wait=7, rejected_ttl=5, unavailable_ttl=1
    )
    gate = threading.Event()
    outcomes: list[object] = []

    def refresh() -> None:
        try:
            outcomes.append(coordinator.refresh(secret, Upstream(outcome, gate=gate)))
        except CrossmintAuthError as error:
            outcomes.append(error)

    thread = threading.Thread(target=refresh)
    thread.start()
    lock = lock_key(secret).encode()
    wait_until(lambda: lock in redis_contents(redis), "the winner holds the lock")
    assert 0 < redis_contents(redis)[lock][1] <= 7_000
    gate.set()
    thread.join(30)
    assert outcomes == [outcome]
    contents = redis_contents(redis)
    link = {(result_key("new-secret-a") + ":prev").encode()}
    # Lock released; a result also links its new secret back to this one.
    assert set(contents) - link == {result_key(secret).encode()}
    assert 0 < contents[result_key(secret).encode()][1] <= limit_ms
    coordinator.close()


def test_one_refresh_for_many_threads_in_many_processes(redis: RedisServer) -> None:
    # Each coordinator stands for a worker process: its own grace cache and flights.
    coordinators = [RedisCoordinator.from_url(redis.url) for _ in range(4)]
    upstream = Upstream(material("once"), delay=0.2)
    secret = new_secret()
    results = in_threads(40, lambda i: coordinators[i % 4].refresh(secret, upstream))
    assert upstream.calls == 1
    assert all(result == upstream.outcome for result in results), results
    # A fifth process arriving later reads the result from Redis.
    late = Upstream(material("late"))
    assert RedisCoordinator.from_url(redis.url).refresh(secret, late) == upstream.outcome
    assert late.calls == 0
    for coordinator in coordinators:
        coordinator.close()


def hold_lock(server: RedisServer, secret: str, ttl_ms: int) -> None:
    """Take the lock for ``secret`` as a winner would, then never store a result."""
    with server.client() as client:
        assert client.set(lock_key(secret), "dead", nx=True, px=ttl_ms)


def test_waiter_refreshes_alone_after_a_bounded_wait(redis: RedisServer) -> None:
    secret = new_secret()
    hold_lock(redis, secret, 60_000)  # the winner died and its lock outlives the wait
    upstream = Upstream(material("alone"))
    coordinator = RedisCoordinator.from_url(redis.url, wait=0.3)
    assert coordinator.refresh(secret, upstream) == upstream.outcome
    assert upstream.calls == 1
    # What it got is shared from now on.
    later = Upstream(material("later"))
    assert RedisCoordinator.from_url(redis.url).refresh(secret, later) == upstream.outcome
    assert later.calls == 0


def test_waiters_take_over_an_expired_lock_one_at_a_time(redis: RedisServer) -> None:
    secret = new_secret()
    hold_lock(redis, secret, 300)  # the winner died; its lock expires before the wait ends
    upstream = Upstream(material("takeover"), delay=0.1)
    coordinators = [RedisCoordinator.from_url(redis.url, wait=20) for _ in range(3)]
    results = in_threads(12, lambda i: coordinators[i % 3].refresh(secret, upstream))
    assert upstream.calls == 1
    assert all(result == upstream.outcome for result in results), results


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(ErrorCode.SESSION_EXPIRED, id="rejected"),
        pytest.param(ErrorCode.UPSTREAM_UNAVAILABLE, id="unavailable"),
    ],
)
def test_a_failure_is_shared_not_repeated(redis: RedisServer, code: ErrorCode) -> None:
    secret = new_secret()
    failing = Upstream(CrossmintAuthError(code, "Crossmint said no"), delay=0.2)
    coordinators = [RedisCoordinator.from_url(redis.url) for _ in range(3)]
    results = in_threads(15, lambda i: coordinators[i % 3].refresh(secret, failing))
    assert failing.calls == 1
    assert all(isinstance(r, CrossmintAuthError) and r.code is code for r in results), results
    # Arriving afterwards: the same answer, still without a call.
    again = Upstream(material("again"))
    with pytest.raises(CrossmintAuthError) as raised:
        RedisCoordinator.from_url(redis.url).refresh(secret, again)
    assert raised.value.code is code
    assert again.calls == 0


def test_unavailability_is_retried_once_its_record_expires(redis: RedisServer) -> None:
    secret = new_secret()
    coordinator = RedisCoordinator.from_url(redis.url, unavailable_ttl=0.2)
    down = Upstream(CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, "HTTP 503"))
    with pytest.raises(CrossmintAuthError):
        coordinator.refresh(secret, down)
    with redis.client() as client:
        wait_until(lambda: not client.exists(result_key(secret)), "the record expired")
    back = Upstream(material("back"))
    assert RedisCoordinator.from_url(redis.url).refresh(secret, back) == back.outcome
    assert back.calls == 1


def test_a_result_replaces_a_failure_never_the_reverse(redis: RedisServer) -> None:
    """A slow winner succeeds after a waiter gave up and was refused (rotation)."""
    secret = new_secret()
    gate = threading.Event()
    slow = Upstream(material("slow"), gate=gate)
    winner = RedisCoordinator.from_url(redis.url)
    outcome: list[AuthMaterial] = []
    thread = threading.Thread(target=lambda: outcome.append(winner.refresh(secret, slow)))
    thread.start()
    with redis.client() as client:
        wait_until(
            lambda: bool(client.exists(lock_key(secret))),
            "the winner holds the lock",
        )
    impatient = RedisCoordinator.from_url(redis.url, wait=0.1)
    refused = Upstream(CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "already used"))
    with pytest.raises(CrossmintAuthError):
        impatient.refresh(secret, refused)
    gate.set()
    thread.join(30)
    assert outcome == [slow.outcome]
    late = Upstream(material("late"))
    assert RedisCoordinator.from_url(redis.url).refresh(secret, late) == slow.outcome
    assert late.calls == 0


def test_a_refusal_after_taking_over_a_lost_lock_waits_for_the_winners_result(
    redis: RedisServer,
) -> None:
    """A failover lost the winner's lock: a waiter takes it over and trades the spent
    secret again, which Crossmint refuses; the winner's result, once stored, is the
    answer, and nobody is logged out."""
    secret = new_secret()
    gate = threading.Event()
    first = Upstream(material("first"), gate=gate)
    spent = Upstream(CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "already used"))
    coordinators = [RedisCoordinator.from_url(redis.url, wait=30) for _ in range(2)]
    outcomes: dict[str, object] = {}

    def refresh(name: str, coordinator: RedisCoordinator, upstream: Upstream) -> None:
        try:
            outcomes[name] = coordinator.refresh(secret, upstream)
        except CrossmintAuthError as error:
            outcomes[name] = error

    winner = threading.Thread(target=refresh, args=("winner", coordinators[0], first))
    waiter = threading.Thread(target=refresh, args=("waiter", coordinators[1], spent))
    with redis.client() as client:
        client.config_resetstat()
        winner.start()
        wait_until(lambda: first.calls == 1, "the winner calls upstream")
        waiter.start()

        def evals() -> int:
            return int(client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))

        # The winner's first turn was one EVAL; the waiter's is the second: it saw the lock.
        wait_until(lambda: evals() >= 2, "the waiter took its first turn")
        client.delete(lock_key(secret))  # as a failover before the replica had it
        wait_until(lambda: spent.calls == 1, "the waiter takes the lock over and is refused")
    gate.set()
    winner.join(30)
    waiter.join(30)
    assert outcomes == {"winner": first.outcome, "waiter": first.outcome}
    late = Upstream(material("late"))
    assert RedisCoordinator.from_url(redis.url).refresh(secret, late) == first.outcome
    assert late.calls == 0
    for coordinator in coordinators:
        coordinator.close()


def test_a_record_that_does_not_open_is_replaced(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret = new_secret()
    forged = cipher_of(new_secret()).seal(material("forged"))
    with redis.client() as client:
        client.set(result_key(secret), forged, px=60_000)
    upstream = Upstream(material("real"), delay=0.1)
    coordinators = [RedisCoordinator.from_url(redis.url, wait=30) for _ in range(3)]
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        results = in_threads(9, lambda i: coordinators[i % 3].refresh(secret, upstream))
    assert results == [upstream.outcome] * 9
    assert upstream.calls == 1
    assert "does not open" in caplog.text
    cipher = cipher_of(secret)
    with redis.client() as client:
        assert cipher.unseal(client.get(cipher.key)) == upstream.outcome


def test_a_broken_winner_releases_the_lock(redis: RedisServer) -> None:
    secret = new_secret()
    broken = Upstream(RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        RedisCoordinator.from_url(redis.url).refresh(secret, broken)
    assert redis_contents(redis) == {}
    # The next one does not wait for the lock to expire.
    upstream = Upstream(material("next"))
    assert RedisCoordinator.from_url(redis.url, wait=30).refresh(secret, upstream) == (
        upstream.outcome
    )


def test_one_upstream_refresh_across_auth_objects(
    redis: RedisServer, crossmint_emulator: CrossmintEmulator
) -> None:
    crossmint_emulator.configure(reuse_window=0)
    crossmint = crossmint_emulator.crossmint()
    workers = [
        CrossmintAuth(crossmint, leeway=0, coordinator=RedisCoordinator.from_url(redis.url))
        for _ in range(3)
    ]
    login = crossmint_emulator.create_session("user-r", email="r@example.com", jwt_ttl=-30)
    crossmint_emulator.set_latency(0.05)
    results = in_threads(
        30,
        lambda i: workers[i % 3].get_session(
            jwt=login.jwt, refresh_token=login.refresh_token.secret
        ),
    )
    assert crossmint_emulator.requests["refresh"] == 1
    jwts = {getattr(result, "jwt", result) for result in results}
    assert len(jwts) == 1, results
    assert login.jwt not in jwts
    for worker in workers:
        worker.close()


# -- Redis going away ---------------------------------------------------------------------


def test_redis_killed_mid_test_requests_still_succeed(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # failover_window=0: a Redis failing is taken to be gone at once (test_health covers
    # the window), so the bursts below go on in-process without waiting for it.
    coordinators = [
        RedisCoordinator.from_url(
            own_redis.url, retry_interval=0.2, log_interval=3600, wait=1, failover_window=0
        )
        for _ in range(2)
    ]
    first = Upstream(material("first"), delay=0.05)
    secret = new_secret()
    assert in_threads(10, lambda i: coordinators[i % 2].refresh(secret, first)) == (
        [first.outcome] * 10
    )
    assert first.calls == 1

    # Killed while a waiter polls for a winner's result: the waiter tries Redis again
    # until its wait is over (a failover would be over by then), then refreshes itself.
    gate = threading.Event()
    slow = Upstream(material("slow"), gate=gate)
    waiting_secret = new_secret()
    winner = threading.Thread(target=lambda: coordinators[0].refresh(waiting_secret, slow))
    winner.start()
    with own_redis.client() as client:
        wait_until(
            lambda: bool(client.exists(lock_key(waiting_secret))),
            "the winner holds the lock",
        )
    waiter_upstream = Upstream(material("waiter"))
    waiter_result: list[object] = []
    waiter = threading.Thread(
        target=lambda: waiter_result.append(
            coordinators[1].refresh(waiting_secret, waiter_upstream)
        )
    )
    with caplog.at_level(logging.INFO, "crossmint_wsgi"), own_redis.client() as client:
        client.config_resetstat()
        waiter.start()

        def evals() -> int:
            return int(client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))

        # The waiter's first turn is the first EVAL since the reset: it saw the lock.
        wait_until(lambda: evals() >= 1, "the waiter took its first turn")
        own_redis.kill()
        waiter.join(30)
        gate.set()
        winner.join(30)
        assert waiter_result == [waiter_upstream.outcome]

        # Redis is gone: bursts are coordinated in each process.
        for round_number in range(3):
            down = Upstream(material(f"down-{round_number}"), delay=0.05)
            burst_secret = new_secret()
            results = in_threads(
                20,
                lambda _, s=burst_secret, u=down: coordinators[0].refresh(s, u),  # type: ignore[misc]
            )
            assert results == [down.outcome] * 20
            assert down.calls == 1
            # Past retry_interval: the next round tries Redis again (and fails).
            wait_until(coordinators[0]._health.usable, "Redis is worth trying again")

    # Once per process (coordinator) and log_interval, though every round met it.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert all("Redis is unavailable" in w for w in warnings)
    assert all(secret_digest(waiting_secret)[:8] in w for w in warnings)
    for text in (secret, waiting_secret, "jwt-", "new-secret-"):
        assert text not in caplog.text

    # Back on the same port: coordination across processes resumes.
    caplog.clear()
    own_redis.start()
    with caplog.at_level(logging.INFO, "crossmint_wsgi"):
        back_secret = new_secret()
        back = Upstream(material("back"))
        assert coordinators[0].refresh(back_secret, back) == back.outcome
    other = Upstream(material("other"))
    assert coordinators[1].refresh(back_secret, other) == back.outcome
    assert other.calls == 0
    assert "Redis answers again" in caplog.text


# -- a failover, told from a Redis that is gone ---------------------------------------------

Events = list[tuple[str, float]]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def health_after(events: Events, window: float, clock: Clock) -> Health:
    """A Health (retry_interval 2 s) that saw Redis answer ("ok") or fail ("fail") then."""
    health = Health(retry_interval=2.0, log_interval=3600.0, failover_window=window, clock=clock)
    for what, at in events:
        clock.now = at
        if what == "ok":
            health.succeeded()
        else:
            health.failed(RedisConnectionError("refused"), "0" * 64)
    return health


@pytest.mark.parametrize(
    ("events", "window", "now", "expected"),
    [
        # expected: (a refresh goes through Redis, a failure is ridden out, one-shot flows ask)
        pytest.param([], 20, 0, (True, False, True), id="never-asked"),
        pytest.param([("fail", 0)], 20, 1, (False, False, False), id="never-answered-failed"),
        pytest.param([("fail", 0)], 20, 2, (True, False, True), id="never-answered-retry-due"),
        pytest.param([("ok", 0)], 20, 999, (True, True, True), id="answering"),
        pytest.param([("ok", 0), ("fail", 5)], 20, 6, (True, True, False), id="failing-over"),
        pytest.param(
            [("ok", 0), ("fail", 5), ("fail", 24)], 20, 24.5, (True, True, False),
            id="failing-over-to-the-window's-end",
        ),
        pytest.param(
            [("ok", 0), ("fail", 5), ("fail", 24)], 20, 25.5, (False, False, False),
            id="failing-longer-than-the-window",
        ),
        pytest.param(
            [("ok", 0), ("fail", 5), ("fail", 24)], 20, 26, (True, False, True),
            id="gone-retry-due",
        ),
        pytest.param(
            [("ok", 0), ("fail", 5), ("ok", 10), ("fail", 30)], 20, 45, (True, True, True),
            id="an-answer-restarts-the-window",
        ),
        pytest.param([("ok", 0), ("fail", 5)], 0, 5.5, (False, False, False), id="no-window"),
    ],
)  # fmt: skip
def test_health_rides_out_a_failover_not_a_redis_that_is_gone(
    events: Events, window: float, now: float, expected: tuple[bool, bool, bool]
) -> None:
    clock = Clock()
    health = health_after(events, window, clock)
    clock.now = now
    assert (health.worth_refreshing(), now < health.ride_out_until(), health.usable()) == expected


@pytest.mark.parametrize(
    ("events", "window", "replies", "expected"),
    [
        # replies: (when, what Redis did with a Turn); expected: the flow's next step each time.
        pytest.param([("ok", 0)], 20, [(1, "fail")], ["Sleep"], id="answered-before"),
        pytest.param([], 20, [(1, "fail")], ["Perform"], id="never-answered"),
        pytest.param([("ok", 0), ("fail", 1)], 20, [(30, "fail")], ["Perform"], id="gone"),
        pytest.param(
            [("ok", 0), ("fail", 1)], 20, [(15, "fail"), (20.9, "fail"), (21, "fail")],
            ["Sleep", "Sleep", "Perform"], id="started-mid-failover-until-the-window-ends",
        ),
        pytest.param(
            [("ok", 0)], 20, [(1, "fail"), (10.9, "fail"), (11, "fail")],
            ["Sleep", "Sleep", "Perform"], id="until-its-wait-ends",
        ),
        pytest.param([("ok", 0)], 0, [(1, "fail")], ["Perform"], id="no-window"),
        pytest.param(
            [("ok", 0)], 0, [(1, "held"), (2, "fail"), (10.9, "fail"), (11, "fail")],
            ["Sleep", "Sleep", "Sleep", "Perform"], id="answered-this-flow-no-window",
        ),
    ],
)  # fmt: skip
def test_a_refresh_rides_out_redis_failures_while_health_takes_them_for_a_failover(
    events: Events, window: float, replies: list[tuple[float, str]], expected: list[str]
) -> None:
    clock = Clock()
    health = health_after(events, window, clock)
    settings = Settings(
        grace=30, wait=10, lock_ttl=10, poll_interval=0.5, rejected_ttl=5, unavailable_ttl=1,
        prefix="test:",
    )  # fmt: skip
    clock.now = replies[0][0]
    exchange = Exchange.refresh(new_secret(), settings, health, clock)
    steps = iter(exchange)
    step = next(steps)
    seen = []
    for at, reply in replies:
        assert isinstance(step, Turn)
        clock.now = at
        with exchange.outcome():
            if reply == "fail":
                raise RedisConnectionError("refused")
            exchange.answer((None, False, False))  # another process holds the lock
        step = next(steps)
        seen.append(type(step).__name__)
        if isinstance(step, Sleep):
            with exchange.outcome():
                exchange.answer(None)
            step = next(steps)
    assert seen == expected
    assert isinstance(step, (Turn, Perform))
    exchange.close()


def test_refreshes_starting_while_redis_fails_over_wait_for_it(own_redis: RedisServer) -> None:
    """Redis answered both processes, then fails; each process met the failure (before
    failover_window, Health left Redis alone then, and their refreshes went on alone:
    two trades of a single-use secret). Refreshes starting now wait for Redis, which
    comes back (as a replica promoted), and share one refresh."""
    coordinators = [
        RedisCoordinator.from_url(own_redis.url, wait=60, failover_window=60, log_interval=0)
        for _ in range(2)
    ]
    for index, coordinator in enumerate(coordinators):
        coordinator.refresh(new_secret(), Upstream(material(f"warm-{index}")))
    probe, secret = new_secret(), new_secret()
    upstreams = {probe: SingleUse(material("probe")), secret: SingleUse(material("shared"))}

    def refreshing(presented: str) -> Flows:
        return Flows(2, lambda i: coordinators[i].refresh(presented, upstreams[presented]))

    with FailureLog() as failures:
        own_redis.kill()
        try:
            probes = refreshing(probe)
            wait_until(lambda: failures.flows(probe) == 2, "each process met the failure")
            shared = refreshing(secret)
            wait_until(lambda: failures.flows(secret) == 2, "the new refreshes met it too")
            assert upstreams[secret].calls == 0  # nobody refreshed on its own
        finally:
            own_redis.start()
        assert probes.join() == [upstreams[probe].outcome] * 2
        assert shared.join() == [upstreams[secret].outcome] * 2
    assert (upstreams[probe].calls, upstreams[secret].calls) == (1, 1)
    for coordinator in coordinators:
        coordinator.close()


@pytest.mark.anyio
async def test_async_refresh_starting_while_redis_fails_over_waits_for_it(
    own_redis: RedisServer,
) -> None:
    coordinator = AsyncRedisCoordinator.from_url(
        own_redis.url, wait=60, failover_window=60, log_interval=0
    )
    await coordinator.refresh(new_secret(), Upstream(material("warm")).run)
    probe, secret = new_secret(), new_secret()
    upstreams = {probe: Upstream(material("probe")), secret: Upstream(material("after"))}
    results: dict[str, AuthMaterial] = {}

    async def refresh(presented: str) -> None:
        results[presented] = await coordinator.refresh(presented, upstreams[presented].run)

    async def met_the_failure(presented: str) -> None:
        def met() -> bool:
            return failures.flows(presented) > 0

        await anyio.to_thread.run_sync(wait_until, met, "the refresh met the failure")

    with FailureLog() as failures, anyio.fail_after(60):
        own_redis.kill()
        async with anyio.create_task_group() as group:
            try:
                group.start_soon(refresh, probe)
                await met_the_failure(probe)  # this process knows Redis is failing
                group.start_soon(refresh, secret)
                await met_the_failure(secret)
                assert upstreams[secret].calls == 0
            finally:
                await anyio.to_thread.run_sync(own_redis.start)
    assert results == {presented: upstreams[presented].outcome for presented in upstreams}
    # Refreshed through Redis once it was back: another process finds the result.
    late = Upstream(material("late"))
    assert RedisCoordinator.from_url(own_redis.url).refresh(secret, late) == results[secret]
    assert late.calls == 0
    await coordinator.aclose()


@pytest.mark.parametrize("coordinator", [RedisCoordinator, AsyncRedisCoordinator])
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("wait", -1, id="wait-negative"),
        pytest.param("failover_window", -1, id="failover-window-negative"),
        pytest.param("poll_interval", 0, id="poll-zero"),
        pytest.param("lock_ttl", 0, id="lock-ttl-zero"),
        pytest.param("grace", "30", id="grace-text"),
        pytest.param("max_entries", 0, id="no-entries"),
    ],
)
def test_a_wrong_setting_names_itself(
    coordinator: type[RedisCoordinator | AsyncRedisCoordinator], setting: str, value: object
) -> None:
    with pytest.raises(CrossmintConfigError) as caught:
        coordinator.from_url("redis://127.0.0.1:1/0", **{setting: value})
    assert caught.value.setting == setting
    assert str(caught.value).startswith(setting)


def test_from_url_checks_the_url_but_does_not_connect() -> None:
    with pytest.raises(ValueError, match="scheme"):
        RedisCoordinator.from_url("http://127.0.0.1:1/")
    with pytest.raises(CrossmintConfigError, match="scheme") as caught:
        AsyncRedisCoordinator.from_url("mysql://user:hunter2@127.0.0.1:1/")
    assert caught.value.setting == "url"
    assert "hunter2" not in str(caught.value)
    # Nothing listens there; construction is fine and a refresh goes on in-process.
    coordinator = RedisCoordinator.from_url(f"redis://127.0.0.1:{free_port()}/0")
    upstream = Upstream(material("offline"))
    assert coordinator.refresh(new_secret(), upstream) == upstream.outcome
    assert upstream.calls == 1


# -- async, on asyncio and trio -----------------------------------------------------------


@pytest.mark.anyio
async def test_async_one_refresh_for_many_tasks_in_many_processes(redis: RedisServer) -> None:
    coordinators = [AsyncRedisCoordinator.from_url(redis.url) for _ in range(3)]
    upstream = Upstream(material("async"), delay=0.2)
    secret = new_secret()
    results: list[AuthMaterial] = []

    async def one(coordinator: AsyncRedisCoordinator) -> None:
        results.append(await coordinator.refresh(secret, upstream.run))

    async with anyio.create_task_group() as group:
        for i in range(30):
            group.start_soon(one, coordinators[i % 3])
    assert upstream.calls == 1
    assert results == [upstream.outcome] * 30
    for coordinator in coordinators:
        await coordinator.aclose()


@pytest.mark.anyio
async def test_sync_and_async_workers_share_records(redis: RedisServer) -> None:
    secret = new_secret()
    upstream = Upstream(material("shared"))
    await anyio.to_thread.run_sync(RedisCoordinator.from_url(redis.url).refresh, secret, upstream)
    coordinator = AsyncRedisCoordinator.from_url(redis.url)
    late = Upstream(material("late"))
    assert await coordinator.refresh(secret, late.run) == upstream.outcome
    assert late.calls == 0
    await coordinator.aclose()


@pytest.mark.anyio
async def test_async_failure_is_shared(redis: RedisServer) -> None:
    secret = new_secret()
    coordinators = [AsyncRedisCoordinator.from_url(redis.url) for _ in range(2)]
    failing = Upstream(CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "no"), delay=0.1)
    codes: list[ErrorCode] = []

    async def one(coordinator: AsyncRedisCoordinator) -> None:
        try:
            await coordinator.refresh(secret, failing.run)
        except CrossmintAuthError as error:
            codes.append(error.code)

    async with anyio.create_task_group() as group:
        for i in range(10):
            group.start_soon(one, coordinators[i % 2])
    assert failing.calls == 1
    assert codes == [ErrorCode.SESSION_EXPIRED] * 10
    for coordinator in coordinators:
        await coordinator.aclose()


@pytest.mark.anyio
async def test_async_cancelled_winner_releases_the_lock(redis: RedisServer) -> None:
    secret = new_secret()
    coordinator = AsyncRedisCoordinator.from_url(redis.url)
    started = anyio.Event()

    async def never() -> AuthMaterial:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with redis.client() as client:
        async with anyio.create_task_group() as group:
            group.start_soon(coordinator.refresh, secret, never)
            await started.wait()
            assert client.exists(lock_key(secret))
            group.cancel_scope.cancel()
        assert not client.exists(lock_key(secret))
    upstream = Upstream(material("after"))
    assert await coordinator.refresh(secret, upstream.run) == upstream.outcome
    await coordinator.aclose()


@pytest.mark.anyio
async def test_async_without_redis_coordinates_in_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    coordinator = AsyncRedisCoordinator.from_url(f"redis://127.0.0.1:{free_port()}/0")
    upstream = Upstream(material("local"), delay=0.1)
    secret = new_secret()
    results: list[AuthMaterial] = []

    async def one() -> None:
        results.append(await coordinator.refresh(secret, upstream.run))

    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(one)
    assert upstream.calls == 1
    assert results == [upstream.outcome] * 20
    assert "Redis is unavailable" in caplog.text
    assert secret not in caplog.text
    await coordinator.aclose()


@pytest.mark.anyio
async def test_async_one_upstream_refresh_across_auth_objects(
    redis: RedisServer, crossmint_emulator: CrossmintEmulator
) -> None:
    crossmint_emulator.configure(reuse_window=0)
    crossmint = crossmint_emulator.crossmint()
    coordinators = [AsyncRedisCoordinator.from_url(redis.url) for _ in range(3)]
    workers = [AsyncCrossmintAuth(crossmint, leeway=0, coordinator=c) for c in coordinators]
    login = crossmint_emulator.create_session("user-a", jwt_ttl=-30)
    crossmint_emulator.set_latency(0.05)
    jwts: list[str] = []

    async def one(worker: AsyncCrossmintAuth) -> None:
        session = await worker.get_session(jwt=login.jwt, refresh_token=login.refresh_token.secret)
        jwts.append(session.jwt)

    async with anyio.create_task_group() as group:
        for i in range(30):
            group.start_soon(one, workers[i % 3])
    assert crossmint_emulator.requests["refresh"] == 1
    assert len(jwts) == 30
    assert len(set(jwts)) == 1
    assert login.jwt not in jwts
    for worker, coordinator in zip(workers, coordinators, strict=True):
        await worker.aclose()
        await coordinator.aclose()


def test_redis_server_helper_fails_clearly_without_the_program(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    import support

    monkeypatch.setattr(support, "VENV_BIN", tmp_path)
    with pytest.raises(AssertionError, match="redis-server"):
        RedisServer(tmp_path)


# -- logout ends the chain in every process -------------------------------------------------


def tombstones(server: RedisServer) -> set[bytes]:
    return {key for key in redis_contents(server) if key.endswith(b":revoked")}


@pytest.mark.parametrize("presented", ["newest", "oldest"])
def test_a_logout_in_one_process_ends_the_chain_in_all(redis: RedisServer, presented: str) -> None:
    """S1 -> S2 in process A, read by B; a logout in A ends S1 and S2 for B and a newcomer C."""
    a, b, c = (RedisCoordinator.from_url(redis.url) for _ in range(3))
    s1 = new_secret()
    upstream = Upstream(material(presented))
    s2 = upstream.outcome.refresh_token.secret  # type: ignore[union-attr]
    assert a.refresh(s1, upstream) == upstream.outcome
    assert b.refresh(s1, Upstream(material("never"))) == upstream.outcome  # from Redis
    successors = a.revoke(s2 if presented == "newest" else s1)
    assert successors == ([] if presented == "newest" else [s2])
    assert tombstones(redis) == {(result_key(s) + ":revoked").encode() for s in (s1, s2)}
    never = Upstream(material("never"))
    for process in (a, b, c):
        for stolen in (s1, s2):
            with pytest.raises(CrossmintAuthError) as caught:
                process.refresh(stolen, never)
            assert caught.value.code is ErrorCode.SESSION_EXPIRED
    assert never.calls == 0
    for process in (a, b, c):
        process.close()


def test_a_logout_while_redis_is_down_still_ends_the_session_here(
    own_redis: RedisServer,
) -> None:
    coordinator = RedisCoordinator.from_url(own_redis.url)
    s1 = new_secret()
    upstream = Upstream(material("down"))
    coordinator.refresh(s1, upstream)
    own_redis.kill()
    assert coordinator.revoke(s1) == ["new-secret-down"]
    with pytest.raises(CrossmintAuthError):
        coordinator.refresh(s1, Upstream(material("never")))
    coordinator.close()


@pytest.mark.anyio
async def test_async_logout_ends_the_chain_for_sync_workers_too(redis: RedisServer) -> None:
    sync_worker = RedisCoordinator.from_url(redis.url)
    async_worker = AsyncRedisCoordinator.from_url(redis.url)
    s1 = new_secret()
    upstream = Upstream(material("mixed"))
    assert sync_worker.refresh(s1, upstream) == upstream.outcome
    assert await async_worker.refresh(s1, Upstream(material("never")).run) == upstream.outcome
    assert await async_worker.revoke("new-secret-mixed") == []
    with pytest.raises(CrossmintAuthError):
        sync_worker.refresh(s1, Upstream(material("never")))
    with pytest.raises(CrossmintAuthError):
        await async_worker.refresh(s1, Upstream(material("never")).run)
    sync_worker.close()
    await async_worker.aclose()
