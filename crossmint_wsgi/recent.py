"""The middlewares' memory of sessions verified moments ago, keyed by their cookies.

A browser sends the same cookies with every request: the first request is
verified in full, and the next ones, until the JWT expires, cost a lookup.
Only the auth cookies decide a request, so besides the exact header (the
cheapest key: no parsing) each session is also found by its auth cookies
alone, in order, when other cookies change between requests.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from .caches import EXPIRED, BoundedCache, CacheStats
from .models import Session
from .revocations import RevokedTokens, token_digest

V = TypeVar("V")

__all__ = ["MAX_KEY", "RecentSessions", "auth_pairs"]

#: Longer headers are never keys: a client cannot make one request fill the cache.
MAX_KEY = 4096

#: What a remembered session costs beyond its key and tokens: Session, claims, Proceed.
SESSION_OVERHEAD = 600

_AUTH_PAIR = re.compile(r"crossmint-[\w-]*=[^;]*")


def auth_pairs(cookie: str) -> str:
    """The auth cookies of a header, in order, as one key that ignores every other cookie."""
    return ";".join(_AUTH_PAIR.findall(cookie))


class RecentSessions(Generic[V]):
    """Decisions (``V``) for sessions verified before, until each JWT's ``exp``.

    :param budget: the most bytes it holds (see :mod:`~crossmint_wsgi.caches`).
    :param max_sessions: the most sessions it holds.
    """

    def __init__(
        self, budget: int, max_sessions: int, revoked: RevokedTokens | None = None
    ) -> None:
        # Up to three keys a session: the header as text, as ASGI's bytes, and its auth pairs.
        # Each holds the decision and its JWT's digest, checked against logouts.
        self._cache: BoundedCache[str | bytes, tuple[V, str]] = BoundedCache(
            "sessions", budget if max_sessions > 0 else 0, max_entries=3 * max_sessions
        )
        self._entries = self._cache._entries
        # The dict itself: empty (one truth test) until a logout happens.
        self._revoked = (revoked if revoked is not None else RevokedTokens()).digests

    def __len__(self) -> int:
        return len(self._cache)

    def find(self, cookie: str | bytes, now: float) -> V | None:
        """The decision for a ``Cookie`` header (ASGI's raw bytes or text), if
        remembered and its JWT not logged out since."""
        # The exact header first: a browser resending the same cookies costs one
        # hash. This is every returning request's path: the cache's dict is read
        # directly, a method call less.
        entry = self._entries.get(cookie)
        if entry is not None and entry[0] > now:  # type: ignore[operator]
            found: tuple[V, str] = entry[1]  # type: ignore[assignment]
        else:
            if (b"crossmint-" if isinstance(cookie, bytes) else "crossmint-") not in cookie:  # type: ignore[operator]
                return None
            text = cookie.decode("latin-1") if isinstance(cookie, bytes) else cookie
            pairs = self._cache.get(auth_pairs(text), now)
            if pairs is None or pairs is EXPIRED:
                return None
            found = pairs
        if self._revoked and found[1] in self._revoked:
            return None
        self._cache.hits += 1
        return found[0]

    def remember(
        self,
        cookie: str,
        raw_cookie: bytes | None,
        decision: V,
        session: Session,
        deadline: float,
        now: float,
    ) -> None:
        """Remember the decision about ``session`` for a header until ``deadline``."""
        refresh = session.refresh_token.secret if session.refresh_token else ""
        size = len(session.jwt) + len(refresh) + SESSION_OVERHEAD
        value = (decision, token_digest(session.jwt))
        for key in (cookie, auth_pairs(cookie), raw_cookie):
            if key is not None and len(key) <= MAX_KEY:
                self._cache.put(key, value, deadline, size + len(key), now)

    def stats(self) -> CacheStats:
        """Entries (up to three a session), bytes, hits, misses and evictions."""
        return self._cache.stats()
