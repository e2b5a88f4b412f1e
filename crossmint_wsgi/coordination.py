"""Refresh coordination in one process: single-flight calls and the grace cache.

Refresh tokens rotate: once one request has traded secret S, a second one
still carrying S would be refused and its user logged out. So concurrent
refreshes of S share one upstream call, and for a short grace window
afterwards requests still carrying S receive the material that call returned.
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

import anyio

from .caches import DEFAULT_BUDGET, EXPIRED, BoundedCache, CacheStats
from .errors import CrossmintAuthError, ErrorCode
from .models import AuthMaterial

__all__ = [
    "LOGGED_OUT",
    "AsyncLocalCoordinator",
    "AsyncRefreshCoordinator",
    "AsyncSingleFlight",
    "DoubtedRefusal",
    "GraceCache",
    "LocalCoordinator",
    "LoggedOutDuringRefresh",
    "RefreshCoordinator",
    "SingleFlight",
    "Successor",
    "secret_digest",
]

T = TypeVar("T")


def secret_digest(secret: str) -> str:
    """A stable, non-reversible name for a secret: cache keys and log lines use it."""
    # surrogatepass: whatever a client managed to send, hashing never raises.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


#: What a secret of a logged-out session gets for as long as this process remembers it.
LOGGED_OUT = CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "the session was logged out")


class Successor(str):
    """A refresh secret a session was refreshed into, as a coordinator's
    ``revoke`` returns it: the secret itself, carrying the JWT minted beside
    it, which a logout must refuse too (the browser may hold it already)."""

    jwt: str

    def __new__(cls, material: AuthMaterial) -> Successor:
        made = super().__new__(cls, material.refresh_token.secret)
        made.jwt = material.jwt
        return made


class DoubtedRefusal(CrossmintAuthError):
    """Crossmint refused a secret while the hosts could not coordinate (Redis
    down): another host may have traded it a moment ago and handed the
    browser the new pair, so the refusal is no proof that the session ended.

    ``UPSTREAM_UNAVAILABLE`` (cookies kept) for a request with an authentic
    JWT; the core answers a stranger with the :attr:`refusal` itself.
    """

    def __init__(self, refusal: CrossmintAuthError) -> None:
        super().__init__(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "Crossmint refused the refresh secret while Redis could not coordinate the hosts:"
            " another host may have traded it, so the session is kept; try again",
        )
        self.refusal = refusal


class LoggedOutDuringRefresh(CrossmintAuthError):
    """The session was logged out while a refresh of it was under way.

    Crossmint minted a new pair all the same: the *orphan*, which nobody may
    receive. The flow that meets this error first revokes it (:meth:`take`
    hands it out once, however many requests shared the refresh); every one
    of them answers ``SESSION_EXPIRED``.
    """

    def __init__(self, orphan: AuthMaterial) -> None:
        super().__init__(ErrorCode.SESSION_EXPIRED, "the session was logged out during its refresh")
        self._orphan: AuthMaterial | None = orphan
        self._lock = threading.Lock()

    def take(self) -> AuthMaterial | None:
        """The orphaned pair, to the first caller only."""
        with self._lock:
            orphan, self._orphan = self._orphan, None
        return orphan


# Tombstones kept at least, whatever the grace cache's bound.
_MIN_TOMBSTONES = 10_000

# How far a chain of refreshes is followed: a session refreshes at most every
# few minutes, so a grace window sees two or three of its secrets at most.
_MAX_CHAIN = 8


class GraceCache:
    """What a refresh of a secret recently came to, keyed by the secret's digest.

    Holds new material for ``window`` seconds, or Crossmint's refusal of the
    secret for ``refusal_window`` seconds (a refused secret never comes back,
    so requests still carrying it need not ask again). It also knows each
    session's *chain*: the secret a refresh traded and the one it received,
    so a logout can end every secret of the session it has seen
    (:meth:`revoke`).

    :param window: seconds new material is served after the refresh.
    :param max_entries: bound on the entries (outcomes and the links between them).
    :param clock: returns the current time in seconds.
    :param refusal_window: seconds a refusal is remembered.
    :param revoked_window: seconds a logged-out secret is refused without
        asking Crossmint (at least ``window``).
    :param budget: bound on the bytes held (see :mod:`~crossmint_wsgi.caches`).
    """

    def __init__(
        self,
        window: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        refusal_window: float = 5.0,
        revoked_window: float = 600.0,
        budget: int = DEFAULT_BUDGET // 8,
    ) -> None:
        self.window = window
        self.max_entries = max_entries
        self.refusal_window = refusal_window
        self.revoked_window = max(revoked_window, window)
        self._clock = clock
        # digest -> material or refusal; "<" + digest -> the digest whose
        # refresh produced it, so a logout with the newest secret finds the older ones.
        # max_entries counts the links too: the outcomes alone never exceed it.
        self._cache: BoundedCache[str, AuthMaterial | CrossmintAuthError | str] = BoundedCache(
            "refreshes", budget if max_entries > 0 else 0, max_entries=max_entries
        )
        #: Logged-out digests -> until when, apart from the results: a flood of
        #: logouts evicts older tombstones, never a result a real session needs.
        self._tombstones: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.max_tombstones = max(max_entries, _MIN_TOMBSTONES)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Secrets with an entry, live or not yet dropped (links between them not counted)."""
        return sum(1 for key in self._cache.held_keys() if not key.startswith("<"))

    def get(self, digest: str) -> AuthMaterial | None:
        """The material for a digest, if fresh.

        :raises CrossmintAuthError: Crossmint refused this secret moments ago,
            or its session was logged out.
        """
        now = self._clock()
        if self._tombstones and self._dead(digest, now):
            raise LOGGED_OUT
        found = self._cache.get(digest, now)
        if found is None or found is EXPIRED or isinstance(found, str):
            return None
        if isinstance(found, CrossmintAuthError):
            raise found
        # A secret it was refreshed into, directly or further on, was logged out: so is this.
        later = found
        for _ in range(_MAX_CHAIN):
            successor = secret_digest(later.refresh_token.secret)
            if self._dead(successor, now):
                raise LOGGED_OUT
            entry = self._cache.peek(successor)
            if entry is None or entry[0] <= now or not isinstance(entry[1], AuthMaterial):
                break
            later = entry[1]
        return found

    def put(self, digest: str, material: AuthMaterial, ttl: float | None = None) -> None:
        """Remember material for ``ttl`` seconds (default: the window)."""
        ttl = self.window if ttl is None else min(ttl, self.window)
        if ttl <= 0:
            return
        now = self._clock()
        if self._dead(digest, now):
            # A refresh in flight during the logout lands late: still logged out.
            return
        size = 2 * len(digest) + len(material.jwt) + len(material.refresh_token.secret) + 300
        if self._cache.put(digest, material, now + ttl, size, now):
            successor = secret_digest(material.refresh_token.secret)
            self._cache.put("<" + successor, digest, now + ttl, 2 * len(digest), now, force=True)

    def logged_out(self, digest: str) -> bool:
        """Whether the session of this secret was logged out here (and not forgotten yet)."""
        return self._dead(digest, self._clock())

    def refuse(self, digest: str, error: CrossmintAuthError) -> None:
        """Remember a failed refresh, if Crossmint refused the secret itself.

        Only ``SESSION_EXPIRED`` is final; an unavailable Crossmint is asked
        again. A refusal judged while the hosts could not coordinate
        (:class:`DoubtedRefusal`) is remembered too: asking again would only
        be refused again, after riding the failover out once more.
        """
        now = self._clock()
        final = error.code is ErrorCode.SESSION_EXPIRED or isinstance(error, DoubtedRefusal)
        if final and not self._dead(digest, now):
            self._cache.put(digest, error, now + self.refusal_window, len(digest) + 100, now)

    def revoke(self, digest: str) -> list[str]:
        """End the session a secret belongs to, as far as this cache knows it.

        Every secret of the chain (the one given, those it was refreshed from,
        those it was refreshed into) is refused from now on for
        ``revoked_window`` seconds, and none yields material again.

        :returns: the successor secrets the cache knew, newest last: they
            are still valid at Crossmint and must be revoked there too.
        """
        chain = [digest]
        previous = self._cache.peek("<" + digest)
        while previous is not None and isinstance(previous[1], str) and previous[1] not in chain:
            chain.append(previous[1])
            previous = self._cache.peek("<" + previous[1])
        successors: list[str] = []
        entry = self._cache.peek(digest)
        while entry is not None and isinstance(entry[1], AuthMaterial):
            secret = entry[1].refresh_token.secret
            current = secret_digest(secret)
            if current in chain:
                break
            successors.append(Successor(entry[1]))
            chain.append(current)
            entry = self._cache.peek(current)
        until = self._clock() + self.revoked_window
        with self._lock:
            for name in chain:
                self._tombstones[name] = until
                self._tombstones.move_to_end(name)
            while len(self._tombstones) > self.max_tombstones:
                self._tombstones.popitem(last=False)
        return successors

    def stats(self) -> CacheStats:
        """Entries (outcomes and the links between them), bytes, hits, misses, evictions."""
        return self._cache.stats()

    def _dead(self, digest: str, now: float) -> bool:
        until = self._tombstones.get(digest)
        return until is not None and until > now


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

    def revoke_token(self, digest: str, exp: float) -> None:
        """Tell every process this coordinator reaches that a JWT was logged
        out (by :func:`~crossmint_wsgi.revocations.token_digest`), until ``exp``."""
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

    async def revoke_token(self, digest: str, exp: float) -> None:
        """As :meth:`RefreshCoordinator.revoke_token`."""
        ...


