"""Refresh coordination across processes and hosts, through Redis.

Several workers (gunicorn processes, hosts behind a load balancer) receive the
same expired session at the same moment. With rotating refresh tokens only one
of them may trade the secret at Crossmint; the others must get what it got.
:class:`RedisCoordinator` (threads) and :class:`AsyncRedisCoordinator`
(asyncio or trio tasks) make that happen. Both run the same steps for a
refresh of secret ``S``:

1. In-process first: the grace cache and single-flight of a
   :class:`~crossmint_wsgi.LocalCoordinator`, so the threads or tasks of one
   process make one trip to Redis between them.
2. In one atomic step (a Lua script), read the record for ``S`` or, when there
   is none, try to win a short lock (``SET lock NX PX``). A record stored by
   another process within the grace window is used as it is.
3. The winner calls Crossmint, stores the outcome and releases the lock. The
   others poll for the record (taking the lock over if it expires without
   one) for at most ``wait`` seconds, then refresh on their own.

What Redis holds:

- Key names carry ``sha256(S)`` (the digest the in-process cache and the log
  lines use), never ``S``: ``{prefix}{<digest>}`` for the record and
  ``{prefix}{<digest>}:lock`` for the lock.
- Values are sealed with AES-256-GCM under a key derived from ``S`` by
  HKDF-SHA256 (a different function of ``S`` from the key name), with a fresh
  random 96-bit nonce per value and the key name as associated data. Only a
  holder of ``S`` can read the new tokens, and nobody without ``S`` can forge a
  record that a holder would accept: a record that does not open is treated
  as absent (and overwritten by the next result).
- A result expires with the grace window. The lock is released when the
  outcome is stored, and expires after ``lock_ttl`` if its winner dies.

When Crossmint refuses ``S`` (``SESSION_EXPIRED``) the refusal is final, so it
is stored, sealed like a result, for ``rejected_ttl`` seconds: every request in
the burst gets the same answer without asking Crossmint again. When Crossmint
is unavailable the failure is stored for the shorter ``unavailable_ttl``, long
enough for the waiters of this round to share it (as threads share an error
in-process) and short enough that the next request retries. A failure never
replaces a result: it is written only where no record exists, while a result
overwrites whatever is there.

When Redis does not answer (refused, timed out, any Redis error) before this
process has called Crossmint, the refresh goes on in-process, exactly as
without Redis; after the call, a failed store is ignored. The failure is
logged at most once per ``log_interval`` (with a short digest of the secret,
never a secret) and Redis is left alone for ``retry_interval`` seconds so
requests do not each wait for its timeouts. A request never fails because of
Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis
import redis.asyncio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from .coordination import AsyncLocalCoordinator, LocalCoordinator, secret_digest
from .errors import CrossmintAuthError, ErrorCode
from .models import AuthMaterial, RefreshToken, User, parse_timestamp

__all__ = ["AsyncRedisCoordinator", "RedisCoordinator"]

logger = logging.getLogger("crossmint_wsgi")

_FORMAT = b"\x01"
_NONCE_SIZE = 12
_HKDF_SALT = b"crossmint-wsgi redis coordinator"
_HKDF_INFO = b"refresh record v1"
# The record if there is one, else the lock if it is free: one atomic step, so a
# winner that stores and releases between a look and a claim cannot be missed.
# ARGV[3] is a record the caller could not open, to be treated as absent.
_TURN = """
local record = redis.call('get', KEYS[1])
if record and record ~= ARGV[3] then return {1, record} end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
# Deletes the lock only if it is still ours: after its TTL it may be another's.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RELEASE_TIMEOUT = 2.0


def _client_options(url: str) -> dict[str, Any]:
    """Connection settings for a coordinator's client; the URL's query string wins.

    Short timeouts and a single immediate retry: a Redis that does not answer
    must cost a request little, since the request goes on without it.

    :raises ValueError: the URL is malformed.
    """
    options: dict[str, Any] = {
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "retry": Retry(NoBackoff(), 1),
    }
    # Parses the URL now (no connection is made), so a bad one fails at startup.
    redis.ConnectionPool.from_url(url, **options)
    return options


# -- the record: names and sealing ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Names:
    """Everything derived from one secret: Redis key names and the record cipher."""

    digest: str
    result: str
    lock: str
    cipher: AESGCM = dataclasses.field(repr=False)

    @classmethod
    def of(cls, secret: str, prefix: str) -> _Names:
        digest = secret_digest(secret)
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
            secret.encode()
        )
        # The braces are a hash tag: both keys of a secret land in one Redis Cluster slot,
        # as the scripts that touch both need.
        result = f"{prefix}{{{digest}}}"
        return cls(digest, result, f"{result}:lock", AESGCM(key))

    @property
    def short(self) -> str:
        return self.digest[:8]


