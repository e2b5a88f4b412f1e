"""The coordination protocol: the one place that names Redis keys and holds the Lua scripts.

A refresh of secret ``S`` runs as a sans-IO flow (:func:`coordinate`): it
yields *steps* (a Redis command, a sleep, the call to Crossmint) and receives
their results. The sync and async coordinators drive it through an
:class:`Exchange`, and differ only in how they send a step's bytes.

1. In one atomic step (:data:`TURN`, a Lua script), read the record for ``S``
   or, when there is none, try to win a short lock (``SET lock NX PX``). A
   record stored by another process within the grace window is used as it is.
2. The winner calls Crossmint, stores the outcome and releases the lock in
   one round trip. The others poll for the record (taking the lock over if it
   expires without one) for at most ``wait`` seconds, then refresh on their own.

Key names carry ``sha256(S)``, never ``S``: ``{prefix}{<digest>}`` for the
record and ``{prefix}{<digest>}:lock`` for the lock. A failure is written only
where no record exists, while a result overwrites whatever is there.

A logout ends the session's whole chain everywhere (:func:`revoke`): every
secret it can find, going back through ``{prefix}{<digest>}:prev`` (the
digest of the secret a result was refreshed from, written with the result)
and forward through the records, gets a tombstone
``{prefix}{<digest>}:revoked`` for ``revoked_ttl``. :data:`TURN` answers a
tombstoned secret before its record, and a record from another process is
used only if the secret it holds has no tombstone either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable, Generator
from typing import Any, Union

from redis.exceptions import RedisError

from ..coordination import LOGGED_OUT, secret_digest
from ..errors import CrossmintAuthError
from ..models import AuthMaterial
from .record import Outcome, RecordCipher, unwrap

__all__ = [
    "FAILOVER_POLL",
    "RELEASE",
    "TURN",
    "MAX_CHAIN",
    "Exists",
    "Get",
    "Keys",
    "Perform",
    "Release",
    "Settings",
    "Sleep",
    "Step",
    "Store",
    "Tombstone",
    "Turn",
    "announce",
    "coordinate",
    "queue",
    "reply_of",
    "revocations_key",
    "revoke",
    "revoked_any",
]

logger = logging.getLogger("crossmint_wsgi")

# How far a chain of refreshes is followed (see crossmint_wsgi.coordination).
MAX_CHAIN = 8

# Seconds between tries of a Redis that failed mid-flow (a failover takes seconds).
FAILOVER_POLL = 0.1

# The record if there is one, else the lock if it is free: one atomic step, so a
# winner that stores and releases between a look and a claim cannot be missed.
# ARGV[3] is a record the caller could not open, to be treated as absent.
# A logged-out secret (KEYS[3]) gets neither.
TURN = """
if redis.call('exists', KEYS[3]) == 1 then return {3} end
local record = redis.call('get', KEYS[1])
if record and record ~= ARGV[3] then return {1, record} end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
# Deletes the lock only if it is still ours: after its TTL it may be another's.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclasses.dataclass(frozen=True)
class Keys:
    """The Redis keys of one secret: its refresh's record and lock, its chain and tombstone."""

    digest: str
    result: str
    lock: str
    previous: str
    revoked: str

    @classmethod
    def of(cls, secret: str, prefix: str) -> Keys:
        return cls.of_digest(secret_digest(secret), prefix)

    @classmethod
    def of_digest(cls, digest: str, prefix: str) -> Keys:
        # The braces are a hash tag: every key of a secret lands in one Redis Cluster
        # slot, as the scripts that touch several need.
        result = f"{prefix}{{{digest}}}"
        return cls(digest, result, f"{result}:lock", f"{result}:prev", f"{result}:revoked")

    @property
    def short(self) -> str:
        return self.digest[:8]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The timings of the protocol (see :class:`~crossmint_wsgi.redis.RedisCoordinator`)."""

    grace: float
    wait: float
    lock_ttl: float
    poll_interval: float
    rejected_ttl: float
    unavailable_ttl: float
    prefix: str
    revoked_ttl: float = 600.0


# -- steps ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Turn:
    """Read the record, or else take the lock: the reply is ``(record, won, revoked)``."""

    result: str
    lock: str
    revoked: str
    token: str
    ttl_ms: int
    unreadable: bytes = b""


@dataclasses.dataclass(frozen=True)
class Store:
    """Write a record, then release the lock if ``token`` still holds it (one round trip).

    ``link`` is ``(key, digest)``: the new secret's ``previous`` key and the
    digest of the secret it was refreshed from, kept as long as the record.
    """

    key: str
    value: bytes
    ttl_ms: int
    only_new: bool
    lock: str
    token: str | None
    link: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Release:
    """Release the lock if ``token`` still holds it."""

    key: str
    token: str


@dataclasses.dataclass(frozen=True)
class Get:
    """Read one key: the reply is its value or ``None``."""

    key: str


@dataclasses.dataclass(frozen=True)
class Exists:
    """How many of ``keys`` exist (each its own command: they may live in different slots)."""

    keys: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Tombstone:
    """Mark each of ``keys`` for ``ttl_ms``."""

    keys: tuple[str, ...]
    ttl_ms: int


@dataclasses.dataclass(frozen=True)
class Announce:
    """Record a logged-out JWT in the set of active revocations (until ``exp``), drop
    the expired ones, and publish it to every listening process."""

    key: str
    digest: str
    exp: float
    now: float


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Perform:
    """Call Crossmint: the driver sends back the material or the CrossmintAuthError."""


Command = Union[Turn, Store, Release, Get, Exists, Tombstone, Announce]  # noqa: UP007 - runtime on 3.10
Step = Union[Command, Sleep, Perform]  # noqa: UP007 - a runtime alias on 3.10
Flow = Generator[Step, Any, AuthMaterial]


def queue(pipe: Any, step: Command) -> None:
    """Queue the commands of ``step`` on a redis-py pipeline, sync or asyncio alike.

    The pipeline is no transaction, so on a Redis Cluster its commands may go to
    several nodes: each command's keys share one slot (one secret's hash tag),
    and a step's commands for different secrets are independent.
    """
    # EVAL through execute_command: a Cluster pipeline's eval() takes no script.
    if isinstance(step, Turn):
        pipe.execute_command(
            "EVAL",
            TURN,
            3,
            step.result,
            step.lock,
            step.revoked,
            step.token,
            step.ttl_ms,
            step.unreadable,
        )
    elif isinstance(step, Store):
        pipe.set(step.key, step.value, px=step.ttl_ms, nx=step.only_new)
        if step.token is not None:
            pipe.execute_command("EVAL", RELEASE, 1, step.lock, step.token)
        if step.link is not None:
            pipe.set(step.link[0], step.link[1], px=step.ttl_ms)
    elif isinstance(step, Release):
        pipe.execute_command("EVAL", RELEASE, 1, step.key, step.token)
    elif isinstance(step, Get):
        pipe.get(step.key)
    elif isinstance(step, Exists):
        for key in step.keys:
            pipe.exists(key)
    elif isinstance(step, Tombstone):
        for key in step.keys:
            pipe.set(key, b"1", px=step.ttl_ms)
    else:
        # The set and the channel share one name: one key, one slot, on a cluster too.
        pipe.zadd(step.key, {step.digest: step.exp})
        pipe.zremrangebyscore(step.key, "-inf", step.now)
        # (PUBLISH through execute_command: a Cluster pipeline blocks its publish().)
        pipe.execute_command("PUBLISH", step.key, f"{step.digest} {step.exp}")


def reply_of(step: Command, replies: list[Any]) -> Any:
    """What the flow receives for ``step``, from the pipeline's replies."""
    if isinstance(step, Turn):
        reply = replies[0]
        return (reply[1] if reply[0] == 1 else None), reply[0] == 2, reply[0] == 3
    if isinstance(step, Get):
        return replies[0]
    if isinstance(step, Exists):
        return sum(int(count) for count in replies)
    return replies


