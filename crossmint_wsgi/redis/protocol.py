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

import dataclasses
import logging
from collections.abc import Generator
from typing import Any, Union

from ..coordination import secret_digest
from ..models import AuthMaterial

__all__ = [
    "Announce",
    "Command",
    "Exists",
    "FAILOVER_POLL",
    "Flow",
    "Get",
    "Keys",
    "MAX_CHAIN",
    "Perform",
    "RELEASE",
    "Release",
    "Settings",
    "Sleep",
    "Step",
    "Store",
    "TURN",
    "Tombstone",
    "Turn",
    "commands",
    "ms",
    "queue",
    "reply_of",
    "revocations_key",
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
    """Write a record, then release the lock if ``token`` still holds it (pipelined).

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


def commands(step: Command) -> list[tuple[Any, ...]]:
    """The Redis commands of ``step``, in order, as the arguments of ``execute_command``.

    Each command's keys share one Cluster slot (one secret's hash tag); a
    step's commands for different secrets are independent, so a driver may
    pipeline them (no transaction) or send them one by one.
    """
    if isinstance(step, Turn):
        return [
            ("EVAL", TURN, 3, step.result, step.lock, step.revoked, step.token, step.ttl_ms,
             step.unreadable),
        ]  # fmt: skip
    if isinstance(step, Store):
        store: list[tuple[Any, ...]] = [
            ("SET", step.key, step.value, "PX", step.ttl_ms, *(("NX",) if step.only_new else ()))
        ]
        if step.token is not None:
            store.append(("EVAL", RELEASE, 1, step.lock, step.token))
        if step.link is not None:
            store.append(("SET", step.link[0], step.link[1], "PX", step.ttl_ms))
        return store
    if isinstance(step, Release):
        return [("EVAL", RELEASE, 1, step.key, step.token)]
    if isinstance(step, Get):
        return [("GET", step.key)]
    if isinstance(step, Exists):
        return [("EXISTS", key) for key in step.keys]
    if isinstance(step, Tombstone):
        return [("SET", key, b"1", "PX", step.ttl_ms) for key in step.keys]
    # The set and the channel share one name: one key, one slot, on a cluster too.
    return [
        ("ZADD", step.key, step.exp, step.digest),
        ("ZREMRANGEBYSCORE", step.key, "-inf", step.now),
        ("PUBLISH", step.key, f"{step.digest} {step.exp}"),
    ]


def queue(pipe: Any, step: Command) -> None:
    """Queue the commands of ``step`` on a redis-py pipeline (no transaction), sync
    or asyncio alike."""
    # Through execute_command: a Cluster pipeline's eval() takes no script and
    # its publish() is blocked.
    for command in commands(step):
        pipe.execute_command(*command)


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


def revocations_key(settings: Settings) -> str:
    """The sorted set of logged-out JWTs (digest scored by ``exp``), and the channel
    each logout is published on."""
    return f"{settings.prefix}revoked-jwts"


def ms(seconds: float) -> int:
    """Seconds as Redis's whole milliseconds, at least 1."""
    return max(1, int(seconds * 1000))
