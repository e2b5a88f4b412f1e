"""What stops anonymous clients from spending Crossmint's refresh calls.

Every request carrying a refresh cookie that is not known here costs one
call to Crossmint, and Crossmint rate-limits the project's key: a client
sending random secrets could spend every real user's refreshes, and with a
slow Crossmint, hold every worker. Two bounds, both decided here:

- :class:`FailedRefreshes`: a client address whose refresh tokens Crossmint
  refused too often within a minute gets no more calls until the minute
  has passed. Distinct secrets are counted, so a browser retrying its one
  dead secret, or fifty requests of one expired session, count once; a
  successful refresh never counts. Only public addresses are counted: a
  loopback or private peer is a proxy (or a test) speaking for many
  clients, and blocking it would block them all. Behind a proxy, the
  middleware's ``client_ip_header`` gives the client's own address.
- :class:`UpstreamSlots`: at most so many refresh calls in flight at once per
  process; beyond that a request is answered ``UPSTREAM_UNAVAILABLE`` (503,
  cookies kept) at once instead of waiting.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import CrossmintAuthError, ErrorCode

__all__ = ["FailedRefreshes", "UpstreamSlots", "is_public"]


@functools.lru_cache(maxsize=4096)
def is_public(address: str) -> bool:
    """Whether an address stands for one client on the internet: not loopback,
    private, link-local or reserved. Text that is no address (a proxy's label)
    counts as public: it is what the deployer's header said."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_global
    except ValueError:
        return True


class FailedRefreshes:
    """Refused refresh secrets per client address, within a sliding window.

    :param limit: distinct refused secrets an address may send per window;
        ``0`` turns the bound off.
    :param window: the window, in seconds.
    :param max_clients: addresses tracked at once (the oldest are forgotten).
    """

    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        # address -> (digest of a refused secret -> when)
        self._clients: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def blocked_for(self, client: str | None, now: float) -> float:
        """Seconds until ``client`` may cause a refresh call again; 0 when it may now."""
        if client is None or self.limit <= 0 or not self._clients or not is_public(client):
            return 0.0
        with self._lock:
            failures = self._clients.get(client)
            if failures is None or len(failures) < self.limit:
                return 0.0
            self._expire(failures, now)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, min(failures.values()) + self.window - now)

    def refusal(self, client: str | None, now: float) -> CrossmintAuthError | None:
        """The error a blocked client's unknown secrets get, or ``None``."""
        wait = self.blocked_for(client, now)
        if not wait:
            return None
        return CrossmintAuthError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            f"too many refused refresh tokens from this address; try again in {int(wait) + 1} s",
        )

    def failed(self, client: str | None, digest: str, now: float) -> None:
        """Count a secret of ``client``'s that Crossmint refused."""
        if client is None or self.limit <= 0 or not is_public(client):
            return
        with self._lock:
            failures = self._clients.pop(client, None) or {}
            self._expire(failures, now)
            if len(failures) < self.limit:
                failures[digest] = now
            self._clients[client] = failures
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def _expire(self, failures: dict[str, float], now: float) -> None:
        for digest, when in list(failures.items()):
            if when + self.window <= now:
                del failures[digest]


class UpstreamSlots:
    """At most ``limit`` refresh calls in flight at once; ``0`` means no bound.

    Never waits: threads and async tasks alike either get a slot or an error.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """A slot for one call.

        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` when all are taken.
        """
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                raise CrossmintAuthError(
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    f"{self.limit} refresh calls to Crossmint are already in flight",
                )
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
