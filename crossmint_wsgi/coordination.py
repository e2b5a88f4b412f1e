"""Refresh coordination in one process: single-flight calls and the grace cache.

Refresh tokens rotate: once one request has traded secret S, a second one
still carrying S would be refused and its user logged out. So concurrent
refreshes of S share one upstream call, and for a short grace window
afterwards requests still carrying S receive the material that call returned.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio

from .errors import CrossmintAuthError, ErrorCode
from .models import AuthMaterial

__all__ = [
    "LOGGED_OUT",
    "AsyncLocalCoordinator",
    "AsyncRefreshCoordinator",
    "AsyncSingleFlight",
    "GraceCache",
    "LocalCoordinator",
    "RefreshCoordinator",
    "SingleFlight",
    "secret_digest",
]

T = TypeVar("T")


def secret_digest(secret: str) -> str:
    """A stable, non-reversible name for a secret: cache keys and log lines use it."""
    return hashlib.sha256(secret.encode()).hexdigest()


#: What a secret of a logged-out session gets for as long as this process remembers it.
LOGGED_OUT = CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "the session was logged out")


class GraceCache:
    """What a refresh of a secret recently came to, keyed by the secret's digest.

    Holds new material for ``window`` seconds, or Crossmint's refusal of the
    secret for ``refusal_window`` seconds (a refused secret never comes back,
    so requests still carrying it need not ask again). It also knows each
    session's *chain*: the secret a refresh traded and the one it received,
    so a logout can end every secret of the session it has seen
    (:meth:`revoke`).

    :param window: seconds new material is served after the refresh.
    :param max_entries: bound on memory; the oldest entries go first.
    :param clock: returns the current time in seconds.
    :param refusal_window: seconds a refusal is remembered.
    :param revoked_window: seconds a logged-out secret is refused without
        asking Crossmint (at least ``window``).
    """

    def __init__(
        self,
        window: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        refusal_window: float = 5.0,
        revoked_window: float = 600.0,
    ) -> None:
        self.window = window
        self.max_entries = max_entries
        self.refusal_window = refusal_window
        self.revoked_window = max(revoked_window, window)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, AuthMaterial | CrossmintAuthError]] = (
            OrderedDict()
        )
        # successor digest -> the digest whose refresh produced it: a logout
        # presenting the newest secret finds the older ones.
        self._previous: dict[str, str] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> AuthMaterial | None:
        """The material for a digest, if fresh.

        :raises CrossmintAuthError: Crossmint refused this secret moments ago,
            or its session was logged out.
        """
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                self._drop(digest)
                return None
        if isinstance(entry[1], CrossmintAuthError):
            raise entry[1]
        return entry[1]

    def put(self, digest: str, material: AuthMaterial, ttl: float | None = None) -> None:
        """Remember material for ``ttl`` seconds (default: the window)."""
        self._put(digest, material, self.window if ttl is None else min(ttl, self.window))

    def refuse(self, digest: str, error: CrossmintAuthError) -> None:
        """Remember a failed refresh, if Crossmint refused the secret itself.

        Only ``SESSION_EXPIRED`` is final; an unavailable Crossmint is asked again.
        """
        if error.code is ErrorCode.SESSION_EXPIRED:
            self._put(digest, error, self.refusal_window)

    def revoke(self, digest: str) -> list[str]:
        """End the session a secret belongs to, as far as this cache knows it.

        Every secret of the chain (the one given, those it was refreshed from,
        those it was refreshed into) is refused from now on for
        ``revoked_window`` seconds, and none yields material again.

        :returns: the successor secrets the cache knew, newest last: they
            are still valid at Crossmint and must be revoked there too.
        """
        successors: list[str] = []
        with self._lock:
            chain = [digest]
            previous = self._previous.get(digest)
            while previous is not None and previous not in chain:
                chain.append(previous)
                previous = self._previous.get(previous)
            current = digest
            while True:
                entry = self._entries.get(current)
                if entry is None or not isinstance(entry[1], AuthMaterial):
                    break
                secret = entry[1].refresh_token.secret
                current = secret_digest(secret)
                if current in chain:
                    break
                successors.append(secret)
                chain.append(current)
        for name in chain:
            self._put(name, LOGGED_OUT, self.revoked_window)
        return successors

    def _drop(self, digest: str) -> None:
        # Called with the lock held.
        entry = self._entries.pop(digest, None)
        if entry is not None and isinstance(entry[1], AuthMaterial):
            successor = secret_digest(entry[1].refresh_token.secret)
            if self._previous.get(successor) == digest:
                del self._previous[successor]

    def _put(self, digest: str, value: AuthMaterial | CrossmintAuthError, ttl: float) -> None:
        if ttl <= 0 or self.max_entries <= 0:
            return
        with self._lock:
            now = self._clock()
            current = self._entries.get(digest)
            if current is not None and current[1] is LOGGED_OUT and value is not LOGGED_OUT:
                # A logged-out secret stays logged out, whatever a late refresh brought.
                return
            self._drop(digest)
            self._entries[digest] = (now + ttl, value)
            if isinstance(value, AuthMaterial):
                self._previous[secret_digest(value.refresh_token.secret)] = digest
            # Drop expired entries from the old end, then enforce the bound.
            while self._entries and next(iter(self._entries.values()))[0] <= now:
                self._drop(next(iter(self._entries)))
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))


class _Call(Generic[T]):
    __slots__ = ("done", "error", "value")

    def __init__(self, done: threading.Event | anyio.Event) -> None:
        self.done = done
        self.value: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Concurrent threads asking for the same key share one call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call[T]] = {}

    def do(self, key: str, call: Callable[[], T]) -> T:
        with self._lock:
            flight = self._calls.get(key)
            leader = flight is None
            if flight is None:
                flight = self._calls[key] = _Call(threading.Event())
        if leader:
            try:
                flight.value = call()
            except Exception as error:
                flight.error = error
            finally:
                with self._lock:
                    del self._calls[key]
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.value  # type: ignore[return-value]


class AsyncSingleFlight(Generic[T]):
    """Concurrent tasks (asyncio or trio) asking for the same key share one call."""

    def __init__(self) -> None:
        self._calls: dict[str, _Call[T]] = {}

    async def do(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            flight = self._calls.get(key)
            if flight is None:
                break
            await flight.done.wait()  # type: ignore[misc]
            if flight.error is not None:
                raise flight.error
            if flight.value is not None:
                return flight.value
            # The leader was cancelled before an answer: try again, perhaps as leader.
        flight = self._calls[key] = _Call(anyio.Event())
        try:
            flight.value = await call()
            return flight.value
        except Exception as error:
            flight.error = error
            raise
        finally:
            del self._calls[key]
            flight.done.set()


@runtime_checkable
class RefreshCoordinator(Protocol):
    """Decides who refreshes a secret, for blocking code (WSGI, threads)."""

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        """Material for ``secret``: from ``perform()``, or shared with others."""
        ...

    def revoke(self, secret: str) -> list[str]:
        """End the session of ``secret`` everywhere this coordinator reaches.

        :returns: successor secrets it knew of, to be revoked at Crossmint too.
        """
        ...


@runtime_checkable
class AsyncRefreshCoordinator(Protocol):
    """Decides who refreshes a secret, for async code (ASGI, asyncio or trio)."""

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        """Material for ``secret``: from ``perform()``, or shared with others."""
        ...

    async def revoke(self, secret: str) -> list[str]:
        """As :meth:`RefreshCoordinator.revoke`."""
        ...


class LocalCoordinator:
    """In-process coordination for threads: single-flight plus the grace cache.

    :param grace: seconds the result of a refresh is served to requests that
        still carry the old secret.
    :param max_entries: bound on the grace cache.
    """

    def __init__(self, grace: float = 30.0, max_entries: int = 10_000) -> None:
        self.cache = GraceCache(grace, max_entries)
        self._flight: SingleFlight[AuthMaterial] = SingleFlight()

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        digest = secret_digest(secret)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached

        def once() -> AuthMaterial:
            # A thread that waited on the lock may find the answer already here.
            hit = self.cache.get(digest)
            if hit is not None:
                return hit
            try:
                material = perform()
            except CrossmintAuthError as error:
                self.cache.refuse(digest, error)
                raise
            self.cache.put(digest, material)
            return material

        return self._flight.do(digest, once)

    def revoke(self, secret: str) -> list[str]:
        return self.cache.revoke(secret_digest(secret))


class AsyncLocalCoordinator:
    """In-process coordination for tasks: single-flight plus the grace cache.

    :param grace: seconds the result of a refresh is served to requests that
        still carry the old secret.
    :param max_entries: bound on the grace cache.
    """

    def __init__(self, grace: float = 30.0, max_entries: int = 10_000) -> None:
        self.cache = GraceCache(grace, max_entries)
        self._flight: AsyncSingleFlight[AuthMaterial] = AsyncSingleFlight()

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        digest = secret_digest(secret)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached

        async def once() -> AuthMaterial:
            try:
                material = await perform()
            except CrossmintAuthError as error:
                self.cache.refuse(digest, error)
                raise
            self.cache.put(digest, material)
            return material

        return await self._flight.do(digest, once)

    async def revoke(self, secret: str) -> list[str]:
        return self.cache.revoke(secret_digest(secret))
