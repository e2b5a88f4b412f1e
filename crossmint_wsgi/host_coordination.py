"""Refresh coordination between the worker processes of one host, through the host store.

The default coordinator: with no Redis and nothing configured, the workers of
one app on one host (gunicorn ``-w 4``, uvicorn ``--workers 2``) trade each
refresh secret once between them, share its result for the grace window, and
honour each other's logouts within :data:`POLL_INTERVAL`.
:class:`HostCoordinator` (threads) and :class:`AsyncHostCoordinator` (asyncio
or trio) drive the same flows, written once here as generators of
:class:`StoreCall`, :class:`Pause` and :data:`TRADE` steps:

1. In-process first: the grace cache and single-flight of a
   :class:`~crossmint_wsgi.LocalCoordinator`, so the threads or tasks of one
   process make one trip to the store between them.
2. In one transaction, read the secret's record or take its lock. The
   process holding the lock calls Crossmint and stores the outcome, sealed
   (:mod:`~crossmint_wsgi.sealing`); the others poll for it, at most ``wait``.
3. A logout writes the secret, the secrets of its chain and the JWT to the
   store's revocations; a refresh that settles after it finds them, stores
   nothing, and hands its new pair back to be revoked
   (:class:`~crossmint_wsgi.coordination.LoggedOutDuringRefresh`).

Each process runs one daemon thread that reads new revocations every
:data:`POLL_INTERVAL` into the auth's revoked JWTs and its grace cache:
requests never touch the store unless they refresh or log out.

The store failing (locked past its timeout, disk full) never fails a request:
the step goes on as if there were no store, and a warning says so at most
once a minute.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar, Union

import anyio
import anyio.to_thread

from .caches import DEFAULT_BUDGET, CacheStats
from .coordination import (
    LOGGED_OUT,
    AsyncLocalCoordinator,
    LocalCoordinator,
    LoggedOutDuringRefresh,
    Successor,
    secret_digest,
)
from .effects import SharedKeySet
from .errors import CrossmintAuthError, ErrorCode
from .host_store import SECRET, TOKEN, HostStore, StoreBusy, StoreUnavailable
from .models import AuthMaterial
from .revocations import RevokedTokens
from .sealing import Outcome, RecordCipher, unwrap

__all__ = [
    "POLL_INTERVAL",
    "TRADE",
    "AsyncHostCoordinator",
    "HostCoordinator",
    "HostSettings",
    "Pause",
    "StoreCall",
    "announce_flow",
    "keys_flow",
    "revoke_flow",
    "trade_flow",
]

logger = logging.getLogger("crossmint_wsgi")

#: Seconds between a process's looks for other processes' logouts: ten reads
#: of one index a second (~50 us each), so a logout reaches every worker at once.
POLL_INTERVAL = 0.1
#: The host store's records are sealed apart from Redis's.
_SALT = b"crossmint-wsgi host store"
#: How far a session's chain of secrets is followed on logout.
_MAX_CHAIN = 8

#: Why a host-only look for the key set found none.
_NOT_ASKED = CrossmintAuthError(
    ErrorCode.UPSTREAM_UNAVAILABLE,
    "Crossmint's key set failed moments ago, and no worker of this host has it",
)

LocalT = TypeVar("LocalT", LocalCoordinator, AsyncLocalCoordinator)
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class StoreCall:
    """Call ``function(*args)`` on the store (blocking). Result: its value, or ``None``
    when the store failed (already logged)."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclasses.dataclass(frozen=True)
class Pause:
    """Sleep ``seconds``. Result: ``None``."""

    seconds: float


class _Trade:
    """Call Crossmint (the ``perform`` the auth gave). Result: its value, or the error."""


