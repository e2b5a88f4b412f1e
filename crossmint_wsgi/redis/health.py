"""Redis health: log a failure once per period, leave a failing Redis alone for a while.

When Redis does not answer (refused, timed out, any Redis error) the refresh
goes on in-process, exactly as without Redis. The failure is logged at most
once per ``log_interval`` (with a short digest of the secret, never a secret)
and Redis is left alone for ``retry_interval`` seconds so requests do not each
wait for its timeouts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Health"]

logger = logging.getLogger("crossmint_wsgi")


class Health:
    """Whether Redis is worth asking now, shared by the threads or tasks of a process."""

    def __init__(
        self,
        retry_interval: float,
        log_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_interval = retry_interval
        self.log_interval = log_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._down = False
        self._up = False
        self._skip_until = float("-inf")
        self._logged_at = float("-inf")

    def usable(self) -> bool:
        return self._clock() >= self._skip_until

    def answering(self) -> bool:
        """Whether Redis answered the last time it was asked."""
        return self._up

    def failed(self, error: BaseException, digest: str) -> None:
        with self._lock:
            now = self._clock()
            self._down = True
            self._up = False
            self._skip_until = now + self.retry_interval
            if now - self._logged_at < self.log_interval:
                return
            self._logged_at = now
        why = f"{type(error).__name__}: {error}"[:200]
        logger.warning(
            "Redis is unavailable (%s) during the refresh of secret %s: refreshes are"
            " coordinated in this process only, Redis is retried in %gs",
            why,
            digest[:8],
            self.retry_interval,
        )

    def succeeded(self) -> None:
        self._up = True
        if not self._down:
            return
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.info("Redis answers again: refreshes are coordinated across processes")
