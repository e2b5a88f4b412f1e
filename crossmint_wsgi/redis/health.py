"""Redis health: ride out a failover, fall back to in-process coordination once Redis is gone.

A Redis that answered this process and then fails is most likely failing over
(a Cluster replica or a Sentinel-guarded replica taking over the primary): for
``failover_window`` seconds from the first failure, a refresh keeps trying it
(each for at most its ``wait``) rather than refreshing beside the processes
that reach Redis again once the replica is promoted. Once Redis has been
failing for longer than that, or when it never answered this process, it is
taken to be gone: refreshes go on in-process at once, exactly as without
Redis, and Redis is tried again once per ``retry_interval`` so requests do not
each wait for its timeouts. The flows that cannot ride anything out (a logout
told to the others, a look for one) only ever use the second rule.

A failure is logged at most once per ``log_interval``, with a short digest of
the secret, never a secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Health"]

logger = logging.getLogger("crossmint_wsgi")

_NEVER = float("-inf")
_ALWAYS = float("inf")


class Health:
    """Whether Redis is worth asking now, shared by the threads or tasks of a process.

    :param retry_interval: seconds Redis is left alone after a failure, once it
        is taken to be gone.
    :param log_interval: at most one warning per this many seconds.
    :param failover_window: seconds a Redis that answered before and is now
        failing is taken to be failing over (0: never).
    """

    def __init__(
        self,
        retry_interval: float,
        log_interval: float,
        failover_window: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_interval = retry_interval
        self.log_interval = log_interval
        self.failover_window = failover_window
        self._clock = clock
        self._lock = threading.Lock()
        self._answered = False
        self._failing_since: float | None = None
        self._skip_until = _NEVER
        self._logged_at = _NEVER

    def usable(self) -> bool:
        """Whether a flow that does not ride failures out should ask Redis now."""
        return self._clock() >= self._skip_until

    def ride_out_until(self) -> float:
        """Until when a Redis failure is taken for a failover, by a flow that Redis
        has not answered itself: ``inf`` while Redis answers, the failover window's
        end while it fails, ``-inf`` when it never answered this process."""
        if not self._answered:
            return _NEVER
        since = self._failing_since
        return _ALWAYS if since is None else since + self.failover_window

    def failing(self) -> bool:
        """Whether Redis failed this process last time it was asked (and has not
        answered since): what happens meanwhile is not coordinated across hosts."""
        return self._failing_since is not None

    def worth_refreshing(self) -> bool:
        """Whether a refresh should go through Redis now: while a failover may be
        under way, or when Redis is not being left alone."""
        return self._clock() < self.ride_out_until() or self.usable()

    def failed(
        self, error: BaseException, digest: str, operation: str = "refresh of secret"
    ) -> None:
        with self._lock:
            now = self._clock()
            if self._failing_since is None:
                self._failing_since = now
            self._skip_until = now + self.retry_interval
            if now - self._logged_at < self.log_interval:
                return
            self._logged_at = now
            failing_over = now < self.ride_out_until()
        why = f"{type(error).__name__}: {error}"[:200]
        if failing_over:
            logger.warning(
                "Redis is unavailable (%s) during the %s %s: refreshes keep trying it for up"
                " to %gs (a failover), then are coordinated without Redis (on this host only)",
                why,
                operation,
                digest[:8],
                self.failover_window,
            )
            return
        logger.warning(
            "Redis is unavailable (%s) during the %s %s: refreshes are coordinated without"
            " Redis (on this host only), Redis is retried in %gs",
            why,
            operation,
            digest[:8],
            self.retry_interval,
        )

    def succeeded(self) -> None:
        if self._answered and self._failing_since is None:
            return
        with self._lock:
            was_down = self._failing_since is not None
            self._answered, self._failing_since = True, None
        if was_down:
            logger.info("Redis answers again: refreshes are coordinated across processes")