TRADE = _Trade()
Step = Union[StoreCall, Pause, _Trade]  # noqa: UP007 - a runtime alias on 3.10


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """How long the workers of a host wait for each other.

    :param grace: seconds a refresh result is served to requests still
        carrying the old secret.
    :param wait: the longest a request waits for another process's trade
        before trading itself; keep it above the auth's ``timeout``.
    :param lock_ttl: how long a trader holds the lock (a trader that dies
        blocks the others at most this long).
    :param poll_interval: seconds between a waiter's looks.
    :param rejected_ttl: seconds Crossmint's refusal of a secret is shared.
    :param unavailable_ttl: seconds a failure to reach Crossmint is shared.
    :param revoked_window: seconds a logged-out secret stays refused.
    """

    grace: float = 30.0
    wait: float = 8.0
    lock_ttl: float = 7.0
    poll_interval: float = 0.02
    rejected_ttl: float = 5.0
    unavailable_ttl: float = 1.0
    revoked_window: float = 600.0

    @classmethod
    def for_timeout(cls, timeout: float, grace: float) -> HostSettings:
        """Settings that outlast a Crossmint call of ``timeout`` seconds, and never
        hold a request past 10 s more."""
        lock_ttl = min(timeout + 1.0, 10.0)
        return cls(grace=grace, lock_ttl=lock_ttl, wait=lock_ttl + 0.5)


def _cipher(secret: str, digest: str) -> RecordCipher:
    return RecordCipher.of(
        secret, "host:" + digest, digest[:12], salt=_SALT, where="the host store"
    )


def _ttl(outcome: Outcome, settings: HostSettings) -> float:
    if isinstance(outcome, AuthMaterial):
        return settings.grace
    if outcome.code is ErrorCode.SESSION_EXPIRED:
        return settings.rejected_ttl
    return settings.unavailable_ttl


def trade_flow(
    store: HostStore, secret: str, settings: HostSettings
) -> Generator[Step, Any, AuthMaterial]:
    """One secret's trade among the host's processes: its record, or the lock and a trade.

    :raises CrossmintAuthError: what the trade (here or elsewhere) came to;
        ``SESSION_EXPIRED`` when the session was logged out.
    """
    digest = secret_digest(secret)
    cipher = _cipher(secret, digest)
    owner = os.urandom(8).hex()
    deadline = time.monotonic() + settings.wait
    waited = False
    while True:
        claim = yield StoreCall(store.claim, (digest, owner, settings.lock_ttl, None, waited))
        if claim is None:
            return unwrap((yield TRADE))
        if claim.revoked:
            raise LOGGED_OUT
        if claim.record is not None:
            outcome = cipher.unseal(claim.record)
            if outcome is None:
                return unwrap((yield TRADE))
            return unwrap(outcome)
        if claim.won:
            break
        if time.monotonic() >= deadline:
            logger.warning(
                "another worker of this host held the refresh of session %s for more than %.1f s:"
                " refreshing here",
                digest[:12],
                settings.wait,
            )
            return unwrap((yield TRADE))
        waited = True
        yield Pause(settings.poll_interval)
    try:
        outcome = yield TRADE
    except BaseException:
        # Abandoned (a client gone, a cancellation): free the waiters now, not at lock_ttl.
        with contextlib.suppress(StoreUnavailable):
            store.release(digest, owner)
        raise
    successor = (
        secret_digest(outcome.refresh_token.secret) if isinstance(outcome, AuthMaterial) else None
    )
    lasting = isinstance(outcome, AuthMaterial) or outcome.code is ErrorCode.SESSION_EXPIRED
    kept = yield StoreCall(
        store.settle,
        (digest, owner, cipher.seal(outcome), _ttl(outcome, settings), successor, None, lasting),
    )
    if kept is False and isinstance(outcome, AuthMaterial):
        raise LoggedOutDuringRefresh(outcome)
    return unwrap(outcome)


