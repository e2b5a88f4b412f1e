"""What both Redis coordinators share: their settings, checked once, and their Redis health."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..caches import CacheStats
from ..coordination import AsyncLocalCoordinator, GraceCache, LocalCoordinator, secret_digest
from ..errors import CrossmintAuthError, CrossmintConfigError
from ..settings import count, seconds
from .exchange import Exchange
from .health import Health
from .protocol import Settings

__all__ = ["RedisCoordinatorBase", "client_options"]


def client_options(url: str) -> dict[str, Any]:
    """Connection settings for a coordinator's client; the URL's query string wins.

    Short timeouts and a single immediate retry: a Redis that does not answer
    must cost a request little, since the request goes on without it.

    :raises CrossmintConfigError: the URL is malformed (``setting == "url"``);
        the message never contains the URL, which may hold a password.
    """
    options: dict[str, Any] = {
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "retry": Retry(NoBackoff(), 1),
    }
    # Parses the URL now (no connection is made), so a bad one fails at startup.
    try:
        redis.ConnectionPool.from_url(url, **options)
    except ValueError as error:
        raise CrossmintConfigError(f"the Redis URL is not usable: {error}", setting="url") from None
    return options


class RedisCoordinatorBase:
    """Settings and health shared by the two coordinators.

    :raises CrossmintConfigError: a setting is out of range; ``setting`` names it.
    """

    def __init__(
        self,
        *,
        grace: float = 30.0,
        wait: float = 10.0,
        lock_ttl: float | None = None,
        poll_interval: float = 0.01,
        rejected_ttl: float = 5.0,
        unavailable_ttl: float = 1.0,
        retry_interval: float = 2.0,
        log_interval: float = 60.0,
        prefix: str = "crossmint-wsgi:refresh:",
        max_entries: int = 10_000,
        revoked_ttl: float = 600.0,
    ) -> None:
        wait = seconds("wait", wait)
        self.settings = Settings(
            grace=seconds("grace", grace),
            wait=wait,
            lock_ttl=wait if lock_ttl is None else seconds("lock_ttl", lock_ttl, positive=True),
            poll_interval=seconds("poll_interval", poll_interval, positive=True),
            rejected_ttl=seconds("rejected_ttl", rejected_ttl),
            unavailable_ttl=seconds("unavailable_ttl", unavailable_ttl),
            prefix=prefix,
            revoked_ttl=seconds("revoked_ttl", revoked_ttl),
        )
        self.max_entries = count("max_entries", max_entries, minimum=1)
        self._health = Health(
            seconds("retry_interval", retry_interval),
            seconds("log_interval", log_interval),
        )
        self._pid = -1

    def _process(self) -> LocalCoordinator | AsyncLocalCoordinator:
        """This process's in-process coordinator (a new one after a fork)."""
        raise NotImplementedError

    def stats(self) -> CacheStats:
        """This process's grace cache's figures."""
        return self._process().stats()

    def _exchange(self, secret: str) -> Exchange | None:
        """A refresh through Redis, or ``None`` while Redis is left alone after a failure."""
        if not self._health.usable():
            return None
        return Exchange.refresh(secret, self.settings, self._health, time.monotonic)

    def _revocation(self, secret: str) -> Exchange | None:
        """A logout through Redis, or ``None`` while Redis is left alone."""
        if not self._health.usable():
            return None
        return Exchange.revoke(secret, self.settings, self._health)

    def _vetting(self, secret: str, cached: GraceCache) -> Exchange | None:
        """For a result this process holds for ``secret``: whether another process
        logged its session out since. ``None`` when there is nothing to ask."""
        try:
            material = cached.get(secret_digest(secret))
        except CrossmintAuthError:
            return None  # refused here already
        if material is None or not self._health.usable():
            return None
        chain = (secret, material.refresh_token.secret)
        return Exchange.vet(chain, self.settings, self._health)

    @staticmethod
    def _merge(local: list[str], shared: list[str]) -> list[str]:
        """Successor secrets found in this process and in Redis, each once, in order."""
        return list(dict.fromkeys([*local, *shared]))

    def _forked(self) -> bool:
        # After a fork, the parent's connections and locks are left to the parent.
        return self._pid != os.getpid()
