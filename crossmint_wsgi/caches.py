"""Bounded in-memory caches: by entries and by bytes, with counters anyone can read.

Every cache the library keeps for requests (verified tokens, recent sessions,
refresh results) is a :class:`BoundedCache`. Its keys come from requests, so
its size must not depend on what a client sends: each entry is charged an
estimate of the bytes it holds, and the cache never holds more than its
budget.

When full, a new entry takes the place of an expired one if a random pick
finds one, and otherwise gets in only one time in :data:`ADMISSION`,
evicting a random entry. Under a rotation of more sessions than fit,
least-recently-used eviction drops every entry just before it is needed
again (no hits at all), and so does plain random eviction, nearly; holding
on to most of what is cached keeps about ``budget / demand`` of the
lookups hits, and the expiry of entries still lets the cached set follow
the traffic.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
from typing import Generic, TypeVar

__all__ = ["ADMISSION", "DEFAULT_BUDGET", "EXPIRED", "BoundedCache", "CacheStats"]

K = TypeVar("K")
V = TypeVar("V")

#: Bytes all of an auth object's caches may hold together, by default: the
#: recent sessions' share holds about 15,000 sessions.
DEFAULT_BUDGET = 64 * 1024 * 1024

#: What an entry costs beyond its key and value: the dict slot, tuple and list slot.
ENTRY_OVERHEAD = 200

#: When full, one new entry in this many evicts a live one; the others are not kept.
ADMISSION = 8


class _Expired(enum.Enum):
    EXPIRED = "EXPIRED"


#: :meth:`BoundedCache.get`'s answer for an entry that was there but whose time is up.
EXPIRED = _Expired.EXPIRED


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A cache's figures at one moment. Counters are approximate under threads."""

    #: Which cache: ``"tokens"``, ``"sessions"``, ``"refreshes"``.
    name: str
    #: Entries held now.
    entries: int
    #: Estimated bytes held now.
    bytes: int
    #: The most bytes it may hold.
    budget: int
    #: Lookups that found a live entry.
    hits: int
    #: Lookups that found none, or an expired one.
    misses: int
    #: Live entries dropped to make room.
    evictions: int

    @property
    def hit_rate(self) -> float:
        """Hits over lookups; 0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class BoundedCache(Generic[K, V]):
    """Values with deadlines, at most ``budget`` bytes and ``max_entries`` of them.

    :param name: what :meth:`stats` calls it.
    :param budget: the most bytes (as estimated by the callers of :meth:`put`)
        it holds; ``0`` turns it off.
    :param max_entries: the most entries it holds, whatever their size.
    :param seed: seeds the choice of victims, for tests.
    """

    def __init__(
        self, name: str, budget: int, *, max_entries: int | None = None, seed: int | None = None
    ) -> None:
        self.name = name
        self.budget = max(0, budget)
        self.max_entries = max_entries
        # key -> [deadline, value, size, index in _keys]
        self._entries: dict[K, list[object]] = {}
        # Every key, so a random one can be picked in O(1).
        self._keys: list[K] = []
        self._bytes = 0
        self._lock = threading.Lock()
        # Picks eviction victims only: nothing secret depends on it.
        self._random = random.Random(seed)  # noqa: S311
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, now: float) -> V | _Expired | None:
        """The live value for ``key``; :data:`EXPIRED` when its deadline has
        passed (the entry is dropped); ``None`` when there is none."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if entry[0] <= now:  # type: ignore[operator]
            self.misses += 1
            self.discard(key)
            return EXPIRED
        self.hits += 1
        return entry[1]  # type: ignore[return-value]

    def peek(self, key: K) -> tuple[float, V] | None:
        """The deadline and value for ``key``, live or not, without counting a lookup."""
        entry = self._entries.get(key)
        return None if entry is None else (entry[0], entry[1])  # type: ignore[return-value]

    def put(
        self, key: K, value: V, deadline: float, size: int, now: float, *, force: bool = False
    ) -> bool:
        """Hold ``value`` until ``deadline``, charged ``size`` bytes plus overhead.

        :param force: store it even when full (evicting at random), for
            entries that must not be lost, such as a logout's.
        :returns: whether it was stored. An entry larger than a tenth of the
            budget never is, so no single request can empty the cache; when
            the cache is full, most new entries are not (see the module).
        """
        cost = size + ENTRY_OVERHEAD
        if cost * 10 > self.budget:
            return False
        with self._lock:
            self._remove(key)
            admitted = force
            limit = self.max_entries if self.max_entries is not None else len(self._keys) + 1
            # random() rather than randrange(): a C call, not a Python one.
            while self._keys and (self._bytes + cost > self.budget or len(self._keys) + 1 > limit):
                victim = self._keys[int(self._random.random() * len(self._keys))]
                if self._entries[victim][0] > now:  # type: ignore[operator]
                    if not admitted:
                        if self._random.random() * ADMISSION >= 1:
                            return False
                        admitted = True
                    self.evictions += 1
                self._remove(victim)
            self._entries[key] = [deadline, value, cost, len(self._keys)]
            self._keys.append(key)
            self._bytes += cost
        return True

    def held_keys(self) -> list[K]:
        """The keys held now, live or not."""
        return list(self._keys)

    def discard(self, key: K) -> None:
        """Drop ``key`` if present."""
        with self._lock:
            self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._keys.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        """The figures now."""
        return CacheStats(
            self.name,
            len(self._entries),
            self._bytes,
            self.budget,
            self.hits,
            self.misses,
            self.evictions,
        )

    def _remove(self, key: K) -> None:
        # With the lock held: swap the key's slot with the last one, then pop.
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry[2]  # type: ignore[operator]
        index: int = entry[3]  # type: ignore[assignment]
        last = self._keys.pop()
        if index < len(self._keys):
            self._keys[index] = last
            self._entries[last][3] = index