def revoke_flow(
    store: HostStore, secret: str, settings: HostSettings
) -> Generator[Step, Any, list[str]]:
    """End a session's chain for every process of the host.

    The secret (and those it was traded from) is revoked *before* its record
    is read: a trade settling meanwhile either finds the revocation or has
    stored the record this reads.

    :returns: the successor secrets found, to be revoked at Crossmint too.
    """
    digest = secret_digest(secret)
    expires = time.time() + settings.revoked_window
    older = yield StoreCall(store.predecessors, (digest,))
    yield StoreCall(store.revoke, (SECRET, [digest, *(older or [])], expires))
    successors: list[str] = []
    current = secret
    for _ in range(_MAX_CHAIN):
        current_digest = secret_digest(current)
        record = yield StoreCall(store.record, (current_digest,))
        outcome = _cipher(current, current_digest).unseal(record) if record else None
        if not isinstance(outcome, AuthMaterial):
            break
        current = outcome.refresh_token.secret
        if current == secret or current in successors:
            break
        successors.append(Successor(outcome))
    if successors:
        digests = [secret_digest(each) for each in successors]
        yield StoreCall(store.revoke, (SECRET, digests, expires))
    return successors


def announce_flow(store: HostStore, digest: str, exp: float) -> Generator[Step, Any, None]:
    """Tell every process of the host that a JWT was logged out, and answer only once
    each has had time to read it: the logout's answer comes after it is honoured."""
    told = yield StoreCall(store.revoke, (TOKEN, [digest], exp))
    if told:
        yield Pause(POLL_INTERVAL * 1.5)


def keys_flow(
    store: HostStore, host_only: bool = False
) -> Generator[Step, Any, dict[str, Any] | SharedKeySet]:
    """Crossmint's key set, shared with the host: fetched (:data:`TRADE`) and
    left for the others, or, when Crossmint failed, the host's last copy.

    :param host_only: only the host's copy: Crossmint is not asked.
    :raises CrossmintAuthError: Crossmint failed and the host has no copy.
    """
    fetched = _NOT_ASKED if host_only else (yield TRADE)
    if isinstance(fetched, CrossmintAuthError):
        shared = yield StoreCall(store.keys)
        if shared is None:
            raise fetched
        return SharedKeySet(shared[0], shared[1], fetched.message)
    yield StoreCall(store.put_keys, (fetched, time.time()))
    return dict(fetched)


class _Listener:
    """Reads the host's new revocations into this process, from a daemon thread.

    The thread holds the listener weakly: once the auth that owns it is
    gone (a test's, a reloaded app's), the thread ends.
    """

    def __init__(
        self, store: HostStore, revoked: RevokedTokens, revoke_secret: Callable[[str], object]
    ) -> None:
        self._store = store
        self._revoked = revoked
        self._revoke_secret = revoke_secret
        self._stop = threading.Event()
        self._after = 0

    def start(self) -> _Listener:
        thread = threading.Thread(
            target=_listen,
            args=(weakref.ref(self), self._stop),
            name="crossmint-wsgi host revocations",
            daemon=True,
        )
        _threads[thread] = self._stop
        thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> None:
        """Read what is new once."""
        now = time.time()
        for each in self._store.revocations(self._after, now):
            self._after = max(self._after, each.seq)
            if each.kind == TOKEN:
                self._revoked.add(each.digest, each.expires, now)
            elif each.kind == SECRET:
                self._revoke_secret(each.digest)


#: Every listener thread of this process and its stop event.
_threads: weakref.WeakKeyDictionary[threading.Thread, threading.Event] = weakref.WeakKeyDictionary()


@atexit.register
def _stop_listeners() -> None:
    # Before the interpreter tears down: a daemon thread caught inside SQLite
    # during finalization can crash the process on its way out.
    threads = list(_threads.items())
    for _, stop in threads:
        stop.set()
    for thread, _ in threads:
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=2.0)


def _listen(listener: weakref.ref[_Listener], stop: threading.Event) -> None:
    while True:
        found = listener()
        if found is None:
            return
        with contextlib.suppress(StoreUnavailable):
            found.poll()
        del found
        if stop.wait(POLL_INTERVAL):
            return


