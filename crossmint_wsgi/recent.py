"""The middlewares' memory of sessions verified moments ago, keyed by their cookies.

A browser sends the same cookies with every request: the first request is
verified in full, and the next ones, until the JWT expires, cost a lookup.
Only the auth cookies decide a request, so besides the exact header (the
cheapest key: one hash, no parsing) each session is also found by a digest
of its auth cookies alone, in order, when other cookies change between
requests.

The exact header is kept as the key it is (ASGI's bytes or WSGI's text): a
dict lookup by it costs one hash and one comparison, less than any digest of
it, and a hit is exact, not probable.
"""

from __future__ import annotations

import hashlib
from typing import Generic, TypeVar

from .caches import EXPIRED, BoundedCache, CacheStats
from .cookies import auth_cookie_pairs
from .models import Session
from .revocations import RevokedTokens, token_digest

V = TypeVar("V")

__all__ = ["MAX_KEY", "RecentSessions", "auth_pairs", "pairs_key"]

#: What a remembered session costs beyond its header, JWT, refresh secret and
#: the cache's own entry: the claims, the Session, the decision and the logout
#: digest (tracemalloc). The JWT and claims may be the verified-token cache's
#: too, but it may drop them first: they are charged here as well.
SESSION_OVERHEAD = 1300
#: What the second key of a session costs: its digest.
PAIRS_KEY_SIZE = 49
#: Longer headers are never keys: a client cannot make one request fill the cache.
MAX_KEY = 4096


def auth_pairs(cookie: str) -> str:
    """The auth cookies of a header, in order, as one text that ignores every
    other cookie: the same text for two headers means the same auth cookies."""
    # Each part with its length: a value read from quotes may hold any character.
    return "".join(
        f"{len(name)}:{name}{len(value)}:{value}" for name, value in auth_cookie_pairs(cookie)
    )


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
    :param max_sessions: the most sessions it holds; ``None`` for as many as
        the budget holds.
    """

    def __init__(
        self, budget: int, max_sessions: int | None, revoked: RevokedTokens | None = None
    ) -> None:
        # Two keys a session: the header as the layer gives it, and the digest
        # of its auth pairs. Both hold one value: the decision and its JWT's
        # digest, checked against logouts.
        self._cache: BoundedCache[str | bytes, tuple[V, str]] = BoundedCache(
            "sessions",
            budget if max_sessions != 0 else 0,
            max_entries=None if max_sessions is None else 2 * max_sessions,
        )
        self._entries = self._cache._entries
        self._last_pairs: tuple[str, bytes] = ("", b"")
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
            pairs = self._cache.get(self._pairs_key(text), now)
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
        # The session is charged once, with the first key that holds it.
        size = len(session.jwt) + len(refresh) + SESSION_OVERHEAD
        if len(exact) <= MAX_KEY:
            if not self._cache.put(exact, value, deadline, size + len(exact), now):
                return
            size = 0
        self._cache.put(self._pairs_key(cookie), value, deadline, size + PAIRS_KEY_SIZE, now)

    def _pairs_key(self, text: str) -> bytes:
        # A miss looks the digest up, and the same request remembers its
        # session under it: computed once. Another thread may replace the
        # memo meanwhile; the comparison makes that cost a digest, not a mix-up.
        memo = self._last_pairs
        if memo[0] == text:
            return memo[1]
        key = pairs_key(text)
        self._last_pairs = (text, key)
        return key

    def stats(self) -> CacheStats:
        """Entries (up to two a session), bytes, hits, misses and evictions."""
        return self._cache.stats()
