"""The Redis coordinator for tasks (ASGI): the protocol's steps sent with redis-py's asyncio
client, or with the blocking client in worker threads on trio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from redis.exceptions import RedisError

from ..coordination import LOGGED_OUT, AsyncLocalCoordinator
from ..errors import CrossmintAuthError
from ..models import AuthMaterial
from .base import RedisCoordinatorBase
from .clients import (
    ASYNC_KINDS,
    SYNC_KINDS,
    AsyncClient,
    SyncClient,
    Target,
    accept,
    cluster_errors_as_redis_errors,
)
from .exchange import Exchange
from .protocol import Command, Perform, Release, Sleep, Step, queue, reply_of
from .sync import send as send_blocking

__all__ = ["AsyncRedisCoordinator"]

_RELEASE_TIMEOUT = 2.0


async def _send(client: AsyncClient, step: Command) -> Any:
    """As :func:`crossmint_wsgi.redis.sync.send`, awaited."""
    with cluster_errors_as_redis_errors():
        pipe = client.pipeline(transaction=False)
        queue(pipe, step)
        return reply_of(step, await pipe.execute())


class AsyncRedisCoordinator(RedisCoordinatorBase):
    """Refreshes shared between processes and hosts through Redis, for tasks (ASGI).

    On asyncio it uses redis-py's asyncio client, one per event loop. redis-py
    has no trio client, so on trio the blocking client runs in worker threads.

    .. code-block:: python

        from crossmint_wsgi.redis import AsyncRedisCoordinator

        auth = AsyncCrossmintAuth(crossmint, coordinator=AsyncRedisCoordinator.from_url(url))

    :param client: a ``redis.asyncio.Redis`` (a ``redis.asyncio.sentinel``
        Sentinel's ``master_for(...)`` is one), a
        ``redis.asyncio.cluster.RedisCluster``, or a function returning one
        (called once per event loop), used on asyncio.
    :param sync_client: a blocking client as
        :class:`~crossmint_wsgi.redis.RedisCoordinator` takes, or a function
        returning one, used on trio; without it, trio coordinates in-process only.
    :raises CrossmintConfigError: a client is of another kind (``setting`` is
        ``"client"`` or ``"sync_client"``), or a setting is out of range.

    The other settings are :class:`~crossmint_wsgi.redis.RedisCoordinator`'s.
    """

    def __init__(
        self,
        client: AsyncClient | Callable[[], AsyncClient],
        *,
        sync_client: SyncClient | Callable[[], SyncClient] | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self._connect: Callable[[], AsyncClient] = accept(client, ASYNC_KINDS, "client")
        self._connect_sync: Callable[[], SyncClient] | None = (
            None if sync_client is None else accept(sync_client, SYNC_KINDS, "sync_client")
        )
        self._loop: object = None
        self._client: AsyncClient | None = None
        self._sync: SyncClient | None = None
        self._sync_lock = threading.Lock()
        self._local: AsyncLocalCoordinator | None = None

    @classmethod
    def from_url(cls, url: str, **settings: Any) -> AsyncRedisCoordinator:
        """A coordinator on the Redis at ``url``, for asyncio and trio alike.

        As :meth:`RedisCoordinator.from_url <crossmint_wsgi.redis.RedisCoordinator.from_url>`.

        :raises CrossmintConfigError: the URL is malformed (``setting == "url"``),
            or a setting is out of range.
        """
        target = Target.parse(url)
        return cls(target.async_factory(), sync_client=target.sync_factory(), **settings)

    def _process(self) -> AsyncLocalCoordinator:
        if self._forked() or self._local is None:
            self._client = self._sync = None
            self._loop = None
            self._local = AsyncLocalCoordinator(self.settings.grace, self.max_entries)
            self._pid = os.getpid()
        return self._local

    def _sync_redis(self) -> SyncClient:
        with self._sync_lock:
            if self._sync is None:
                if self._connect_sync is None:
                    raise RedisError("no sync_client to reach Redis from trio")
                self._sync = self._connect_sync()
            return self._sync

    async def _send(self, step: Command) -> Any:
        loop = anyio.lowlevel.current_token().native_token
        if not isinstance(loop, asyncio.AbstractEventLoop):
            return await anyio.to_thread.run_sync(send_blocking, self._sync_redis(), step)
        # The asyncio client's connections belong to the loop that opened them.
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._connect(), loop
        return await _send(self._client, step)

    async def refresh(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        """As :meth:`RedisCoordinator.refresh`, with ``perform`` awaited."""
        local = self._process()
        vetting = self._vetting(secret, local.cache)
        if vetting is not None and await self._drive(vetting):
            await local.revoke(secret)
            raise LOGGED_OUT

        async def shared() -> AuthMaterial:
            return await self._shared(secret, perform)

        return await local.refresh(secret, shared)

    async def revoke(self, secret: str) -> list[str]:
        """As :meth:`RedisCoordinator.revoke`."""
        successors = await self._process().revoke(secret)
        exchange = self._revocation(secret)
        if exchange is None:
            return successors
        return self._merge(successors, await self._drive(exchange))

    async def revoke_token(self, digest: str, exp: float) -> None:
        """As :meth:`RedisCoordinator.revoke_token`."""
        exchange = self._announcement(digest, exp)
        if exchange is not None:
            await self._drive(exchange)
            self._announced(exchange, digest, exp)

    def _blocking_client(self) -> Callable[[], Any] | None:
        return self._connect_sync

    async def _shared(
        self, secret: str, perform: Callable[[], Awaitable[AuthMaterial]]
    ) -> AuthMaterial:
        try:
            exchange = self._exchange(secret)
            if exchange is None:
                return await perform()
            result: AuthMaterial = await self._drive(exchange, perform)
        except CrossmintAuthError as error:
            raise self._doubted(error) from None
        return result

    async def _drive(
        self, exchange: Exchange, perform: Callable[[], Awaitable[AuthMaterial]] | None = None
    ) -> Any:
        """As :meth:`RedisCoordinator._drive`, awaited."""
        with contextlib.closing(exchange):
            for step in exchange:
                with exchange.outcome():
                    exchange.answer(await self._perform(step, perform))
        return exchange.result

    async def _perform(
        self, step: Step, perform: Callable[[], Awaitable[AuthMaterial]] | None
    ) -> Any:
        if isinstance(step, Perform):
            assert perform is not None
            return await perform()
        if isinstance(step, Sleep):
            return await anyio.sleep(step.seconds)
        # A release runs while this task is being cancelled: shield it, briefly.
        timeout = _RELEASE_TIMEOUT if isinstance(step, Release) else None
        with anyio.move_on_after(timeout, shield=timeout is not None):
            return await self._send(step)
        return None

    async def aclose(self) -> None:
        """Close the connections of the current event loop and of the worker threads,
        and stop listening for logouts."""
        self._stop_listening()
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
