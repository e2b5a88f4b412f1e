"""The key-set cache policy, stepped with an injected ``now``; importing JWK Sets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from crossmint_wsgi.keys import KeySetCache, import_public_keys


def public(key: RSAKey | ECKey | OKPKey, kid: str, **extra: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": kid, **extra}


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def ec() -> ECKey:
    return ECKey.generate_key("P-256")


@pytest.fixture(scope="module")
def jwks(rsa: RSAKey, ec: ECKey) -> dict[str, Any]:
    return {"keys": [public(rsa, "k1"), public(ec, "k2")]}


# -- importing -------------------------------------------------------------------------------


def test_import_indexes_by_kid(jwks: dict[str, Any]) -> None:
    keys = import_public_keys(jwks)
    assert set(keys) == {"k1", "k2"}
    assert keys["k1"].key_type == "RSA"
    assert keys["k2"].key_type == "EC"


def test_a_single_key_also_serves_tokens_without_kid(rsa: RSAKey) -> None:
    keys = import_public_keys({"keys": [public(rsa, "only")]})
    assert keys[None] is keys["only"]


@pytest.mark.parametrize(
    ("extra_entry", "why"),
    [
        pytest.param({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, "symmetric", id="oct"),
        pytest.param({"kty": "RSA", "kid": "enc", "use": "enc"}, "encryption", id="use-enc"),
        pytest.param({"kty": "XYZ", "kid": "new"}, "unknown type", id="unknown-kty"),
        pytest.param({"kty": ["RSA"], "kid": "list"}, "kty list", id="kty-list"),
        pytest.param("not an object", "string entry", id="string-entry"),
        pytest.param({"kty": "RSA", "kid": "no-n"}, "missing n", id="rsa-without-n"),
        pytest.param({"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"}, "curve", id="bad-curve"),
    ],
)
def test_unusable_entries_are_dropped_and_the_rest_kept(
    rsa: RSAKey, extra_entry: Any, why: str
) -> None:
    keys = import_public_keys({"keys": [extra_entry, public(rsa, "good")]})
    assert set(keys) == {"good", None}, why


def test_unreadable_keys_are_logged(rsa: RSAKey, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="crossmint_wsgi.keys"):
        import_public_keys({"keys": [{"kty": "RSA", "kid": "broken"}, public(rsa, "good")]})
    assert "skipped unreadable keys" in caplog.text
    assert "'broken'" in caplog.text


def test_an_oct_key_never_becomes_a_verification_key() -> None:
    oct_key = OctKey.generate_key(256)
    entry = {**oct_key.as_dict(private=True), "kid": "k1"}
    with pytest.raises(ValueError, match="no usable asymmetric signing key"):
        import_public_keys({"keys": [entry]})


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        pytest.param({}, "no 'keys' list", id="no-keys"),
        pytest.param({"keys": {"kty": "RSA"}}, "no 'keys' list", id="keys-not-list"),
        pytest.param([], "no 'keys' list", id="not-a-mapping"),
        pytest.param({"keys": []}, "no usable", id="empty-list"),
        pytest.param({"keys": [{"kty": "RSA"}]}, "no usable", id="only-broken"),
    ],
)
def test_unusable_sets(jwks: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        import_public_keys(jwks)


# -- the cache policy --------------------------------------------------------------------------


def fetched(jwks: dict[str, Any], now: float = 0.0, **settings: float) -> KeySetCache:
    """A cache that fetched ``jwks`` at ``now``."""
    cache = KeySetCache(**settings)
    assert cache.wants_fetch("k1", now)
    cache.begin(now)
    cache.store(jwks, now)
    return cache


def test_empty_cache_fetches_first() -> None:
    cache = KeySetCache()
    assert cache.empty
    assert cache.get("k1") is None
    assert cache.wants_fetch("k1", 0.0)
    assert cache.wants_fetch(None, 0.0)


@pytest.mark.parametrize(
    ("now", "wants"),
    [
        pytest.param(0.0, False, id="just-fetched"),
        pytest.param(599.9, False, id="before-ttl"),
        pytest.param(600.0, True, id="at-ttl"),
        pytest.param(10_000.0, True, id="long-after"),
    ],
)
def test_ttl(jwks: dict[str, Any], now: float, wants: bool) -> None:
    cache = fetched(jwks, ttl=600.0)
    assert cache.wants_fetch("k1", now) is wants
    assert cache.get("k1") is not None


def test_custom_ttl(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks, ttl=5.0)
    assert not cache.wants_fetch("k1", 4.9)
    assert cache.wants_fetch("k1", 5.0)


def test_unknown_kid_refetches_at_most_once_per_interval(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks, refetch_interval=30.0)
    # The fetch that filled the cache does not spend the budget: a key
    # rotated right after it is still picked up.
    assert cache.wants_fetch("new", 1.0)
    cache.begin(1.0)
    cache.store(jwks, 1.0)
    assert not cache.wants_fetch("new", 1.0)
    assert not cache.wants_fetch("other", 30.9)
    assert cache.wants_fetch("other", 31.0)
    assert not cache.wants_fetch("third", 31.0)


def test_asking_spends_the_budget_once_even_for_two_callers(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks)
    answers = [cache.wants_fetch("new", 5.0), cache.wants_fetch("new", 5.0)]
    assert answers == [True, False]


def test_known_kid_is_not_affected_by_the_refetch_budget(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks)
    assert cache.wants_fetch("new", 1.0)
    assert not cache.wants_fetch("k1", 1.0)
    assert not cache.wants_fetch("k2", 2.0)


def test_in_flight_fetch_is_joined_only_by_tokens_whose_key_is_missing(
    jwks: dict[str, Any],
) -> None:
    cache = fetched(jwks)
    assert cache.wants_fetch("new", 1.0)
    cache.begin(1.0)
    # Unknown kids wait for the fetch under way; known kids verify right away.
    assert cache.wants_fetch("another-new", 1.1)
    assert not cache.wants_fetch("k1", 1.1)
    cache.begin(1.1)
    cache.store(jwks, 1.5)
    cache.store(jwks, 1.5)
    # Both done: the budget is spent again.
    assert not cache.wants_fetch("another-new", 2.0)


def test_stale_set_in_flight_keeps_serving_known_keys(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks, ttl=600.0)
    assert cache.wants_fetch("k1", 700.0)
    cache.begin(700.0)
    assert not cache.wants_fetch("k1", 700.1)
    assert cache.wants_fetch("unknown", 700.1)


def test_first_fetch_in_flight_is_joined() -> None:
    cache = KeySetCache()
    cache.begin(0.0)
    assert cache.wants_fetch("k1", 0.1)
    assert cache.wants_fetch(None, 0.1)


def test_failure_backoff_with_nothing_cached() -> None:
    cache = KeySetCache(failure_backoff=1.0)
    cache.begin(0.0)
    cache.fail(0.0, "HTTP 503")
    assert cache.empty
    assert not cache.wants_fetch("k1", 0.5)
    assert not cache.wants_fetch("k1", 0.99)
    assert cache.wants_fetch("k1", 1.0)


def test_stale_if_error(jwks: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    cache = fetched(jwks, ttl=600.0, refetch_interval=30.0)
    assert cache.wants_fetch("k1", 600.0)
    cache.begin(600.0)
    with caplog.at_level(logging.WARNING, logger="crossmint_wsgi.keys"):
        cache.fail(600.0, "ConnectTimeout")
    assert "serving cached keys: ConnectTimeout" in caplog.text
    # The stale keys keep serving; the next attempt waits refetch_interval.
    assert cache.get("k1") is not None
    assert not cache.wants_fetch("k1", 601.0)
    assert not cache.wants_fetch("k1", 629.9)
    assert cache.wants_fetch("k1", 630.0)
    cache.begin(630.0)
    cache.store(jwks, 630.0)
    assert not cache.wants_fetch("k1", 631.0)
    assert not cache.wants_fetch("k1", 1229.0)


def test_fetch_failure_with_nothing_cached_logs_an_error(caplog: pytest.LogCaptureFixture) -> None:
    cache = KeySetCache()
    cache.begin(0.0)
    with caplog.at_level(logging.ERROR, logger="crossmint_wsgi.keys"):
        cache.fail(0.0, "HTTP 500")
    assert [record.levelno for record in caplog.records] == [logging.ERROR]
    assert "no keys cached: HTTP 500" in caplog.text


def test_unusable_fetched_set_keeps_the_cached_keys(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks, ttl=600.0, refetch_interval=30.0)
    cache.begin(600.0)
    with pytest.raises(ValueError, match="no usable"):
        cache.store({"keys": []}, 600.0)
    assert cache.get("k1") is not None
    # Counted as a failure: no immediate retry.
    assert not cache.wants_fetch("k1", 601.0)
    assert cache.wants_fetch("k1", 630.0)


def test_refetch_replaces_the_set(rsa: RSAKey, ec: ECKey) -> None:
    cache = fetched({"keys": [public(rsa, "old")]})
    assert cache.wants_fetch("new", 1.0)
    cache.begin(1.0)
    cache.store({"keys": [public(ec, "new")]}, 1.0)
    assert cache.get("new") is not None
    assert cache.get("old") is None  # a key Crossmint withdrew stops verifying


def test_abandoned_fetch_does_not_stay_in_flight(jwks: dict[str, Any]) -> None:
    cache = fetched(jwks)
    assert cache.wants_fetch("new", 1.0)
    cache.begin(1.0)
    cache.abandon()
    assert not cache.wants_fetch("new", 2.0)  # budget spent, nothing in flight to join
    assert not cache.wants_fetch("k1", 2.0)


def test_static_set_is_never_fetched(jwks: dict[str, Any]) -> None:
    cache = KeySetCache(static=jwks, ttl=1.0)
    for now in (0.0, 10.0, 1e9):
        assert not cache.wants_fetch("k1", now)
        assert not cache.wants_fetch("unknown", now)
    assert cache.get("k2") is not None
    assert not cache.empty


def test_static_set_without_usable_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no usable"):
        KeySetCache(static={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})
