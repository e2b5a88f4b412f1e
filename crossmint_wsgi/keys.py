"""The key-set cache policy: how long keys live, when an unknown ``kid`` may refetch.

No I/O here: the flows ask :meth:`KeySetCache.wants_fetch` and feed back what
the driver fetched with :meth:`KeySetCache.store` or :meth:`KeySetCache.fail`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from .caches import CacheStats

__all__ = ["KeySetCache", "import_public_keys"]

logger = logging.getLogger("crossmint_wsgi.keys")

#: Key types of asymmetric algorithms; an ``oct`` key would let a token sign itself.
_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


def import_public_keys(jwks: Mapping[str, Any]) -> dict[str | None, Key]:
    """Import a JWK Set, keeping only asymmetric signing keys, indexed by ``kid``.

    A key this library cannot read (an unknown curve, a malformed entry) is
    skipped and logged, so that one odd key does not take the others down.

    :raises ValueError: not a JWK Set, or no usable key in it.
    """
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("JWK Set has no 'keys' list")
    keys: list[Key] = []
    unreadable: list[str] = []
    for entry in entries:
        # A list or object as kty is unhashable: check the type before the set lookup.
        kty = entry.get("kty") if isinstance(entry, dict) else None
        if not isinstance(kty, str) or kty not in _ASYMMETRIC_KEY_TYPES:
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(KeySet.import_key_set({"keys": [entry]}).keys[0])
        except (JoseError, ValueError, TypeError, KeyError) as error:
            unreadable.append(f"{entry.get('kid')!r}: {type(error).__name__} {error}")
    if unreadable:
        logger.warning("Crossmint key set: skipped unreadable keys: %s", "; ".join(unreadable))
    if not keys:
        raise ValueError("JWK Set holds no usable asymmetric signing key")
    by_kid: dict[str | None, Key] = {key.kid: key for key in keys}
    if len(keys) == 1:
        # A token without kid may use the only key there is.
        by_kid[None] = keys[0]
    return by_kid


class KeySetCache:
    """Crossmint's signing keys and the rules for refetching them.

    - The set is fetched on first use and kept ``ttl`` seconds.
    - A ``kid`` not in a fresh set refetches at most once per
      ``refetch_interval`` (the fetch that filled the cache does not count:
      keys rotated just after it are still picked up).
    - While a fetch is under way, a token whose key is cached verifies with
      it; a token whose key is not waits for the fetch.
    - A failed fetch leaves the cached keys serving (stale-if-error), retried
      after ``refetch_interval``; with nothing cached, after ``failure_backoff``.

    :param ttl: seconds a fetched key set is fresh.
    :param refetch_interval: at most one refetch per this many seconds for
        a ``kid`` that is not in the set; also how long stale keys keep
        serving after a failed refetch before the next attempt.
    :param failure_backoff: after a failed fetch with nothing cached,
        requests fail fast for this many seconds instead of each waiting
        for Crossmint.
    :param static: a JWK Set to use instead of fetching; never refetched.
    """

    def __init__(
        self,
        *,
        ttl: float = 600.0,
        refetch_interval: float = 30.0,
        failure_backoff: float = 1.0,
        static: Mapping[str, Any] | None = None,
    ) -> None:
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self.failure_backoff = failure_backoff
        self.static = static is not None
        self._keys: dict[str | None, Key] = import_public_keys(static) if static else {}
        self._fetched_at: float | None = None
        self._last_refetch = float("-inf")
        self._last_failed = float("-inf")
        self._in_flight = 0
        # Threads of one worker share the cache; the counters must not drift.
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, kid: str | None) -> Key | None:
        """The key for ``kid``, if the cached set has it."""
        key = self._keys.get(kid)
        if key is None:
            self._misses += 1
        else:
            self._hits += 1
        return key

    def stats(self) -> CacheStats:
        """Keys held, and lookups by ``kid`` that found one or not (tokens seen
        for the first time: later ones are served by the token cache)."""
        held = len({id(key) for key in self._keys.values()})  # a lone key also stands under None
        return CacheStats("keys", held, 0, 0, self._hits, self._misses, 0)

    @property
    def empty(self) -> bool:
        return not self._keys

    def wants_fetch(self, kid: str | None, now: float) -> bool:
        """Whether verifying a token with this ``kid`` should fetch the key set first.

        A ``True`` for an unknown ``kid`` in a fresh set spends the refetch
        budget: the caller is expected to fetch (and :meth:`begin`).
        """
        if self.static:
            return False
        known = kid in self._keys
        fresh = self._fetched_at is not None and now - self._fetched_at < self.ttl
        if known and fresh:
            return False
        if self._in_flight:
            # Join the fetch under way, unless the key is in hand already.
            return not known
        if not fresh:
            # Nothing cached, or the set is stale: stale keys keep serving
            # after a failure, so those retries can wait longer.
            backoff = self.refetch_interval if self._keys else self.failure_backoff
            return now - self._last_failed >= backoff
        with self._lock:
            if now - self._last_refetch < self.refetch_interval:
                return False
            self._last_refetch = now
            return True

    def begin(self, now: float) -> None:
        """Note that a fetch starts (or is joined)."""
        with self._lock:
            self._in_flight += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def store(self, jwks: Mapping[str, Any], now: float) -> None:
        """Take a freshly fetched key set.

        :raises ValueError: the set is unusable; the cached keys stay.
        """
        # Install first, end the fetch after: a token with the new kid checked
        # in between must find either the fetch under way or the new keys.
        try:
            keys = import_public_keys(jwks)
        except ValueError:
            self._last_failed = now
            raise
        else:
            self._keys = keys
            self._fetched_at = now
        finally:
            self._end()

    def adopt(self, jwks: Mapping[str, Any], fetched_at: float) -> bool:
        """Install the key set another worker of this host fetched at
        ``fetched_at``, if it is newer than the one held: it is as fresh here
        as it is there. Whether it was installed.

        :raises ValueError: the set is unusable; the cached keys stay.
        """
        if self._fetched_at is not None and fetched_at <= self._fetched_at:
            return False
        self._keys = import_public_keys(jwks)
        self._fetched_at = fetched_at
        return True

    def fail(self, now: float, reason: str) -> None:
        """Note a failed fetch: the cached keys, if any, keep serving."""
        self._last_failed = now
        self._end()
        if self._keys:
            logger.warning("Crossmint key set refetch failed, serving cached keys: %s", reason)
        else:
            logger.error("Crossmint key set fetch failed, no keys cached: %s", reason)

    def abandon(self) -> None:
        """Note that a fetch begun was given up (its request was cancelled): no result."""
        self._end()
