"""The middlewares' memory of sessions verified moments ago, keyed by their cookies.

A browser sends the same cookies with every request: the first request is
verified in full, and the next ones, until the JWT expires, cost a lookup.
Only the auth cookies decide a request, so besides the exact header (the
cheapest key: one hash, no parsing) each session is also found by a digest
of its auth cookies alone, in order, when other cookies change between
requests. The header is kept once, as the layer gives it (ASGI's bytes or
WSGI's text): a session costs one header, not three.
"""

from __future__ import annotations

import hashlib
import re
from typing import Generic, TypeVar

from .caches import EXPIRED, BoundedCache, CacheStats
from .models import Session
from .revocations import RevokedTokens, token_digest

V = TypeVar("V")

__all__ = ["MAX_KEY", "RecentSessions", "auth_pairs", "pairs_key"]

#: Longer headers are never keys: a client cannot make one request fill the cache.
MAX_KEY = 4096

#: What a remembered session costs beyond its key and tokens: Session, claims, Proceed.
SESSION_OVERHEAD = 600
#: What the second key of a session costs: its digest, and the entry.
PAIRS_KEY_SIZE = 16

_AUTH_PAIR = re.compile(r"crossmint-[\w-]*=[^;]*")


def auth_pairs(cookie: str) -> str:
    """The auth cookies of a header, in order, as one key that ignores every other cookie."""
    return ";".join(_AUTH_PAIR.findall(cookie))


def pairs_key(cookie: str) -> bytes:
    """The second key of a session: a digest of its auth cookies, 16 bytes however long they are.

    A second preimage of BLAKE2b-128 is out of reach, so a digest stands for
    the cookies as well as the cookies themselves would.
    """
    text = auth_pairs(cookie).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16, person=b"crossmint-pairs").digest()


class RecentSessions(Generic[V]):
    """Decisions (``V``) for sessions verified before, until each JWT's ``exp``.

    :param budget: the most bytes it holds (see :mod:`~crossmint_wsgi.caches`).
    :param max_sessions: the most sessions it holds.
    """

    def __init__(
        self, budget: int, max_sessions: int, revoked: RevokedTokens | None = None
    ) -> None:
        # Two keys a session: the header as the layer gives it, and the digest
        # of its auth pairs. Each holds the decision and its JWT's digest,
        # checked against logouts.
        self._cache: BoundedCache[str | bytes, tuple[V, str]] = BoundedCache(
            "sessions", budget if max_sessions > 0 else 0, max_entries=2 * max_sessions
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
            self._cache.hits += 1
        else:
            if (b"crossmint-" if isinstance(cookie, bytes) else "crossmint-") not in cookie:  # type: ignore[operator]
                return None
            text = cookie.decode("latin-1") if isinstance(cookie, bytes) else cookie
            pairs = self._cache.get(pairs_key(text), now)
            if pairs is None or pairs is EXPIRED:
                return None
            found = pairs
        if self._revoked and found[1] in self._revoked:
            return None
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
        """Remember the decision about ``session`` for a header until ``deadline``.

        ``raw_cookie`` (ASGI's bytes), when given, is the key the layer looks
        up; the text ``cookie`` otherwise.
        """
        refresh = session.refresh_token.secret if session.refresh_token else ""
        value = (decision, token_digest(session.jwt))
        exact = raw_cookie if raw_cookie is not None else cookie
        # The session itself is charged once, with the first key that holds it.
        size = len(session.jwt) + len(refresh) + SESSION_OVERHEAD
        if len(exact) <= MAX_KEY:
            if not self._cache.put(exact, value, deadline, size + len(exact), now):
                return
            size = 0
        self._cache.put(pairs_key(cookie), value, deadline, size + PAIRS_KEY_SIZE, now)

    def stats(self) -> CacheStats:
        """Entries (up to two a session), bytes, hits, misses and evictions."""
        return self._cache.stats()