class _HostBase(Generic[LocalT]):
    """What both host coordinators hold: the store, the settings, each process's
    local coordinator and revocation listener."""

    def __init__(
        self,
        store: HostStore,
        settings: HostSettings | None = None,
        *,
        budget: int = DEFAULT_BUDGET // 8,
    ) -> None:
        self.store = store
        self.settings = settings or HostSettings()
        self.budget = budget
        self._pid = -1
        self._local: LocalT | None = None
        self._listener: _Listener | None = None
        self._listener_pid = -1
        self._process_lock = threading.Lock()
        self._warned_at = float("-inf")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def _new_local(self) -> LocalT:
        raise NotImplementedError

    def _process(self) -> LocalT:
        """This process's in-process coordinator (a new one after a fork)."""
        if self._local is None or self._pid != os.getpid():
            with self._process_lock:
                if self._local is None or self._pid != os.getpid():
                    self._local = self._new_local()
                    self._pid = os.getpid()
        return self._local

    def stats(self) -> CacheStats:
        """This process's grace cache's figures."""
        return self._process().stats()

    def listen(self, revoked: RevokedTokens) -> None:
        """Have this process learn the host's logouts, into ``revoked`` and its grace cache."""
        if self._listener_pid == os.getpid():
            return
        self._listener_pid = os.getpid()
        cache = self._process().cache
        self._listener = _Listener(self.store, revoked, cache.revoke).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and self._listener_pid == os.getpid():
            listener.stop()
        self._listener_pid = -1

    def _store_call(self, step: StoreCall) -> Any:
        try:
            return step.function(*step.args)
        except StoreUnavailable as error:
            return self._failed(error)

    def _failed(self, error: StoreUnavailable) -> None:
        """What a failed store call comes to: ``None``, and a warning now and then."""
        now = time.monotonic()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            logger.warning(
                "the host store %s failed (%s): this worker goes on alone until it answers",
                self.store.path,
                error,
            )

    def _vet(self, secret: str) -> Generator[Step, Any, bool]:
        """Whether another process logged the session of ``secret`` out."""
        revoked = yield StoreCall(self.store.is_revoked, (secret_digest(secret),))
        return bool(revoked)