class _InProcess(Generic[T]):
    """What both in-process coordinators keep (the grace cache, a single-flight
    of type ``T``) and do with Crossmint's outcomes."""

    def __init__(
        self, grace: float = 30.0, max_entries: int = 10_000, budget: int = DEFAULT_BUDGET // 8
    ) -> None:
        self.cache = GraceCache(grace, max_entries, budget=budget)
        self._flight = self._new_flight()

    @staticmethod
    def _new_flight() -> T:
        raise NotImplementedError

    def stats(self) -> CacheStats:
        """The grace cache's figures."""
        return self.cache.stats()

    def _settle(self, digest: str, outcome: AuthMaterial | CrossmintAuthError) -> AuthMaterial:
        """Remember what Crossmint said about a secret; the material, or raise its refusal.

        :raises LoggedOutDuringRefresh: the session was logged out (here, or
            in another process as the outcome says) while Crossmint was asked.
        """
        if isinstance(outcome, AuthMaterial) and self.cache.logged_out(digest):
            outcome = LoggedOutDuringRefresh(outcome)
        if isinstance(outcome, LoggedOutDuringRefresh):
            # Its chain, the orphan's secret included, is refused from now on.
            orphan = outcome.take()
            if orphan is not None:
                self.cache.revoke(digest)
                self.cache.revoke(secret_digest(orphan.refresh_token.secret))
                outcome = LoggedOutDuringRefresh(orphan)
            raise outcome
        if isinstance(outcome, CrossmintAuthError):
            self.cache.refuse(digest, outcome)
            raise outcome
        self.cache.put(digest, outcome)
        return outcome


