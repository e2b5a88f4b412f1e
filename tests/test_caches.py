"""BoundedCache: deadlines, the entry and byte bounds, random eviction, and its figures."""

from __future__ import annotations

from typing import Any

import pytest

from crossmint_wsgi.caches import ADMISSION, ENTRY_OVERHEAD, EXPIRED, BoundedCache, CacheStats
from crossmint_wsgi.testing import CrossmintEmulator

NOW = 1000.0


def test_get_answers_live_expired_and_absent() -> None:
    cache: BoundedCache[str, str] = BoundedCache("t", 10_000)
    cache.put("a", "A", NOW + 10, 10, NOW)
    assert cache.get("a", NOW + 9.9) == "A"
    assert cache.get("a", NOW + 10) is EXPIRED
    assert "a" not in cache  # an expired entry is dropped when met
    assert cache.get("a", NOW) is None
    assert cache.stats() == CacheStats("t", 0, 0, 10_000, hits=1, misses=2, evictions=0)


@pytest.mark.parametrize(
    ("budget", "max_entries", "size", "held"),
    [
        pytest.param(100 * (ENTRY_OVERHEAD + 100), None, 100, 100, id="bytes-bound"),
        pytest.param(10**9, 7, 10, 7, id="entry-bound"),
        pytest.param(0, None, 0, 0, id="off"),
    ],
)
def test_bounds_hold_whatever_is_put(
    budget: int, max_entries: int | None, size: int, held: int
) -> None:
    cache: BoundedCache[int, int] = BoundedCache("t", budget, max_entries=max_entries)
    for key in range(1000):
        cache.put(key, key, NOW + 60, size, NOW)
    stats = cache.stats()
    assert stats.entries == len(cache) == held
    assert stats.bytes == held * (size + ENTRY_OVERHEAD) <= budget
    # Full, most new entries are turned away rather than evicting live ones.
    assert 0 < stats.evictions < 1000 - held if held else stats.evictions == 0


def test_an_entry_over_a_tenth_of_the_budget_is_refused() -> None:
    cache: BoundedCache[str, str] = BoundedCache("t", 10 * (ENTRY_OVERHEAD + 100))
    assert cache.put("small", "x", NOW + 60, 100, NOW)
    assert not cache.put("huge", "x", NOW + 60, 101, NOW)
    assert cache.stats().entries == 1


def test_rewriting_a_key_replaces_its_charge() -> None:
    cache: BoundedCache[str, str] = BoundedCache("t", 10**6)
    assert cache.put("a", "1", NOW + 60, 100, NOW)
    cache.put("a", "2", NOW + 60, 300, NOW)
    assert cache.get("a", NOW) == "2"
    assert cache.stats().bytes == 300 + ENTRY_OVERHEAD


def test_discard_and_clear() -> None:
    cache: BoundedCache[str, str] = BoundedCache("t", 10**6)
    for key in "abc":
        cache.put(key, key, NOW + 60, 1, NOW)
    cache.discard("b")
    cache.discard("missing")
    assert sorted(k for k in "abc" if k in cache) == ["a", "c"]
    assert cache.get("c", NOW) == "c"  # the index survived the swap
    cache.clear()
    assert len(cache) == 0
    assert cache.stats().bytes == 0


def test_a_rotation_keeps_a_share_of_hits() -> None:
    """Cycling through more keys than fit: LRU would hit never, this about budget/keys."""
    capacity, keys = 100, 400
    cache: BoundedCache[int, int] = BoundedCache("t", 10**9, max_entries=capacity, seed=1)
    for _round in range(20):
        for key in range(keys):
            if cache.get(key, NOW) is None:
                cache.put(key, key, NOW + 60, 1, NOW)
    rate = cache.stats().hit_rate
    assert 0.15 < rate < 0.35, rate  # expected about capacity / keys = 0.25


def test_when_full_an_expired_entry_makes_room_first() -> None:
    cache: BoundedCache[str, str] = BoundedCache("t", 10**9, max_entries=1)
    cache.put("old", "x", NOW + 1, 1, NOW)
    assert cache.put("new", "y", NOW + 60, 1, NOW + 2)
    assert cache.get("new", NOW + 2) == "y"
    assert cache.stats().evictions == 0  # the expired entry was not live


def test_when_full_a_new_entry_gets_in_one_time_in_admission() -> None:
    cache: BoundedCache[int, int] = BoundedCache("t", 10**9, max_entries=10, seed=1)
    for key in range(10):
        assert cache.put(key, key, NOW + 60, 1, NOW)
    stored = sum(cache.put(key, key, NOW + 60, 1, NOW) for key in range(10, 10 + 80 * ADMISSION))
    assert 40 < stored < 120  # about 80
    assert len(cache) == 10


def test_a_middleware_shows_every_cache_behind_it(
    crossmint_emulator: CrossmintEmulator,
) -> None:
    from werkzeug.test import Client

    from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware

    def app(environ: dict[str, object], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    with CrossmintAuth(crossmint_emulator.crossmint()) as auth:
        middleware = CrossmintWSGIMiddleware(app, auth)
        login = crossmint_emulator.create_session("user-stats")
        cookie = f"crossmint-jwt={login.jwt}; crossmint-refresh-token={login.refresh_token.secret}"
        client = Client(middleware, use_cookies=False)
        for _ in range(3):
            client.get("/", headers={"Cookie": cookie})
        expired = crossmint_emulator.create_session("user-stats", jwt_ttl=-30)
        client.get(
            "/",
            headers={
                "Cookie": f"crossmint-jwt={expired.jwt}; "
                f"crossmint-refresh-token={expired.refresh_token.secret}"
            },
        )
        stats = {each.name: each for each in middleware.cache_stats()}
    assert list(stats) == ["keys", "tokens", "refreshes", "sessions"]
    assert stats["keys"].entries >= 1  # the emulator's (more after a rotation elsewhere)
    assert stats["tokens"].entries >= 1
    assert stats["refreshes"].entries >= 1  # the expired session's refresh, and its link
    assert stats["sessions"].hits == 2  # the second and third visits
    assert all(each.bytes <= each.budget or each.name == "keys" for each in stats.values())
