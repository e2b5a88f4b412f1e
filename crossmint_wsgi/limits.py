"""What stops anonymous clients from spending Crossmint's refresh calls, and
never stops a user.

Every request carrying a refresh cookie that is not known here costs one
call to Crossmint, and Crossmint rate-limits the project's key: a client
sending random secrets could spend every real user's refreshes, and with a
slow Crossmint, hold every worker. But the browser SDK logs its user out
on any error status, so a bound that refuses a real user turns a flood
into a logout. A refresh whose request carries an authentic JWT (its
signature and claims check out; expired or not) comes from a user: it is
counted against that user (the JWT's ``sub``), never against its address.
Any other refresh (made-up secrets, a login's one-time secret, a forged
JWT) is a stranger's, counted against its address. Two bounds, both
decided here:

- :class:`FailedRefreshes`: a client address, or a user, whose refresh
  tokens Crossmint refused too often within a minute gets no more calls
  until the minute has passed. Distinct secrets are counted, so a browser
  retrying its one dead secret, or fifty requests of one expired session,
  count once; a successful refresh never counts. Secrets in flight count
  too, so a burst of concurrent requests cannot overshoot the bound while
  the refusals are still on their way. Only public addresses are counted:
  a loopback or private peer is a proxy (or a test) speaking for many
  clients, and blocking it would block them all. Behind a proxy, the
  middleware's ``client_ip_header`` gives the client's own address.
- :class:`UpstreamSlots`: at most so many refresh calls in flight at once per
  process; beyond that a request is answered ``UPSTREAM_UNAVAILABLE`` (503,
  cookies kept) at once instead of waiting. A reserve of them (a quarter)
  is kept for users: strangers cannot take it.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import CrossmintAuthError, ErrorCode

__all__ = ["FailedRefreshes", "UpstreamSlots", "is_public"]

#: What a bound counts against: ``("address", ip)`` or ``("user", sub)``.
_Key = tuple[str, str]


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
    """Refused refresh secrets, and secrets in flight, per client address or
    per user, within a sliding window.

    Each method takes the request's ``client`` address and the ``user`` an
    authentic JWT of the request names (``None`` for a stranger): a user is
    counted by ``user`` alone, a stranger by a public ``client`` address.

    :param limit: distinct refused (or in-flight) secrets an address or a
        user may have per window; ``0`` turns the bound off.
    :param window: the window, in seconds.
    :param max_clients: addresses and users tracked at once (the oldest are forgotten).
    """

    def __init__(self, limit: int = 20, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        # key -> (digest of a refused secret -> when)
        self._clients: OrderedDict[_Key, dict[str, float]] = OrderedDict()
        # key -> digests of secrets in flight -> how many refreshes of each
        self._pending: dict[_Key, Counter[str]] = {}
        self._lock = threading.Lock()

    def _key(self, client: str | None, user: str | None) -> _Key | None:
        if self.limit <= 0:
            return None
        if user is not None:
            return ("user", user)
        if client is None or not is_public(client):
            return None
        return ("address", client)

    def _wait(self, key: _Key, digest: str | None, now: float) -> float:
        """Seconds until ``key`` may cause a call for a new secret; 0 when it may now.
        A secret already in flight adds no call: it may always join. Under the lock."""
        failures = self._clients.get(key) or {}
        pending = self._pending.get(key) or Counter()
        if digest in pending:
            return 0.0
        self._expire(failures, now)
        if len(failures.keys() | pending.keys()) < self.limit:
            return 0.0
        if len(failures) >= self.limit:
            return max(0.0, min(failures.values()) + self.window - now)
        # Held by calls still in flight: they land within the auth timeout.
        return 1.0

    def blocked_for(self, client: str | None, now: float, user: str | None = None) -> float:
        """Seconds until ``client`` (or ``user``) may cause a refresh call; 0 when it may now."""
        if not self._clients and not self._pending:
            return 0.0
        key = self._key(client, user)
        if key is None:
            return 0.0
        with self._lock:
            return self._wait(key, None, now)

    def refusal(
        self, client: str | None, now: float, user: str | None = None
    ) -> CrossmintAuthError | None:
        """The error a blocked client's (or user's) unknown secrets get, or ``None``."""
        wait = self.blocked_for(client, now, user)
        return None if not wait else self._refusal(user, wait)

    def _refusal(self, user: str | None, wait: float) -> CrossmintAuthError:
        whose = "for this user" if user is not None else "from this address"
        return CrossmintAuthError(
            ErrorCode.UPSTREAM_UNAVAILABLE,
            f"too many refused refresh tokens {whose}; try again in {int(wait) + 1} s",
        )

    @contextmanager
    def attempt(
        self, client: str | None, digest: str, now: float, user: str | None = None
    ) -> Iterator[CrossmintAuthError | None]:
        """Around one refresh of the secret whose digest is ``digest``: the
        refusal when its address (or user) is at the bound, else ``None``,
        the secret then counting as in flight until the block ends."""
        key = self._key(client, user)
        if key is None:
            yield None
            return
        with self._lock:
            wait = self._wait(key, digest, now)
            if not wait:
                self._pending.setdefault(key, Counter())[digest] += 1
        if wait:
            yield self._refusal(user, wait)
            return
        try:
            yield None
        finally:
            with self._lock:
                pending = self._pending[key]
                pending[digest] -= 1
                if pending[digest] <= 0:
                    del pending[digest]
                    if not pending:
                        del self._pending[key]

    def failed(self, client: str | None, digest: str, now: float, user: str | None = None) -> None:
        """Count a secret of ``client``'s (or ``user``'s) that Crossmint refused."""
        key = self._key(client, user)
        if key is None:
            return
        with self._lock:
            failures = self._clients.pop(key, None) or {}
            self._expire(failures, now)
            if len(failures) < self.limit:
                failures[digest] = now
            self._clients[key] = failures
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)

    def _expire(self, failures: dict[str, float], now: float) -> None:
        for digest, when in list(failures.items()):
            if when + self.window <= now:
                del failures[digest]


class UpstreamSlots:
    """At most ``limit`` refresh calls in flight at once; ``0`` means no bound.

    ``reserve`` of them are kept for users (refreshes vouched for by an
    authentic JWT): strangers' calls may fill only ``limit - reserve``.
    Never waits: threads and async tasks alike either get a slot or an error.

    :param reserve: by default a quarter of ``limit``, at least 1 when
        ``limit`` is 2 or more (a single slot is shared by all).
    """

    def __init__(self, limit: int = 64, reserve: int | None = None) -> None:
        self.limit = limit
        if reserve is None:
            reserve = max(1, limit // 4) if limit >= 2 else 0
        self.reserve = min(reserve, limit)
        self.in_flight = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, *, vouched: bool = False) -> Iterator[None]:
        """A slot for one call; ``vouched``: a user's, which may take the reserve.

        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` when all it may take are taken.
        """
        with self._lock:
            if self.limit:
                cap = self.limit if vouched else self.limit - self.reserve
                if self.in_flight >= cap:
                    kept = "" if vouched else f" ({self.reserve} more are kept for signed-in users)"
                    raise CrossmintAuthError(
                        ErrorCode.UPSTREAM_UNAVAILABLE,
                        f"{cap} refresh calls to Crossmint are already in flight{kept}",
                    )
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