_Outcome = AuthMaterial | CrossmintAuthError


def _dump(outcome: _Outcome) -> bytes:
    if isinstance(outcome, CrossmintAuthError):
        data: dict[str, Any] = {"error": outcome.code.value, "message": outcome.message}
    else:
        expires_at = outcome.refresh_token.expires_at
        data = {
            "jwt": outcome.jwt,
            "secret": outcome.refresh_token.secret,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "user": outcome.user.to_json() if outcome.user else None,
        }
    return json.dumps(data, separators=(",", ":")).encode()


def _load(data: Any) -> _Outcome:
    if "error" in data:
        return CrossmintAuthError(ErrorCode(data["error"]), str(data["message"]))
    expires_at = data["expires_at"]
    return AuthMaterial(
        jwt=data["jwt"],
        refresh_token=RefreshToken(
            data["secret"], parse_timestamp(expires_at) if expires_at else None
        ),
        user=User.from_json(data["user"]) if data["user"] else None,
    )


def _seal(names: _Names, outcome: _Outcome) -> bytes:
    # A fresh random nonce per value: the key is per secret, but a secret's
    # record may be written more than once (a waiter that gave up, a retry).
    nonce = os.urandom(_NONCE_SIZE)
    return _FORMAT + nonce + names.cipher.encrypt(nonce, _dump(outcome), names.result.encode())


def _unseal(names: _Names, value: bytes | str | None) -> _Outcome | None:
    """The outcome in a record, or ``None`` when there is none that opens."""
    if value is None:
        return None
    raw = value.encode("latin-1") if isinstance(value, str) else value
    if raw[:1] != _FORMAT or len(raw) < 1 + _NONCE_SIZE + 16:
        logger.warning("ignoring a malformed refresh record in Redis (secret %s)", names.short)
        return None
    nonce, sealed = raw[1 : 1 + _NONCE_SIZE], raw[1 + _NONCE_SIZE :]
    try:
        return _load(json.loads(names.cipher.decrypt(nonce, sealed, names.result.encode())))
    except InvalidTag:
        logger.warning(
            "ignoring a refresh record in Redis that does not open with its secret (secret %s)",
            names.short,
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring an unreadable refresh record in Redis (secret %s)", names.short)
    return None


def _unwrap(outcome: _Outcome) -> AuthMaterial:
    if isinstance(outcome, CrossmintAuthError):
        raise outcome
    return outcome


# -- the steps, once for both drivers ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Settings:
    grace: float
    wait: float
    lock_ttl: float
    poll_interval: float
    rejected_ttl: float
    unavailable_ttl: float
    prefix: str


@dataclasses.dataclass(frozen=True)
class _Turn:
    """Read the record, or else take the lock: the reply is ``(record, won)``."""

    result: str
    lock: str
    token: str
    ttl_ms: int
    unreadable: bytes = b""


@dataclasses.dataclass(frozen=True)
class _Store:
    """Write a record, then release the lock if ``token`` still holds it (one round trip)."""

    key: str
    value: bytes
    ttl_ms: int
    only_new: bool
    lock: str
    token: str | None


@dataclasses.dataclass(frozen=True)
class _Release:
    key: str
    token: str


@dataclasses.dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class _Perform:
    """Call Crossmint: the driver sends back the material or the CrossmintAuthError."""


_Command = _Turn | _Store | _Release
_Step = _Command | _Sleep | _Perform
_Flow = Generator[_Step, Any, AuthMaterial]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _coordinate(names: _Names, settings: _Settings, clock: Callable[[], float]) -> _Flow:
    """One refresh of a secret, shared through Redis.

    The driver performs each step yielded and sends its result back; a Redis
    failure is thrown in as the ``RedisError``.
    """
    try:
        turn = yield from _take_turn(names, settings, clock)
    except RedisError:
        # Redis failed before this process called Crossmint: go on as without Redis.
        return _unwrap((yield _Perform()))
    if isinstance(turn, (AuthMaterial, CrossmintAuthError)):
        return _unwrap(turn)
    return (yield from _lead(names, settings, turn))


def _take_turn(
    names: _Names, settings: _Settings, clock: Callable[[], float]
) -> Generator[_Step, Any, _Outcome | str | None]:
    """Another process's outcome; our lock token when we won; ``None`` when we waited enough."""
    token = secrets.token_hex(16)
    deadline = clock() + settings.wait
    unreadable = b""
    while True:
        # Winning after a wait is the takeover: a winner that died leaves its lock to expire.
        record, won = yield _Turn(
            names.result, names.lock, token, _ms(settings.lock_ttl), unreadable
        )
        if won:
            return token
        found = _unseal(names, record)
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
                names.short,
            )
            return None
        yield _Sleep(min(settings.poll_interval, remaining))


