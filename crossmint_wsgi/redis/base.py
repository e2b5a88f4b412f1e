"""What both Redis coordinators share: their settings, checked once, and their Redis health."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..caches import CacheStats
from ..coordination import (
    LOGGED_OUT,
    AsyncLocalCoordinator,
    DoubtedRefusal,
    GraceCache,
    LocalCoordinator,
    LoggedOutDuringRefresh,
    secret_digest,
)
from ..errors import CrossmintAuthError, ErrorCode
from ..revocations import RevokedTokens
from ..settings import count, seconds
from .exchange import NOT_TOLD, Exchange
from .health import Health
from .protocol import Settings, revocations_key
from .revocations import Listener, Unannounced

__all__ = ["RedisCoordinatorBase"]

logger = logging.getLogger("crossmint_wsgi")


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
        failover_window: float = 20.0,
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
            seconds("failover_window", failover_window),
        )
        self._pid = -1
        self._listener: Listener | None = None
        self._listener_pid = -1
        #: Logouts of JWTs Redis did not take yet (this process's).
        self.unannounced = Unannounced()

    def _process(self) -> LocalCoordinator | AsyncLocalCoordinator:
        """This process's in-process coordinator (a new one after a fork)."""
        raise NotImplementedError

    def stats(self) -> CacheStats:
        """This process's grace cache's figures."""
        return self._process().stats()

    def _blocking_client(self) -> Callable[[], Any] | None:
        """What the revocation listener connects with; ``None``: it cannot."""
        raise NotImplementedError

    def listen(self, revoked: RevokedTokens) -> None:
        """Have this process learn every logout through Redis, into ``revoked``.

        Called by the auth on its first flow in each process; a thread here
        subscribes, and catches up after any lost connection.
        """
        if self._listener_pid == os.getpid():
            return
        self._listener_pid = os.getpid()
        connect = self._blocking_client()
        if connect is None:
            logger.warning(
                "logouts from other processes cannot reach this one: the Redis"
                " coordinator has no blocking client (give it sync_client)"
            )
            return
        self._listener = Listener(
            connect, revocations_key(self.settings), revoked, unannounced=self.unannounced
        ).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and self._listener_pid == os.getpid():
            listener.stop()
        self._listener_pid = -1

    def _announcement(self, digest: str, exp: float) -> Exchange | None:
        """A logout of a JWT told through Redis, or ``None`` while Redis is left
        alone (then it is held, see :meth:`_held_back`)."""
        if not self._health.usable():
            self._held_back(digest, exp)
            return None
        return Exchange.announce(digest, exp, self.settings, self._health, time.time())

    def _announced(self, exchange: Exchange, digest: str, exp: float) -> None:
        """After an announcement: hold it back if Redis did not take it."""
        if exchange.result is NOT_TOLD:
            self._held_back(digest, exp)

    def _held_back(self, digest: str, exp: float) -> None:
        """A logout Redis could not take: this host honours it (the host store),
        the others learn it when this process's listener reaches Redis again."""
        self.unannounced.add(digest, exp)
        logger.warning(
            "the logout of JWT %s is honoured on this host but cannot reach the other hosts"
            " yet: Redis is unavailable; it is told to them as soon as Redis answers",
            digest[:8],
        )

    def _exchange(self, secret: str) -> Exchange | None:
        """A refresh through Redis, or ``None`` while Redis is taken to be gone and
        left alone after a failure."""
        if not self._health.worth_refreshing():
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

    def _doubted(self, error: CrossmintAuthError) -> CrossmintAuthError:
        """Crossmint's refusal of a secret, judged while Redis could not coordinate:
        a :class:`~crossmint_wsgi.coordination.DoubtedRefusal`. A logout,
        known here, stays a logout."""
        if (
            error.code is not ErrorCode.SESSION_EXPIRED
            or error is LOGGED_OUT
            or isinstance(error, LoggedOutDuringRefresh)
            or not self._health.failing()
        ):
            return error
        return DoubtedRefusal(error)

    @staticmethod
    def _merge(local: list[str], shared: list[str]) -> list[str]:
        """Successor secrets found in this process and in Redis, each once, in order."""
        return list(dict.fromkeys([*local, *shared]))

    def _forked(self) -> bool:
        # After a fork, the parent's connections and locks are left to the parent.
        return self._pid != os.getpid()
