"""JWTs logged out before their ``exp``: refused from then on, at the cost of nothing per request.

Crossmint's JWTs are self-contained: a copy taken before a logout keeps
verifying until its ``exp``. A logout therefore records the JWT here, by
digest, until then; every cache that could serve it (verified tokens, the
middlewares' recent sessions) checks this set, which is empty (one truth
test) until a logout happens. With the Redis coordinator, every process
learns each logout within moments (see :mod:`crossmint_wsgi.redis.revocations`).
"""

from __future__ import annotations

import hashlib
import threading

__all__ = ["RevokedTokens", "token_digest"]


def token_digest(token: str) -> str:
    """A JWT's name in the set and on the wire: never the JWT itself."""
    # A domain apart from secret_digest's: a JWT and a secret never share a name.
    return hashlib.sha256(b"jwt\x00" + token.encode("utf-8", "surrogatepass")).hexdigest()


class RevokedTokens:
    """Digests of logged-out JWTs, each kept until its ``exp``.

    :param max_entries: the most held; past it the ones expiring soonest go.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        #: digest -> exp. Read directly on hot paths (``if digests and d in digests``):
        #: the dict object is never replaced.
        self.digests: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.digests)

    def __contains__(self, digest: object) -> bool:
        return digest in self.digests

    def add(self, digest: str, exp: float, now: float) -> bool:
        """Refuse the JWT with this digest until ``exp``.

        :returns: whether it was new here.
        """
        if exp <= now:
            return False
        with self._lock:
            new = digest not in self.digests
            self.digests[digest] = max(exp, self.digests.get(digest, exp))
            if len(self.digests) > self.max_entries:
                self._prune(now)
        return new

    def _prune(self, now: float) -> None:
        # With the lock held: the expired first, then those expiring soonest.
        for digest, exp in list(self.digests.items()):
            if exp <= now:
                del self.digests[digest]
        if len(self.digests) > self.max_entries:
            # Down to nine tenths, so the next additions do not sort again.
            room = self.max_entries * 9 // 10
            keep = sorted(self.digests.items(), key=lambda item: item[1])[-room:]
            self.digests.clear()
            self.digests.update(keep)