class HostCoordinator(_HostBase[LocalCoordinator]):
    """Refreshes and logouts shared by the worker processes of one host, for threads (WSGI).

    The auths create one by default (see their ``host_store`` setting); make
    one yourself only to place the store elsewhere or tune its waits.

    :param store: the host's :class:`~crossmint_wsgi.host_store.HostStore`.
    :param settings: how long workers wait for each other.
    :param budget: bound on the bytes of each process's grace cache.
    """

    def _new_local(self) -> LocalCoordinator:
        return LocalCoordinator(self.settings.grace, budget=self.budget)

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        """Material for ``secret``: from this process, from the host, or from ``perform()``."""
        local = self._process()
        if self._drive(self._vet(secret)):
            local.revoke(secret)
            raise LOGGED_OUT
        return local.refresh(
            secret, lambda: self._drive(trade_flow(self.store, secret, self.settings), perform)
        )

    def trade(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        """``perform()`` once among the host's processes (the trade beneath
        another coordinator: Redis shares it between hosts, this within one)."""
        result: AuthMaterial = self._drive(trade_flow(self.store, secret, self.settings), perform)
        return result

    def revoke(self, secret: str) -> list[str]:
        """End the session of ``secret`` in this process and every process of the host."""
        successors = self._process().revoke(secret)
        shared = self._drive(revoke_flow(self.store, secret, self.settings))
        return list(dict.fromkeys([*successors, *shared]))

    def revoke_token(self, digest: str, exp: float) -> None:
        """Tell every process of the host that a JWT was logged out until ``exp``
        (see :func:`announce_flow`)."""
        self._drive(announce_flow(self.store, digest, exp))

    def keys(self, fetch: Callable[[], dict[str, Any]] | None) -> dict[str, Any] | SharedKeySet:
        """Crossmint's key set from ``fetch()``, left for the host's other workers;
        when it fails, or with no ``fetch``, the copy one of them fetched last
        (see :func:`keys_flow`)."""
        return self._drive(keys_flow(self.store, fetch is None), fetch)

    def close(self) -> None:
        """Stop listening for logouts and close this process's connection."""
        self._stop_listening()
        self.store.close()

    def _drive(self, flow: Generator[Step, Any, R], perform: Callable[[], Any] | None = None) -> R:
        with contextlib.closing(flow):
            try:
                step = next(flow)
                while True:
                    if isinstance(step, StoreCall):
                        result = self._store_call(step)
                    elif isinstance(step, Pause):
                        time.sleep(step.seconds)
                        result = None
                    else:
                        assert perform is not None
                        try:
                            result = perform()
                        except CrossmintAuthError as error:
                            result = error
                    step = flow.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


class AsyncHostCoordinator(_HostBase[AsyncLocalCoordinator]):
    """As :class:`HostCoordinator`, for async code (ASGI apps) on asyncio or trio.

    The store's calls run in worker threads: a write that waits for another
    process never blocks the event loop.
    """

    def _new_local(self) -> AsyncLocalCoordinator:
        return AsyncLocalCoordinator(self.settings.grace, budget=self.budget)

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        """As :meth:`HostCoordinator.refresh`, awaited."""
        local = self._process()
        if await self._drive(self._vet(secret)):
            await local.revoke(secret)
            raise LOGGED_OUT

        async def shared() -> AuthMaterial:
            return await self._drive(trade_flow(self.store, secret, self.settings), perform)

        return await local.refresh(secret, shared)

    async def trade(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        """As :meth:`HostCoordinator.trade`, awaited."""
        result: AuthMaterial = await self._drive(
            trade_flow(self.store, secret, self.settings), perform
        )
        return result

    async def revoke(self, secret: str) -> list[str]:
        """As :meth:`HostCoordinator.revoke`, awaited."""
        successors = await self._process().revoke(secret)
        shared = await self._drive(revoke_flow(self.store, secret, self.settings))
        return list(dict.fromkeys([*successors, *shared]))

    async def revoke_token(self, digest: str, exp: float) -> None:
        """As :meth:`HostCoordinator.revoke_token`, awaited."""
        await self._drive(announce_flow(self.store, digest, exp))

    async def keys(
        self, fetch: Callable[[], Awaitable[dict[str, Any]]] | None
    ) -> dict[str, Any] | SharedKeySet:
        """As :meth:`HostCoordinator.keys`, awaited."""
        return await self._drive(keys_flow(self.store, fetch is None), fetch)

    async def aclose(self) -> None:
        """As :meth:`HostCoordinator.close`."""
        self._stop_listening()
        self.store.close()

    async def _offload(self, step: StoreCall) -> Any:
        # Inline first: a call takes well under a millisecond, while a hop to a
        # worker thread and back costs the GIL's switch interval each way. Only
        # when another process holds the write lock does the wait leave the loop.
        try:
            with HostStore.impatient():
                return step.function(*step.args)
        except StoreBusy:
            return await anyio.to_thread.run_sync(self._store_call, step)
        except StoreUnavailable as error:
            return self._failed(error)

    async def _drive(
        self,
        flow: Generator[Step, Any, R],
        perform: Callable[[], Awaitable[Any]] | None = None,
    ) -> R:
        with contextlib.closing(flow):
            try:
                step = next(flow)
                while True:
                    if isinstance(step, StoreCall):
                        result = await self._offload(step)
                    elif isinstance(step, Pause):
                        await anyio.sleep(step.seconds)
                        result = None
                    else:
                        assert perform is not None
                        try:
                            result = await perform()
                        except CrossmintAuthError as error:
                            result = error
                    step = flow.send(result)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