# -- the flow -------------------------------------------------------------------------------


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def coordinate(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    clock: Callable[[], float],
    ride_out: bool = False,
) -> Flow:
    """One refresh of a secret, shared through Redis.

    The driver performs each step yielded and sends its result back; a Redis
    failure is thrown in as the ``RedisError``.

    :param ride_out: Redis answered this process last time. A failure after
        Redis answered (this process before, or this flow) is likely a failover
        (a Cluster's replica or Sentinel's promoting itself), so the flow keeps
        trying until its deadline (``wait``) instead of refreshing beside the
        process that holds the lock: a waiter keeps polling, the winner keeps
        trying to store its result, which the waiters then find on the new
        primary. A Redis that never answered (down, misconfigured) is not waited for.
    """
    deadline = clock() + settings.wait
    try:
        turn = yield from _take_turn(keys, cipher, settings, clock, deadline, ride_out)
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
        successors.append(current)
        chain.append(keys)
    yield Tombstone(tuple(each.revoked for each in chain), _ms(settings.revoked_ttl))
    return successors


def revocations_key(settings: Settings) -> str:
    """The sorted set of logged-out JWTs (digest scored by ``exp``), and the channel
    each logout is published on."""
    return f"{settings.prefix}revoked-jwts"


def announce(digest: str, exp: float, settings: Settings, now: float) -> Generator[Step, Any, None]:
    """Tell every process that the JWT with this digest is logged out until ``exp``."""
    yield Announce(revocations_key(settings), digest, exp, now)


