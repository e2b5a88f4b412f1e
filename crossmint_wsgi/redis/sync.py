"""The Redis coordinator for threads (WSGI): the protocol's steps sent with blocking redis-py."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis.cluster

from ..coordination import LOGGED_OUT, LocalCoordinator
from ..errors import CrossmintAuthError
from ..models import AuthMaterial
from .base import RedisCoordinatorBase
from .clients import SYNC_KINDS, SyncClient, Target, accept, cluster_errors_as_redis_errors
from .exchange import Exchange
from .protocol import Command, Perform, Sleep, Step, commands, queue, reply_of

__all__ = ["RedisCoordinator", "send"]


def send(client: SyncClient, step: Command) -> Any:
    """Send one protocol step to Redis; its reply for the flow.

    One round trip on one server. Not a transaction: on a Cluster the step's
    commands may go to several nodes (each command's keys share one slot).
    """
    with cluster_errors_as_redis_errors():
        if isinstance(client, redis.cluster.RedisCluster):
            # One by one, not in redis-py's Cluster pipeline: it routes an EVAL by
            # asking its default node for the keys (COMMAND GETKEYS), so once that
            # node dies (a failover) every EVAL fails, whatever its slot, until
            # something else makes the client pick another default node. The
            # client routes a lone EVAL by its keys, and heals its slot map.
            cluster: Any = client  # execute_command is untyped in redis-py
            return reply_of(step, [cluster.execute_command(*each) for each in commands(step)])
        pipe = client.pipeline(transaction=False)
        queue(pipe, step)
        return reply_of(step, pipe.execute())


class RedisCoordinator(RedisCoordinatorBase):
    """Refreshes shared between processes and hosts through Redis, for threads (WSGI).

    .. code-block:: python

        from crossmint_wsgi.redis import RedisCoordinator

        auth = CrossmintAuth(crossmint, coordinator=RedisCoordinator.from_url(redis_url))

    Connections are opened lazily, by each process for itself: create it
    before gunicorn forks. See :mod:`crossmint_wsgi.redis` for what is stored
    and how failures are handled.

    :param client: a ``redis.Redis`` (a Sentinel's ``master_for(...)`` is one), a
        ``redis.cluster.RedisCluster``, or a function returning one (called
        once in each process, where it is used).
    :param grace: seconds a refresh result is served to requests that still
        carry the old secret: its lifetime in Redis and in each process's
        cache (a process that reads it late may keep it up to ``grace`` more).
    :param wait: the longest a request waits for another process's result
        before refreshing on its own. Keep it above the auth's ``timeout``.
    :param lock_ttl: how long a winner holds the lock (default ``wait``): a
        winner that dies blocks the others at most this long.
    :param poll_interval: seconds between a waiter's looks at Redis.
    :param rejected_ttl: seconds Crossmint's refusal of a secret is shared.
    :param unavailable_ttl: seconds a failure to reach Crossmint is shared.
    :param retry_interval: seconds Redis is left alone after it failed, once it
        is taken to be gone.
    :param failover_window: seconds a Redis that answered this process and
        then fails is taken to be failing over (a Cluster or Sentinel promoting
        a replica): meanwhile a refresh keeps trying it, for at most ``wait``,
        instead of refreshing on its own. Once Redis has failed for longer,
        refreshes go on in-process at once. Cover the deployment's failover
        time (Redis Cluster: ``cluster-node-timeout`` and a few seconds; the
        default suits its default 15 s); 0 lets only a flow already answered by
        Redis ride a failure out.
    :param log_interval: at most one warning about Redis per this many seconds.
    :param prefix: the start of every Redis key this coordinator writes.
    :param max_entries: bound on each process's grace cache.
    :raises CrossmintConfigError: a setting is out of range, or ``client`` is
        none of these (later, from a function that returns something else);
        ``setting`` names it.
    """

    def __init__(self, client: SyncClient | Callable[[], SyncClient], **settings: Any) -> None:
        super().__init__(**settings)
        self._connect: Callable[[], SyncClient] = accept(client, SYNC_KINDS, "client")
        self._client: SyncClient | None = None
        self._local: LocalCoordinator | None = None
        self._process_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> RedisCoordinator:
        """A coordinator on the Redis at ``url``: one server (``redis://``,
        ``rediss://``, ``unix://``), a Cluster (``redis+cluster://host:port,...``)
        or a Sentinel-guarded primary (``redis+sentinel://host:port,.../service``);
        see :mod:`crossmint_wsgi.redis.clients` for every form.

        Connection options go in the URL's query string
        (``?socket_timeout=2``, ``?ssl_ca_certs=/path/ca.pem``); the defaults are
        one-second timeouts and one immediate retry. Nothing connects until the
        first refresh.

        :param settings: the coordinator's settings, as for the constructor.
        :raises CrossmintConfigError: the URL is malformed (``setting == "url"``),
            or a setting is out of range.
        """
        return cls(Target.parse(url).sync_factory(), **settings)

    def _process(self) -> LocalCoordinator:
        if self._forked() or self._local is None:
            with self._process_lock:
                if self._forked() or self._local is None:
                    self._client = None
                    self._local = LocalCoordinator(self.settings.grace, self.max_entries)
                    self._pid = os.getpid()
        return self._local

    def _redis(self) -> SyncClient:
        client = self._client
        if client is None:
            with self._process_lock:
                if self._client is None:
                    self._client = self._connect()
                client = self._client
        return client

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        """Material for ``secret``: from this process, from Redis, or from ``perform()``.

        :param secret: the refresh secret being traded.
        :param perform: calls Crossmint; returns the material or raises
            :class:`~crossmint_wsgi.CrossmintAuthError`.
        :raises CrossmintAuthError: what ``perform()`` raised here or in the
            process that won the lock; ``SESSION_EXPIRED`` when the session
            was logged out, here or in another process.
        """
        local = self._process()
        vetting = self._vetting(secret, local.cache)
        if vetting is not None and self._drive(vetting):
            local.revoke(secret)
            raise LOGGED_OUT
        return local.refresh(secret, lambda: self._shared(secret, perform))

    def revoke(self, secret: str) -> list[str]:
        """End the session of ``secret`` in this process and, through Redis, in all.

        :returns: the successor secrets found, to be revoked at Crossmint too.
        """
        successors = self._process().revoke(secret)
        exchange = self._revocation(secret)
        if exchange is None:
            return successors
        return self._merge(successors, self._drive(exchange))

    def revoke_token(self, digest: str, exp: float) -> None:
        """Tell every process, through Redis, that a JWT was logged out until ``exp``."""
        exchange = self._announcement(digest, exp)
        if exchange is not None:
            self._drive(exchange)
            self._announced(exchange, digest, exp)

    def _blocking_client(self) -> Callable[[], Any] | None:
        return self._connect

    def _shared(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        try:
            exchange = self._exchange(secret)
            if exchange is None:
                return perform()
            result: AuthMaterial = self._drive(exchange, perform)
        except CrossmintAuthError as error:
            raise self._doubted(error) from None
        return result

    def _drive(self, exchange: Exchange, perform: Callable[[], AuthMaterial] | None = None) -> Any:
        """Step a flow of the protocol to its result."""
        with contextlib.closing(exchange):
            for step in exchange:
                with exchange.outcome():
                    exchange.answer(self._perform(step, perform))
        return exchange.result

    def _perform(self, step: Step, perform: Callable[[], AuthMaterial] | None) -> Any:
        if isinstance(step, Perform):
            assert perform is not None
            return perform()
        if isinstance(step, Sleep):
            return time.sleep(step.seconds)
        return send(self._redis(), step)

    def close(self) -> None:
        """Close this process's Redis connections and stop listening for logouts."""
        self._stop_listening()
        if self._client is not None and not self._forked():
            self._client.close()
        self._client = None