def _lead(names: _Names, settings: _Settings, token: str | None) -> _Flow:
    """Call Crossmint and publish the outcome; Redis failures no longer matter."""
    try:
        outcome = yield _Perform()
    except GeneratorExit:
        raise
    except BaseException:
        # Cancelled or broken before an outcome: let a waiter take over now
        # rather than when the lock expires.
        if token is not None:
            with contextlib.suppress(RedisError):
                yield _Release(names.lock, token)
        raise
    failed = isinstance(outcome, CrossmintAuthError)
    if isinstance(outcome, CrossmintAuthError):
        ttl = settings.rejected_ttl if outcome.clears_cookies else settings.unavailable_ttl
    else:
        ttl = settings.grace
    # The lock goes with the store: once the record expires, the next holder
    # of the secret must not wait for a lock that guards nothing.
    with contextlib.suppress(RedisError):
        if ttl > 0:
            yield _Store(names.result, _seal(names, outcome), _ms(ttl), failed, names.lock, token)
        elif token is not None:
            yield _Release(names.lock, token)
    return _unwrap(outcome)


# -- health: log once per period, leave a failing Redis alone for a while ----------------


class _Health:
    def __init__(
        self,
        retry_interval: float,
        log_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_interval = retry_interval
        self.log_interval = log_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._skip_until = float("-inf")
        self._logged_at = float("-inf")

    def usable(self) -> bool:
        return self._clock() >= self._skip_until

    def failed(self, error: BaseException, digest: str) -> None:
        with self._lock:
            now = self._clock()
            self._down = True
            self._skip_until = now + self.retry_interval
            if now - self._logged_at < self.log_interval:
                return
            self._logged_at = now
        why = f"{type(error).__name__}: {error}"[:200]
        logger.warning(
            "Redis is unavailable (%s) during the refresh of secret %s: refreshes are"
            " coordinated in this process only, Redis is retried in %gs",
            why,
            digest[:8],
            self.retry_interval,
        )

    def succeeded(self) -> None:
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.info("Redis answers again: refreshes are coordinated across processes")


def _turn_reply(reply: Any) -> tuple[bytes | None, bool]:
    return (reply[1] if reply[0] == 1 else None), reply[0] == 2


def _run_sync(client: redis.Redis, step: _Command) -> Any:
    if isinstance(step, _Turn):
        return _turn_reply(
            client.eval(_TURN, 2, step.result, step.lock, step.token, step.ttl_ms, step.unreadable)
        )
    if isinstance(step, _Store):
        pipe = client.pipeline(transaction=False)
        pipe.set(step.key, step.value, px=step.ttl_ms, nx=step.only_new)
        if step.token is not None:
            pipe.eval(_RELEASE, 1, step.lock, step.token)
        return pipe.execute()
    return client.eval(_RELEASE, 1, step.key, step.token)


async def _run_async(client: redis.asyncio.Redis, step: _Command) -> Any:
    if isinstance(step, _Turn):
        return _turn_reply(
            await client.eval(
                _TURN, 2, step.result, step.lock, step.token, step.ttl_ms, step.unreadable
            )
        )
    if isinstance(step, _Store):
        pipe = client.pipeline(transaction=False)
        pipe.set(step.key, step.value, px=step.ttl_ms, nx=step.only_new)
        if step.token is not None:
            pipe.eval(_RELEASE, 1, step.lock, step.token)
        return await pipe.execute()
    return await client.eval(_RELEASE, 1, step.key, step.token)


class _RedisCoordinatorBase:
    """Settings and health shared by the two coordinators."""

    def __init__(
        self,
        *,
        grace: float = 30.0,
        wait: float = 10.0,
        lock_ttl: float | None = None,
        poll_interval: float = 0.01,
        rejected_ttl: float = 5.0,
        unavailable_ttl: float = 1.0,
        retry_interval: float = 2.0,
        log_interval: float = 60.0,
        prefix: str = "crossmint-wsgi:refresh:",
        max_entries: int = 10_000,
    ) -> None:
        if wait < 0 or poll_interval <= 0 or (lock_ttl is not None and lock_ttl <= 0):
            raise ValueError("wait must be >= 0, poll_interval and lock_ttl > 0")
        self.settings = _Settings(
            grace=grace,
            wait=wait,
            lock_ttl=wait if lock_ttl is None else lock_ttl,
            poll_interval=poll_interval,
            rejected_ttl=rejected_ttl,
            unavailable_ttl=unavailable_ttl,
            prefix=prefix,
        )
        self.max_entries = max_entries
        self._health = _Health(retry_interval, log_interval)
        self._pid = -1

    def _flow(self, secret: str) -> tuple[_Names, _Flow]:
        names = _Names.of(secret, self.settings.prefix)
        return names, _coordinate(names, self.settings, time.monotonic)


class RedisCoordinator(_RedisCoordinatorBase):
    """Refreshes shared between processes and hosts through Redis, for threads (WSGI).

    .. code-block:: python

        from crossmint_wsgi.redis import RedisCoordinator

        auth = CrossmintAuth(crossmint, coordinator=RedisCoordinator.from_url(redis_url))

    Connections are opened lazily, by each process for itself: create it
    before gunicorn forks. See the module documentation for what is stored
    and how failures are handled.

    :param client: a ``redis.Redis``, or a function returning one (called
        once in each process).
    :param grace: seconds a refresh result is served to requests that still
        carry the old secret: its lifetime in Redis and in each process's
        cache (a process that reads it late may keep it up to ``grace`` more).
    :param wait: the longest a request waits for another process's result
        before refreshing on its own. Keep it above the auth's ``timeout``.
    :param lock_ttl: how long a winner holds the lock (default ``wait``): a
        winner that dies blocks the others at most this long.
    :param poll_interval: seconds between a waiter's looks at Redis.
    :param rejected_ttl: seconds Crossmint's refusal of a secret is shared.
    :param unavailable_ttl: seconds a failure to reach Crossmint is shared.
    :param retry_interval: seconds Redis is left alone after it failed.
    :param log_interval: at most one warning about Redis per this many seconds.
    :param prefix: the start of every Redis key this coordinator writes.
    :param max_entries: bound on each process's grace cache.
    """

    def __init__(self, client: redis.Redis | Callable[[], redis.Redis], **settings: Any) -> None:
        super().__init__(**settings)
        self._connect: Callable[[], redis.Redis] = (
            (lambda: client) if isinstance(client, redis.Redis) else client
        )
        self._client: redis.Redis | None = None
        self._local: LocalCoordinator | None = None
        self._process_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> RedisCoordinator:
        """A coordinator on the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``).

        Connection options go in the URL's query string
        (``?socket_timeout=2``); the defaults are one-second timeouts and one
        immediate retry. Nothing connects until the first refresh.

        :param settings: the coordinator's settings, as for the constructor.
        :raises ValueError: the URL is malformed.
        """
        options = _client_options(url)
        return cls(lambda: redis.Redis.from_url(url, **options), **settings)

    def _process(self) -> LocalCoordinator:
        # After a fork, the parent's connections and locks are left to the parent.
        if self._pid != os.getpid() or self._local is None:
            with self._process_lock:
                if self._pid != os.getpid() or self._local is None:
                    self._client = None
                    self._local = LocalCoordinator(self.settings.grace, self.max_entries)
                    self._pid = os.getpid()
        return self._local

    def _redis(self) -> redis.Redis:
        client = self._client
        if client is None:
            with self._process_lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        """Material for ``secret``: from this process, from Redis, or from ``perform()``.

        :param secret: the refresh secret being traded.
        :param perform: calls Crossmint; returns the material or raises
            :class:`~crossmint_wsgi.CrossmintAuthError`.
        :raises CrossmintAuthError: what ``perform()`` raised here or in the
            process that won the lock.
        """
        return self._process().refresh(secret, lambda: self._shared(secret, perform))

    def revoke(self, secret: str) -> list[str]:
        """End the session of ``secret`` in this process (see :meth:`GraceCache.revoke`)."""
        return self._process().revoke(secret)

    def _shared(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        if not self._health.usable():
            return perform()
        names, flow = self._flow(secret)
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(step, _Perform):
                try:
                    reply = perform()
                except CrossmintAuthError as refused:
                    reply = refused
                except BaseException as failure:
                    error = failure
            elif isinstance(step, _Sleep):
                time.sleep(step.seconds)
            else:
                try:
                    reply = _run_sync(self._redis(), step)
                except RedisError as failure:
                    self._health.failed(failure, names.digest)
                    error = failure
                else:
                    self._health.succeeded()

    def close(self) -> None:
        """Close this process's Redis connections."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None


class AsyncRedisCoordinator(_RedisCoordinatorBase):
    """Refreshes shared between processes and hosts through Redis, for tasks (ASGI).

    On asyncio it uses redis-py's asyncio client, one per event loop. redis-py
    has no trio client, so on trio the blocking client runs in worker threads.

    .. code-block:: python

        from crossmint_wsgi.redis import AsyncRedisCoordinator

        auth = AsyncCrossmintAuth(crossmint, coordinator=AsyncRedisCoordinator.from_url(url))

    :param client: a ``redis.asyncio.Redis``, or a function returning one
        (called once per event loop), used on asyncio.
    :param sync_client: a ``redis.Redis``, or a function returning one, used
        on trio; without it, trio runs coordinate in-process only.

    The other settings are :class:`RedisCoordinator`'s.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | Callable[[], redis.asyncio.Redis],
        *,
        sync_client: redis.Redis | Callable[[], redis.Redis] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self._connect: Callable[[], redis.asyncio.Redis] = (
            (lambda: client) if isinstance(client, redis.asyncio.Redis) else client
        )
        self._connect_sync: Callable[[], redis.Redis] | None = (
            (lambda: sync_client) if isinstance(sync_client, redis.Redis) else sync_client
        )
        self._loop: object = None
        self._client: redis.asyncio.Redis | None = None
        self._sync: redis.Redis | None = None
        self._sync_lock = threading.Lock()
        self._local: AsyncLocalCoordinator | None = None

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> AsyncRedisCoordinator:
        """A coordinator on the Redis at ``url``, for asyncio and trio alike.

        As :meth:`RedisCoordinator.from_url`.

        :raises ValueError: the URL is malformed.
        """
        options = _client_options(url)
        async_options = {**options, "retry": AsyncRetry(NoBackoff(), 1)}
        return cls(
            lambda: redis.asyncio.Redis.from_url(url, **async_options),
            sync_client=lambda: redis.Redis.from_url(url, **options),
            **settings,
        )

    def _process(self) -> AsyncLocalCoordinator:
        if self._pid != os.getpid() or self._local is None:
            self._client = self._sync = None
            self._loop = None
            self._local = AsyncLocalCoordinator(self.settings.grace, self.max_entries)
            self._pid = os.getpid()
        return self._local

    def _sync_redis(self) -> redis.Redis:
        with self._sync_lock:
            if self._sync is None:
                if self._connect_sync is None:
                    raise RedisError("no sync_client to reach Redis from trio")
                self._sync = self._connect_sync()
            return self._sync

    async def _run(self, step: _Command) -> Any:
        loop = anyio.lowlevel.current_token().native_token
        if not isinstance(loop, asyncio.AbstractEventLoop):
            return await anyio.to_thread.run_sync(_run_sync, self._sync_redis(), step)
        # The asyncio client's connections belong to the loop that opened them.
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._connect(), loop
        return await _run_async(self._client, step)

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        """As :meth:`RedisCoordinator.refresh`, with ``perform`` awaited."""

        async def shared() -> AuthMaterial:
            return await self._shared(secret, perform)

        return await self._process().refresh(secret, shared)

    async def revoke(self, secret: str) -> list[str]:
        """End the session of ``secret`` in this process (see :meth:`GraceCache.revoke`)."""
        return await self._process().revoke(secret)

    async def _shared(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        if not self._health.usable():
            return await perform()
        names, flow = self._flow(secret)
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if isinstance(step, _Perform):
                try:
                    reply = await perform()
                except CrossmintAuthError as refused:
                    reply = refused
                except BaseException as failure:
                    error = failure
            elif isinstance(step, _Sleep):
                await anyio.sleep(step.seconds)
            else:
                try:
                    if isinstance(step, _Release):
                        # It runs while this task is being cancelled: shield it, briefly.
                        with anyio.move_on_after(_RELEASE_TIMEOUT, shield=True):
                            reply = await self._run(step)
                    else:
                        reply = await self._run(step)
                except RedisError as failure:
                    self._health.failed(failure, names.digest)
                    error = failure
                else:
                    self._health.succeeded()

    async def aclose(self) -> None:
        """Close the connections of the current event loop and of the worker threads."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
