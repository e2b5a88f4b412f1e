"""Every process learns every logout: a listener on Redis's revocation channel.

A logout records the JWT's digest in a sorted set (scored by the JWT's
``exp``) and publishes it (:func:`crossmint_wsgi.redis.protocol.announce`).
Each process runs one :class:`Listener`, a daemon thread with a blocking
client: it subscribes, then reads the set (so nothing published between the
two is missed), and adds each digest to the auth's
:class:`~crossmint_wsgi.revocations.RevokedTokens`, which every cache checks.
After a lost connection it reconnects and reads the set again: a process
that was cut off catches up. Requests never wait for any of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from ..revocations import RevokedTokens
from .protocol import Announce, commands

__all__ = ["Listener", "Unannounced"]

logger = logging.getLogger("crossmint_wsgi")

#: Seconds between reconnection attempts, growing up to the last: a Redis back
#: from a failover or a restart is picked up again within a second.
_BACKOFF = (0.2, 0.5, 1.0)


class _Flag:
    """Raised by a connection's callback, lowered by the listener."""

    up = False

    def raise_(self, _connection: object) -> None:
        self.up = True


class Unannounced:
    """Logouts of JWTs that Redis did not take (it was down): told to every
    process by the listener as soon as it reaches Redis again."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._held: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._held)

    def add(self, digest: str, exp: float) -> None:
        with self._lock:
            self._held[digest] = exp
            while len(self._held) > self.max_entries:
                # The oldest go first: their JWTs expire soonest.
                del self._held[next(iter(self._held))]

    def pending(self, now: float) -> list[tuple[str, float]]:
        """What is still to be told and has not expired."""
        with self._lock:
            for digest in [d for d, exp in self._held.items() if exp <= now]:
                del self._held[digest]
            return list(self._held.items())

    def told(self, digest: str) -> None:
        with self._lock:
            self._held.pop(digest, None)


class Listener:
    """One process's subscription to logouts.

    :param connect: makes a blocking client (``redis.Redis`` or ``RedisCluster``)
        for the subscription.
    :param key: the sorted set and channel name.
    :param revoked: where the digests go.
    :param clock: the current time, to skip what has expired.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        key: str,
        revoked: RevokedTokens,
        clock: Callable[[], float] = time.time,
        unannounced: Unannounced | None = None,
    ) -> None:
        self._connect = connect
        self.key = key
        self.revoked = revoked
        #: This process's logouts that Redis did not take: told on each (re)connection.
        self.unannounced = Unannounced() if unannounced is None else unannounced
        self._clock = clock
        self._stop = threading.Event()
        #: Set whenever the listener is subscribed and has read the set.
        self.ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="crossmint-wsgi revocations", daemon=True
        )

    def start(self) -> Listener:
        """Read the active revocations once, now (a new process must not serve a
        JWT logged out before it started), then listen in the background."""
        try:
            self._read_active(self._connect())
        except (RedisError, RedisClusterException, OSError) as error:
            logger.warning(
                "could not read earlier logouts from Redis (%s): listening for new ones",
                type(error).__name__,
            )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except (RedisError, RedisClusterException, OSError) as error:
                self.ready.clear()
                if failures == 0:
                    logger.warning(
                        "logouts from other processes are not reaching this one"
                        " (Redis: %s); retrying",
                        type(error).__name__,
                    )
                wait = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                self._stop.wait(wait)

    def _listen(self) -> None:
        client = self._connect()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.key)
            # redis-py reconnects a subscription by itself, inside get_message: be told,
            # so that what was missed meanwhile is read again.
            reconnected = _Flag()
            connection = getattr(pubsub, "connection", None)
            register = getattr(connection, "register_connect_callback", None)
            if callable(register):
                register(reconnected.raise_)  # held weakly: a bound method of a local
            # Subscribed first, then read: a logout published meanwhile arrives twice, never not.
            self._read_active(client)
            self._tell_unannounced(client)
            self.ready.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self._apply(message.get("data"))
                if reconnected.up:
                    reconnected.up = False
                    self._read_active(client)
                if len(self.unannounced):
                    self._tell_unannounced(client)
        finally:
            # The client may be the app's own: only the subscription's connection goes.
            pubsub.close()

    def _tell_unannounced(self, client: Any) -> None:
        held = self.unannounced.pending(self._clock())
        for digest, exp in held:
            for command in commands(Announce(self.key, digest, exp, self._clock())):
                client.execute_command(*command)
            self.unannounced.told(digest)
        if held:
            logger.warning(
                "Redis answers again: %d logout(s) made while it was unavailable are told to"
                " every host",
                len(held),
            )

    def _read_active(self, client: Any) -> None:
        now = self._clock()
        active: list[tuple[bytes, float]] = client.zrangebyscore(
            self.key, now, "+inf", withscores=True
        )
        for digest, exp in active:
            self._add(digest, float(exp), now)

    def _apply(self, data: object) -> None:
        text = data.decode("latin-1") if isinstance(data, bytes) else str(data)
        digest, _, exp = text.partition(" ")
        try:
            self._add(digest, float(exp), self._clock())
        except ValueError:
            logger.warning("ignoring a malformed logout message on the revocation channel")

    def _add(self, digest: object, exp: float, now: float) -> None:
        name = digest.decode("latin-1") if isinstance(digest, bytes) else str(digest)
        if len(name) == 64:
            self.revoked.add(name, exp, now)
