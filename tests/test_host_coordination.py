"""The host coordinator against the emulator: auths that share a host store behave as
the worker processes of one host (each its own in-process caches, one SQLite file).

Refresh secrets are single use here (``reuse_window=0``): a second trade of a
secret is refused, so a double refresh shows up as a logged-out user.
Processes proper are in ``test_multiprocess`` (gunicorn ``-w 4``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import refused, until

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    AuthMaterial,
    CrossmintAuth,
    CrossmintAuthError,
    ErrorCode,
)
from crossmint_wsgi.host_coordination import HostCoordinator, HostSettings
from crossmint_wsgi.host_store import HostStore
from crossmint_wsgi.testing import CrossmintEmulator

WORKERS = 4


@pytest.fixture
def emulator(crossmint_emulator: CrossmintEmulator) -> CrossmintEmulator:
    crossmint_emulator.configure(reuse_window=0)
    return crossmint_emulator


def workers(emulator: CrossmintEmulator, n: int = WORKERS, **settings: Any) -> list[CrossmintAuth]:
    """``n`` auths on one host store: the workers of one host."""
    return [CrossmintAuth(emulator.crossmint(), leeway=0, **settings) for _ in range(n)]


# -- refreshes ------------------------------------------------------------------------------


def test_workers_of_a_host_trade_a_secret_once(emulator: CrossmintEmulator) -> None:
    login = emulator.create_session("user-h", jwt_ttl=-30)
    emulator.set_latency(0.2)
    auths = workers(emulator)
    barrier = threading.Barrier(WORKERS * 4)

    def refresh(index: int) -> str:
        barrier.wait()
        return auths[index % WORKERS].refresh(login.refresh_token.secret).refresh_token.secret

    with concurrent.futures.ThreadPoolExecutor(WORKERS * 4) as pool:
        secrets = list(pool.map(refresh, range(WORKERS * 4)))
    assert emulator.requests["refresh"] == 1
    assert len(set(secrets)) == 1
    # A worker that comes late, inside the grace window, gets the same pair.
    late = CrossmintAuth(emulator.crossmint())
    assert late.refresh(login.refresh_token.secret).refresh_token.secret == secrets[0]
    assert emulator.requests["refresh"] == 1


def test_without_the_host_store_the_workers_log_each_other_out(
    emulator: CrossmintEmulator,
) -> None:
    """What the host store prevents: each worker trades the secret, all but one are refused."""
    login = emulator.create_session("user-h", jwt_ttl=-30)
    emulator.set_latency(0.2)
    auths = workers(emulator, host_store=False)
    barrier = threading.Barrier(WORKERS)

    def refresh(auth: CrossmintAuth) -> ErrorCode | None:
        barrier.wait()
        try:
            auth.refresh(login.refresh_token.secret)
        except CrossmintAuthError as error:
            return error.code
        return None

    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(refresh, auths))
    assert emulator.requests["refresh"] == WORKERS
    assert outcomes.count(ErrorCode.SESSION_EXPIRED) == WORKERS - 1


@pytest.mark.anyio
async def test_async_workers_of_a_host_trade_a_secret_once(emulator: CrossmintEmulator) -> None:
    login = emulator.create_session("user-h", jwt_ttl=-30)
    emulator.set_latency(0.2)
    auths = [AsyncCrossmintAuth(emulator.crossmint(), leeway=0) for _ in range(WORKERS)]
    secrets: list[str] = []

    async def refresh(auth: AsyncCrossmintAuth) -> None:
        secrets.append((await auth.refresh(login.refresh_token.secret)).refresh_token.secret)

    async with anyio.create_task_group() as group:
        for auth in auths * 3:
            group.start_soon(refresh, auth)
    assert emulator.requests["refresh"] == 1
    assert len(secrets) == WORKERS * 3
    assert len(set(secrets)) == 1
    for auth in auths:
        await auth.aclose()


def test_an_outage_is_shared_with_the_waiters_only(emulator: CrossmintEmulator) -> None:
    """Crossmint unavailable: the workers waiting share the failure, the next request retries."""
    login = emulator.create_session("user-h", jwt_ttl=-30)
    first, second = workers(emulator, 2)
    emulator.fail_next(1, status=503, endpoint="refresh")
    with pytest.raises(CrossmintAuthError) as caught:
        first.refresh(login.refresh_token.secret)
    assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert second.refresh(login.refresh_token.secret).jwt
    assert emulator.requests["refresh"] == 2


# -- the key set ------------------------------------------------------------------------------


@pytest.mark.parametrize(("host_store", "verifies"), [(True, True), (False, False)])
def test_a_worker_started_during_an_outage_verifies_with_the_hosts_keys(
    emulator: CrossmintEmulator, host_store: bool, verifies: bool
) -> None:
    login = emulator.create_session("user-h")
    (early,) = workers(emulator, 1, host_store=host_store)
    assert early.verify_crossmint_jwt(login.jwt)["sub"] == "user-h"
    emulator.set_down(True)
    # A worker restarted by max_requests, a deploy: it never fetched the key set.
    (fresh,) = workers(emulator, 1, host_store=host_store)
    if verifies:
        assert fresh.verify_crossmint_jwt(login.jwt)["sub"] == "user-h"
        cookies = {
            "crossmint-jwt": login.jwt,
            "crossmint-refresh-token": login.refresh_token.secret,
        }
        answer = fresh.handle_custom_refresh(cookies, body=b"{}")
        assert answer.status == 200  # the browser SDK keeps its user
    else:
        with pytest.raises(CrossmintAuthError) as caught:
            fresh.verify_crossmint_jwt(login.jwt)
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE


# -- logouts ----------------------------------------------------------------------------------


def test_a_logout_reaches_every_worker_of_the_host_within_a_second(
    emulator: CrossmintEmulator,
) -> None:
    login = emulator.create_session("user-h")
    auths = workers(emulator)
    for auth in auths:
        assert auth.verify_crossmint_jwt(login.jwt)["sub"] == "user-h"  # cached everywhere
    auths[0].logout(jwt=login.jwt, refresh_token=login.refresh_token.secret)
    delays = [until(lambda auth=auth: refused(auth, login.jwt)) for auth in auths[1:]]
    assert max(delays) < 1.0, delays
    # The secret too: no worker trades it, none serves it from its grace cache.
    for auth in auths:
        with pytest.raises(CrossmintAuthError) as caught:
            auth.refresh(login.refresh_token.secret)
        assert caught.value.code is ErrorCode.SESSION_EXPIRED
    assert emulator.requests["refresh"] == 0


def test_a_logout_with_the_newest_secret_ends_the_older_ones(emulator: CrossmintEmulator) -> None:
    login = emulator.create_session("user-h", jwt_ttl=-30)
    first, second = workers(emulator, 2)
    new = first.refresh(login.refresh_token.secret)
    second.logout(refresh_token=new.refresh_token.secret)
    # Inside the grace window the old secret would have been answered with `new`.
    with pytest.raises(CrossmintAuthError) as caught:
        first.refresh(login.refresh_token.secret)
    assert caught.value.code is ErrorCode.SESSION_EXPIRED


def _race(emulator: CrossmintEmulator, refresher: Any, logger: Any) -> tuple[Any, int]:
    """A refresh held 1 s upstream, a logout of its session in the middle."""
    login = emulator.create_session("user-h", jwt_ttl=-30)
    emulator.set_latency(1.0)
    outcome: list[Any] = []

    def refresh() -> None:
        try:
            outcome.append(refresher.refresh(login.refresh_token.secret))
        except CrossmintAuthError as error:
            outcome.append(error)

    thread = threading.Thread(target=refresh)
    thread.start()
    until(lambda: emulator.requests["refresh"] == 1)
    logger.logout(refresh_token=login.refresh_token.secret)
    thread.join()
    emulator.set_latency(0)
    return outcome[0], emulator.requests["logout"]


@pytest.mark.parametrize("where", ["same-worker", "other-worker"])
def test_a_logout_during_a_refresh_ends_what_the_refresh_minted(
    emulator: CrossmintEmulator, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = workers(emulator, 2)
    with caplog.at_level(logging.INFO, "crossmint_wsgi"):
        outcome, _ = _race(emulator, first, first if where == "same-worker" else second)
    assert isinstance(outcome, CrossmintAuthError)
    assert outcome.code is ErrorCode.SESSION_EXPIRED
    assert emulator.requests["logout"] == _expected_logouts(caplog)


def _expected_logouts(caplog: pytest.LogCaptureFixture) -> int:
    """The secret logged out and, when Crossmint minted a pair for the refresh
    under way, that orphan too. Crossmint may handle the logout first (it
    answered the refresh with a refusal then): nothing was minted."""
    return 1 if "Crossmint refused a refresh" in caplog.text else 2


@pytest.mark.anyio
async def test_async_a_logout_during_a_refresh_ends_what_the_refresh_minted(
    emulator: CrossmintEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crossmint_wsgi")
    login = emulator.create_session("user-h", jwt_ttl=-30)
    emulator.set_latency(1.0)
    refresher = AsyncCrossmintAuth(emulator.crossmint(), leeway=0)
    (other,) = workers(emulator, 1)
    outcome: list[Any] = []

    async def refresh() -> None:
        try:
            outcome.append(await refresher.refresh(login.refresh_token.secret))
        except CrossmintAuthError as error:
            outcome.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(refresh)
        await anyio.to_thread.run_sync(until, lambda: emulator.requests["refresh"] == 1)
        await anyio.to_thread.run_sync(
            lambda: other.logout(refresh_token=login.refresh_token.secret)
        )
    emulator.set_latency(0)
    assert isinstance(outcome[0], CrossmintAuthError)
    assert outcome[0].code is ErrorCode.SESSION_EXPIRED
    assert emulator.requests["logout"] == _expected_logouts(caplog)
    await refresher.aclose()


# -- the store failing ------------------------------------------------------------------------


def test_a_locked_store_never_fails_a_request(
    emulator: CrossmintEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = HostStore(tmp_path / "h" / "store.sqlite3", busy_timeout=0.05)
    auth = CrossmintAuth(
        emulator.crossmint(), coordinator=HostCoordinator(store, HostSettings()), leeway=0
    )
    login = emulator.create_session("user-h", jwt_ttl=-30)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
            material: AuthMaterial = auth.refresh(login.refresh_token.secret)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert material.jwt
    assert "goes on alone" in caplog.text
    assert login.refresh_token.secret not in caplog.text
    auth.close()


@pytest.mark.parametrize("where", ["same-worker", "other-worker"])
def test_a_logout_with_the_cookies_from_before_a_refresh_ends_the_jwt_it_minted(
    emulator: CrossmintEmulator, where: str
) -> None:
    """A tab that missed the rotation logs out with (JWT1, S1): JWT2, which the
    refresh of S1 minted and another tab holds, is refused everywhere too."""
    login = emulator.create_session("user-h", jwt_ttl=60)
    first, second = workers(emulator, 2)
    new = first.refresh(login.refresh_token.secret)
    for auth in (first, second):
        assert auth.verify_crossmint_jwt(new.jwt)["sub"] == "user-h"
    logger = first if where == "same-worker" else second
    logger.logout(jwt=login.jwt, refresh_token=login.refresh_token.secret)
    for auth in (first, second):
        assert until(lambda auth=auth: refused(auth, new.jwt)) < 1.0
    assert emulator.requests["logout"] == 2  # S1 and S2 at Crossmint
