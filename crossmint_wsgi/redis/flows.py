"""The coordination protocol's flows: a refresh shared through Redis, a logout of a
session's chain, a logout of a JWT told to every process.

Each flow yields the steps of :mod:`crossmint_wsgi.redis.protocol` (a Redis
command, a sleep, the call to Crossmint) and receives their results; an
:class:`~crossmint_wsgi.redis.exchange.Exchange` steps it for a driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable, Generator
from typing import Any

from redis.exceptions import RedisError

from ..coordination import LOGGED_OUT, Successor
from ..errors import CrossmintAuthError
from ..models import AuthMaterial
from .protocol import (
    FAILOVER_POLL,
    MAX_CHAIN,
    Announce,
    Exists,
    Flow,
    Get,
    Keys,
    Perform,
    Release,
    Settings,
    Sleep,
    Step,
    Store,
    Tombstone,
    Turn,
    ms,
    revocations_key,
)
from .record import Outcome, RecordCipher, unwrap

__all__ = ["announce", "coordinate", "revoke", "revoked_any"]

logger = logging.getLogger("crossmint_wsgi")


def coordinate(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    clock: Callable[[], float],
    ride_out_until: Callable[[], float] = lambda: float("-inf"),
) -> Flow:
    """One refresh of a secret, shared through Redis.

    The driver performs each step yielded and sends its result back; a Redis
    failure is thrown in as the ``RedisError``.

    A failure after Redis answered this flow is taken for a failover (a Cluster's
    replica or Sentinel's promoting itself): the flow keeps trying until its
    deadline (``wait``) instead of refreshing beside the process that holds the
    lock; a waiter keeps polling, the winner keeps trying to store its result,
    which the waiters then find on the new primary. Before Redis answered this
    flow, a failure is ridden out the same way, but only until ``ride_out_until()``
    too: so a flow that starts during a failover waits for the new primary
    rather than refreshing beside the others that do, while a Redis that is
    gone, or never answered, is not waited for.

    :param ride_out_until: the clock's time until which Redis, failing, is
        likely failing over (:meth:`~crossmint_wsgi.redis.health.Health.ride_out_until`).
    """
    deadline = clock() + settings.wait
    try:
        turn = yield from _take_turn(keys, cipher, settings, clock, deadline, ride_out_until)
    except RedisError:
        # Redis failed before this process called Crossmint: go on as without Redis.
        return unwrap((yield Perform()))
    if isinstance(turn, AuthMaterial):
        # Another process's result: not if the secret it holds was logged out since.
        # (Redis failing now, the result stands: the secret it was for is spent.)
        successor = Keys.of(turn.refresh_token.secret, settings.prefix)
        with contextlib.suppress(RedisError):
            if (yield Exists((successor.revoked,))):
                return unwrap(LOGGED_OUT)
    if isinstance(turn, (AuthMaterial, CrossmintAuthError)):
        return unwrap(turn)
    return (yield from _lead(keys, cipher, settings, turn, clock, deadline))


def revoke(secret: str, settings: Settings) -> Generator[Step, Any, list[str]]:
    """Tombstone every secret of the chain of ``secret`` that Redis knows.

    :returns: the successor secrets found in the records, newest last, to be
        revoked at Crossmint too. A Redis failure is thrown in and ends it.
    """
    chain = [Keys.of(secret, settings.prefix)]
    seen = {chain[0].digest}
    for _ in range(MAX_CHAIN):
        previous = yield Get(chain[-1].previous)
        if previous is None:
            break
        digest = previous.decode() if isinstance(previous, bytes) else str(previous)
        if digest in seen:
            break
        seen.add(digest)
        chain.append(Keys.of_digest(digest, settings.prefix))
    successors: list[str] = []
    current, keys = secret, chain[0]
    for _ in range(MAX_CHAIN):
        record = yield Get(keys.result)
        outcome = RecordCipher.of(current, keys.result, keys.short).unseal(record)
        if not isinstance(outcome, AuthMaterial):
            break
        current = outcome.refresh_token.secret
        keys = Keys.of(current, settings.prefix)
        if keys.digest in seen:
            break
        seen.add(keys.digest)
        successors.append(Successor(outcome))
        chain.append(keys)
    yield Tombstone(tuple(each.revoked for each in chain), ms(settings.revoked_ttl))
    return successors


def announce(digest: str, exp: float, settings: Settings, now: float) -> Generator[Step, Any, None]:
    """Tell every process that the JWT with this digest is logged out until ``exp``."""
    yield Announce(revocations_key(settings), digest, exp, now)


def revoked_any(secrets_: tuple[str, ...], settings: Settings) -> Generator[Step, Any, bool]:
    """Whether any of these secrets has a tombstone."""
    keys = tuple(Keys.of(secret, settings.prefix).revoked for secret in secrets_)
    return bool((yield Exists(keys)))


def _riding_out(
    error: RedisError, clock: Callable[[], float], until: float
) -> Generator[Step, Any, None]:
    """After a Redis failure: wait a moment to try again, or raise it again once
    past ``until``."""
    if clock() >= until:
        raise error
    yield Sleep(min(FAILOVER_POLL, max(0.0, until - clock())))


@dataclasses.dataclass(frozen=True)
class _Won:
    """The lock is ours. ``late``: won after a Redis failure or after seeing it held,
    so another process may have traded the secret already (its lock lost in a
    failover, or it died)."""

    token: str
    late: bool


def _take_turn(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    clock: Callable[[], float],
    deadline: float,
    ride_out_until: Callable[[], float],
) -> Generator[Step, Any, Outcome | _Won | None]:
    """Another process's outcome; the lock when we won it; ``None`` when we waited enough."""
    token = secrets.token_hex(16)
    unreadable = b""
    late = False
    answered = False
    while True:
        # Winning after a wait is the takeover: a winner that died leaves its lock to expire.
        try:
            record, won, revoked = yield Turn(
                keys.result, keys.lock, keys.revoked, token, ms(settings.lock_ttl), unreadable
            )
        except RedisError as error:
            until = deadline if answered else min(deadline, ride_out_until())
            yield from _riding_out(error, clock, until)
            late = True
            continue
        answered = True  # Redis answered this flow: a failure from now on is a failover.
        if revoked:
            return LOGGED_OUT
        if won:
            return _Won(token, late)
        found = cipher.unseal(record)
        if found is not None:
            return found
        if record is not None:
            # Forged, corrupt or from another version: claim the lock over it, now.
            unreadable = record
            continue
        remaining = deadline - clock()
        if remaining <= 0:
            logger.info(
                "no refresh result in Redis after %.1fs (secret %s): refreshing here",
                settings.wait,
                keys.short,
            )
            return None
        late = True
        yield Sleep(min(settings.poll_interval, remaining))


def _lead(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    won: _Won | None,
    clock: Callable[[], float],
    deadline: float,
) -> Flow:
    """Call Crossmint and publish the outcome; a Redis failure is ridden out until
    ``deadline``, then no longer matters."""
    token = None if won is None else won.token
    try:
        outcome = yield Perform()
    except GeneratorExit:
        raise
    except BaseException:
        # Cancelled or broken before an outcome: let a waiter take over now
        # rather than when the lock expires.
        if token is not None:
            with contextlib.suppress(RedisError):
                yield Release(keys.lock, token)
        raise
    refused = isinstance(outcome, CrossmintAuthError) and outcome.clears_cookies
    if refused and won is not None and won.late:
        outcome = yield from _traded_elsewhere(keys, cipher, settings, clock, deadline, outcome)
    failed = isinstance(outcome, CrossmintAuthError)
    if isinstance(outcome, CrossmintAuthError):
        ttl = settings.rejected_ttl if outcome.clears_cookies else settings.unavailable_ttl
    else:
        ttl = settings.grace
    # The lock goes with the store: once the record expires, the next holder
    # of the secret must not wait for a lock that guards nothing.
    link = None
    if isinstance(outcome, AuthMaterial):
        link = (Keys.of(outcome.refresh_token.secret, settings.prefix).previous, keys.digest)
    with contextlib.suppress(RedisError):
        if ttl <= 0:
            if token is not None:
                yield Release(keys.lock, token)
            return unwrap(outcome)
        store = Store(keys.result, cipher.seal(outcome), ms(ttl), failed, keys.lock, token, link)
        while True:
            try:
                yield store
                break
            except RedisError as error:
                yield from _riding_out(error, clock, deadline)
    return unwrap(outcome)


def _traded_elsewhere(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    clock: Callable[[], float],
    deadline: float,
    refusal: CrossmintAuthError,
) -> Generator[Step, Any, Outcome]:
    """Crossmint refused a secret whose lock this flow took over: refresh secrets are
    single use, so the process that held the lock before may have traded it (a
    failover lost its lock while it rode out its store). Its result, once stored,
    is the answer, not the refusal of a spent secret; until ``deadline``."""
    logger.info(
        "Crossmint refused secret %s after this process took its lock over: waiting for"
        " the result of the refresh that may have traded it",
        keys.short,
    )
    while clock() < deadline:
        try:
            found = cipher.unseal((yield Get(keys.result)))
        except RedisError:
            found = None  # a failover still under way: look again
        if isinstance(found, AuthMaterial):
            return found
        yield Sleep(min(settings.poll_interval, max(0.0, deadline - clock())))
    return refusal
