"""Which Redis clients a coordinator takes, and the clients its URL forms build.

Redis as it is deployed: one server (``redis://``, ``rediss://`` with TLS,
``unix://``), a Redis Cluster (``redis+cluster://``), or a primary that
Sentinel guards (``redis+sentinel://``). Valkey speaks the same protocol:
``valkey``/``valkeys`` in a scheme stand for ``redis``/``rediss``.

- ``redis://[user:password@]host:6379/0?socket_timeout=2``
- ``rediss://host:6380/0?ssl_ca_certs=/etc/ca.pem`` (TLS, the CA to trust)
- ``redis+cluster://host:7000,host2:7001?...`` (any nodes to start from; ``rediss+cluster`` for TLS)
- ``redis+sentinel://[user:password@]host:26379,host2:26379/mymaster[/db]?...``
  (the sentinels, then the primary's service name; the credentials and
  options are the primary's, and the sentinels get the same timeouts and TLS
  settings; ``rediss+sentinel`` for TLS)

Each form has a blocking and an asyncio flavour. Clients are built by the
functions this module returns, in the process that uses them, since a
Cluster client connects as soon as it is made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Union

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from ..errors import CrossmintConfigError

__all__ = [
    "ASYNC_KINDS",
    "SYNC_KINDS",
    "AsyncClient",
    "SyncClient",
    "Target",
    "accept",
    "cluster_errors_as_redis_errors",
]

SyncClient = Union[redis.Redis, redis.cluster.RedisCluster]  # noqa: UP007 - runtime on 3.10
AsyncClient = Union[redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster]  # noqa: UP007

#: The client classes each coordinator takes (a Sentinel's ``master_for`` is a ``Redis``).
SYNC_KINDS: tuple[type, ...] = (redis.Redis, redis.cluster.RedisCluster)
ASYNC_KINDS: tuple[type, ...] = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)

_SCHEMES = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}

_ACCEPTED_URLS = (
    "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, redis+sentinel://,"
    " rediss+sentinel:// (valkey for redis in any of them)"
)


@contextlib.contextmanager
def cluster_errors_as_redis_errors() -> Iterator[None]:
    """A Cluster client that reaches no node raises ``RedisClusterException``, which
    is no ``RedisError``: here it becomes one, a Redis failure like any other."""
    try:
        yield
    except RedisClusterException as error:
        raise RedisError(f"{type(error).__name__}: {error}"[:200]) from error


def _kinds_text(kinds: tuple[type, ...]) -> str:
    return ", ".join(f"{kind.__module__}.{kind.__qualname__}" for kind in kinds)


def accept(client: object, kinds: tuple[type, ...], setting: str) -> Callable[[], Any]:
    """A function returning the client: ``client`` itself when it is one of
    ``kinds``, or the clients a factory function returns, each checked.

    :raises CrossmintConfigError: ``client`` is neither (``setting`` names it);
        later, when a factory returns something else.
    """
    if isinstance(client, kinds):
        return lambda: client
    wrong = (*SYNC_KINDS, *ASYNC_KINDS, redis.sentinel.Sentinel, redis.asyncio.sentinel.Sentinel)
    if isinstance(client, wrong) or not callable(client):
        raise CrossmintConfigError(_refusal(client, kinds, setting), setting=setting)
    factory: Callable[[], object] = client

    def connect() -> Any:
        made = factory()
        if not isinstance(made, kinds):
            raise CrossmintConfigError(_refusal(made, kinds, setting), setting=setting)
        return made

    return connect


def _refusal(client: object, kinds: tuple[type, ...], setting: str) -> str:
    what = type(client).__module__ + "." + type(client).__qualname__
    hint = ""
    if isinstance(client, (redis.sentinel.Sentinel, redis.asyncio.sentinel.Sentinel)):
        hint = " (for a Sentinel, pass sentinel.master_for(service_name))"
    return (
        f"{setting} must be one of {_kinds_text(kinds)}, or a function returning one;"
        f" got a {what}{hint}"
    )


def _node(kind: Any, node: tuple[str, int]) -> Any:
    return kind(*node)  # ClusterNode is untyped in redis-py


def _options(*, asynchronous: bool) -> dict[str, Any]:
    # Short timeouts and a single immediate retry: a Redis that does not answer
    # must cost a request little, since the request goes on without it.
    return {
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "retry": (AsyncRetry if asynchronous else Retry)(NoBackoff(), 1),
    }


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed coordinator URL: which kind of deployment, where, with what options.

    :raises CrossmintConfigError: the URL is malformed or of no supported
        form (``setting == "url"``); the message never contains the URL,
        which may hold a password.
    """

    kind: str
    url: str
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> Target:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower().replace("valkey", "redis")
        if not sep or scheme not in _SCHEMES:
            raise CrossmintConfigError(
                f"the Redis URL's scheme must be one of {_ACCEPTED_URLS}", setting="url"
            )
        kind, tls = _SCHEMES[scheme]
        try:
            if kind == "single":
                plain = f"{scheme}://{rest}"
                redis.ConnectionPool.from_url(plain)  # parses now; connects later
                return cls(kind, plain, tls)
            return cls._parse_nodes(kind, tls, rest)
        except (ValueError, IndexError) as error:
            # Neither the URL nor the error's text (it may quote the URL) is shown.
            raise CrossmintConfigError(
                f"the Redis URL is not usable ({type(error).__name__}): expected"
                " redis[s]+cluster://host:port[,host:port...][?options] or"
                " redis[s]+sentinel://[user:password@]host:port[,host:port...]/service[/db][?options]",
                setting="url",
            ) from None

    @classmethod
    def _parse_nodes(cls, kind: str, tls: bool, rest: str) -> Target:
        split = urllib.parse.urlsplit(f"redis://{rest}")
        userinfo, _, hosts = split.netloc.rpartition("@")
        nodes = []
        for host in hosts.split(","):
            parsed = urllib.parse.urlsplit(f"redis://{host}")
            if not parsed.hostname:
                raise ValueError("a node without a host")
            nodes.append((parsed.hostname, parsed.port or (26379 if kind == "sentinel" else 6379)))
        parts = [part for part in split.path.split("/") if part]
        service = ""
        db = ""
        if kind == "sentinel":
            if not parts or len(parts) > 2:
                raise ValueError("a sentinel URL names its service, then at most a db")
            service = urllib.parse.unquote(parts[0])
            db = parts[1] if len(parts) == 2 else ""
        elif parts and parts != ["0"]:
            raise ValueError("a cluster has only db 0")
        # redis-py reads the credentials, db and query options as for one server.
        credentials = f"{userinfo}@" if userinfo else ""
        query = f"?{split.query}" if split.query else ""
        first = f"{nodes[0][0]}:{nodes[0][1]}"
        options: dict[str, Any] = parse_url(  # type: ignore[no-untyped-call]
            f"redis://{credentials}{first}/{db}{query}"
        )
        for key in ("host", "port"):
            options.pop(key, None)
        if kind == "cluster":
            options.pop("db", None)
        if tls:
            options["ssl"] = True
        return cls(kind, "", tls, tuple(nodes), service, options)

    def sync_factory(self) -> Callable[[], SyncClient]:
        """Builds this URL's blocking client (call it in the process that uses it)."""
        options = _options(asynchronous=False)
        if self.kind == "single":
            return lambda: redis.Redis.from_url(self.url, **options)
        if self.kind == "cluster":
            nodes = [_node(redis.cluster.ClusterNode, node) for node in self.nodes]
            return lambda: redis.cluster.RedisCluster(
                startup_nodes=nodes, **{**options, **self.options}
            )

        def primary() -> SyncClient:
            settings = {**options, **self.options}
            retry = settings.pop("retry")
            sentinel: Any = redis.sentinel.Sentinel  # untyped in redis-py
            guard = sentinel(
                list(self.nodes), sentinel_kwargs=self._sentinel_options(settings), **settings
            )
            client: redis.Redis = guard.master_for(self.service, retry=retry)
            return client

        return primary

    def async_factory(self) -> Callable[[], AsyncClient]:
        """Builds this URL's asyncio client (call it on the event loop that uses it)."""
        options = _options(asynchronous=True)
        if self.kind == "single":
            return lambda: redis.asyncio.Redis.from_url(self.url, **options)
        if self.kind == "cluster":
            nodes = [_node(redis.asyncio.cluster.ClusterNode, node) for node in self.nodes]
            return lambda: redis.asyncio.cluster.RedisCluster(
                startup_nodes=nodes, **{**options, **self.options}
            )

        def primary() -> AsyncClient:
            settings = {**options, **self.options}
            retry = settings.pop("retry")
            sentinel: Any = redis.asyncio.sentinel.Sentinel  # untyped in redis-py
            guard = sentinel(
                list(self.nodes), sentinel_kwargs=self._sentinel_options(settings), **settings
            )
            client: redis.asyncio.Redis = guard.master_for(self.service, retry=retry)
            return client

        return primary

    @staticmethod
    def _sentinel_options(settings: dict[str, Any]) -> dict[str, Any]:
        # The sentinels share the primary's timeouts and TLS, not its credentials or db.
        return {
            key: value
            for key, value in settings.items()
            if key.startswith(("socket_", "ssl")) and key != "socket_keepalive_options"
        }