def revoked_any(secrets_: tuple[str, ...], settings: Settings) -> Generator[Step, Any, bool]:
    """Whether any of these secrets has a tombstone."""
    keys = tuple(Keys.of(secret, settings.prefix).revoked for secret in secrets_)
    return bool((yield Exists(keys)))


def _riding_out(
    error: RedisError, clock: Callable[[], float], deadline: float | None
) -> Generator[Step, Any, None]:
    """After a Redis failure: wait a moment to try again, or raise it again when
    not riding failures out or past the deadline."""
    if deadline is None or clock() >= deadline:
        raise error
    yield Sleep(min(FAILOVER_POLL, max(0.0, deadline - clock())))


def _take_turn(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    clock: Callable[[], float],
    deadline: float,
    ride_out: bool,
) -> Generator[Step, Any, Outcome | str | None]:
    """Another process's outcome; our lock token when we won; ``None`` when we waited enough."""
    token = secrets.token_hex(16)
    unreadable = b""
    while True:
        # Winning after a wait is the takeover: a winner that died leaves its lock to expire.
        try:
            record, won, revoked = yield Turn(
                keys.result, keys.lock, keys.revoked, token, _ms(settings.lock_ttl), unreadable
            )
        except RedisError as error:
            yield from _riding_out(error, clock, deadline if ride_out else None)
            continue
        ride_out = True  # Redis answered this flow: a failure from now on is a failover.
        if revoked:
            return LOGGED_OUT
        if won:
            return token
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
        yield Sleep(min(settings.poll_interval, remaining))


def _lead(
    keys: Keys,
    cipher: RecordCipher,
    settings: Settings,
    token: str | None,
    clock: Callable[[], float],
    deadline: float,
) -> Flow:
    """Call Crossmint and publish the outcome; a Redis failure is ridden out until
    ``deadline``, then no longer matters."""
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
        store = Store(keys.result, cipher.seal(outcome), _ms(ttl), failed, keys.lock, token, link)
        while True:
            try:
                yield store
                break
            except RedisError as error:
                yield from _riding_out(error, clock, deadline)
    return unwrap(outcome)