class LocalCoordinator(_InProcess[SingleFlight[AuthMaterial]]):
    """In-process coordination for threads: single-flight plus the grace cache.

    :param grace: seconds the result of a refresh is served to requests that
        still carry the old secret.
    :param max_entries: bound on the grace cache's entries.
    :param budget: bound on the grace cache's bytes.
    """

    _new_flight = staticmethod(SingleFlight[AuthMaterial])

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
                return self._settle(digest, perform())
            except CrossmintAuthError as error:
                return self._settle(digest, error)

        return self._flight.do(digest, once)

    def revoke(self, secret: str) -> list[str]:
        return self.cache.revoke(secret_digest(secret))

    def revoke_token(self, digest: str, exp: float) -> None:
        """Nothing to do: in one process, the auth's own set of revoked JWTs is the whole story."""


class AsyncLocalCoordinator(_InProcess[AsyncSingleFlight[AuthMaterial]]):
    """In-process coordination for tasks: single-flight plus the grace cache.

    Takes :class:`LocalCoordinator`'s parameters.
    """

    _new_flight = staticmethod(AsyncSingleFlight[AuthMaterial])

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        digest = secret_digest(secret)
        cached = self.cache.get(digest)
        if cached is not None:
            return cached

        async def once() -> AuthMaterial:
            try:
                return self._settle(digest, await perform())
            except CrossmintAuthError as error:
                return self._settle(digest, error)

        return await self._flight.do(digest, once)

    async def revoke(self, secret: str) -> list[str]:
        return self.cache.revoke(secret_digest(secret))

    async def revoke_token(self, digest: str, exp: float) -> None:
        """As :meth:`LocalCoordinator.revoke_token`."""
