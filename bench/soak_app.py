"""The soak's pass-through, loaded by the servers: the examples plus ``GET /_soak/stats``.

The route answers the worker's process id, RSS and the figures of the
middleware's caches (its public ``cache_stats()``). With ``SOAK_CACHE_BOUND``
set, the example's middleware is rebuilt, with the same options, around an
auth whose caches hold about that many sessions (``token_cache_size``,
``cache_budget`` from :func:`cache_budget`, and the Redis coordinator's
``max_entries``), so that they fill up during a run: memory after warm-up is
then the steady state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from crossmint_wsgi.config import Crossmint
from crossmint_wsgi.flows import AuthCore
from crossmint_wsgi.middleware import GatedMiddleware

STATS_PATH = "/_soak/stats"

#: What a soak session (a 633-byte JWT, a 43-byte refresh secret, a 716-byte
#: ``Cookie`` header) is charged, about: in the verified tokens, its JWT
#: (twice its length and the entry); in the recent sessions, its two keys,
#: the header, JWT, secret and the library's per-session overhead.
TOKEN_CHARGE = 1500
SESSION_CHARGE = 3150


def cache_budget(crossmint: Crossmint, bound: int) -> int:
    """A ``cache_budget`` in which the verified tokens' share holds ``bound``
    soak JWTs and the recent sessions' share ``bound`` sessions.

    The shares are read from a real :class:`~crossmint_wsgi.flows.AuthCore`,
    so the soak follows the library's split of the budget wherever it goes;
    the refresh results' share is then whatever the split gives them.
    """
    probe = 2**20
    core = AuthCore(crossmint, cache_budget=probe)
    return max(
        math.ceil(bound * TOKEN_CHARGE * probe / core.token_budget),
        math.ceil(bound * SESSION_CHARGE * probe / core.session_budget),
    )


#: The middleware options, as :class:`~crossmint_wsgi.routes.Gate` keeps them.
GATE_OPTIONS = (
    "refresh_path",
    "logout_path",
    "protect",
    "login_url",
    "allowed_origins",
    "max_body",
    "retry_after",
    "client_ip_header",
)

MiddlewareT = TypeVar("MiddlewareT", bound=GatedMiddleware[Any, Any])


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cache_stats(middleware: GatedMiddleware[Any, Any]) -> list[dict[str, Any]]:
    """The figures of each of the middleware's caches in this process, as JSON:
    :class:`~crossmint_wsgi.caches.CacheStats`'s fields, its name as ``type``."""
    found = []
    for stats in middleware.cache_stats():
        figures = dataclasses.asdict(stats)
        figures["type"] = figures.pop("name")
        found.append(figures)
    return found


def _cache_bound() -> int | None:
    bound = os.environ.get("SOAK_CACHE_BOUND")
    return int(bound) if bound else None


def _small_caches(middleware: MiddlewareT, bound: int, **auth_settings: Any) -> MiddlewareT:
    """``middleware`` again (same app, same options), its auth's caches sized for ``bound``."""
    auth = type(middleware.auth)(
        middleware.auth.crossmint,
        token_cache_size=bound,
        cache_budget=cache_budget(middleware.auth.crossmint, bound),
        **auth_settings,
    )
    options = {name: getattr(middleware.gate, name) for name in GATE_OPTIONS}
    return type(middleware)(middleware.app, auth, **options)


def _stats(middleware: GatedMiddleware[Any, Any]) -> bytes:
    data = {"pid": os.getpid(), "rss_kb": rss_kb(), "caches": cache_stats(middleware)}
    return json.dumps(data).encode()


class _WsgiStats:
    def __init__(self, app: Callable[..., Any], middleware: GatedMiddleware[Any, Any]) -> None:
        self.app = app
        self.middleware = middleware

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == STATS_PATH:
            body = _stats(self.middleware)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return self.app(environ, start_response)


def flask_app_with_stats() -> _WsgiStats:
    """gunicorn: ``soak_app:flask_app_with_stats()``, the Flask example behind the stats route."""
    import flask_app  # examples/ is gunicorn's chdir

    middleware = flask_app.app.wsgi_app
    bound = _cache_bound()
    if bound is not None:
        # The example's coordinator, with its per-process grace cache bounded too.
        redis_url = os.environ.get("CROSSMINT_REDIS_URL")
        if redis_url:
            from crossmint_wsgi.redis import RedisCoordinator

            coordinator = RedisCoordinator.from_url(redis_url, max_entries=bound)
            middleware = _small_caches(middleware, bound, coordinator=coordinator)
        else:
            middleware = _small_caches(middleware, bound)
        flask_app.app.wsgi_app = middleware
    return _WsgiStats(flask_app.app, middleware)


class _AsgiStats:
    def __init__(self, middleware: GatedMiddleware[Any, Any], own_auth: bool) -> None:
        self.middleware = middleware
        self.own_auth = own_auth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == STATS_PATH:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": _stats(self.middleware)})
            return
        await self.middleware(scope, receive, send)
        if scope["type"] == "lifespan" and self.own_auth:
            # The example closes its own auth at shutdown; this one is the soak's.
            await self.middleware.auth.aclose()


def raw_asgi_with_stats() -> _AsgiStats:
    """uvicorn: ``--factory soak_app:raw_asgi_with_stats``: the raw ASGI example, stats route."""
    import raw_asgi

    bound = _cache_bound()
    if bound is None:
        return _AsgiStats(raw_asgi.app, own_auth=False)
    return _AsgiStats(_small_caches(raw_asgi.app, bound), own_auth=True)
