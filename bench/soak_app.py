"""The soak's pass-through, loaded by the servers: the examples plus ``GET /_soak/stats``.

The route answers the worker's process id, RSS and the sizes of the library's
in-memory caches; the caches' bounds are lowered to ``SOAK_CACHE_BOUND`` so
they fill up during a run (memory after warm-up is then the steady state).
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable
from typing import Any

STATS_PATH = "/_soak/stats"


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _ours(obj: object) -> bool:
    module = getattr(type(obj), "__module__", None)
    return isinstance(module, str) and module.startswith("crossmint_wsgi")


def cache_stats() -> list[dict[str, Any]]:
    """Entries against bound of each of the library's caches in this process.

    The one place that reads the caches' insides (found with :mod:`gc`, private
    fields): once the caches have a public ``stats()`` view, only this
    function changes.
    """
    found = []
    for cache in gc.get_objects():
        if not _ours(cache):
            continue
        if hasattr(cache, "max_size") and hasattr(cache, "__len__"):
            kind, entries, bound = type(cache).__name__, len(cache), cache.max_size
        elif hasattr(cache, "max_entries") and hasattr(cache, "_entries"):
            kind, entries, bound = type(cache).__name__, len(cache._entries), cache.max_entries
        elif hasattr(cache, "_recent") and hasattr(cache, "_recent_size"):
            # The middleware's shortcut files each remembered session under several
            # keys (the header as received, its auth pairs...): count the sessions.
            kind, bound = "recent sessions", cache._recent_size
            entries = len({id(entry) for entry in list(cache._recent.values())})
        else:
            continue
        found.append({"type": kind, "entries": entries, "bound": int(bound)})
    return found


def _lower_bounds(bound: int) -> None:
    for obj in gc.get_objects():
        if not _ours(obj):
            continue
        # A coordinator's max_entries too: it sizes the grace cache it makes per process.
        for name in ("max_size", "max_entries", "_recent_size"):
            if isinstance(getattr(obj, name, None), int):
                setattr(obj, name, bound)


def _stats() -> bytes:
    data = {"pid": os.getpid(), "rss_kb": rss_kb(), "caches": cache_stats()}
    return json.dumps(data).encode()


def _bound_from_env() -> None:
    bound = os.environ.get("SOAK_CACHE_BOUND")
    if bound:
        _lower_bounds(int(bound))


class _WsgiStats:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.bounded = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.bounded:
            # After the fork: the caches of this worker, created by now.
            self.bounded = True
            _bound_from_env()
        if environ.get("PATH_INFO") == STATS_PATH:
            _bound_from_env()
            body = _stats()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        return self.app(environ, start_response)


def flask_app_with_stats() -> _WsgiStats:
    """gunicorn: ``soak_app:flask_app_with_stats()``, the Flask example behind the stats route."""
    import flask_app  # examples/ is gunicorn's chdir

    return _WsgiStats(flask_app.app)


class _AsgiStats:
    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.bounded = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if not self.bounded:
                self.bounded = True
                _bound_from_env()
            if scope["path"] == STATS_PATH:
                _bound_from_env()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": _stats()})
                return
        await self.app(scope, receive, send)


def raw_asgi_with_stats() -> _AsgiStats:
    """uvicorn: ``--factory soak_app:raw_asgi_with_stats``: the raw ASGI example, stats route."""
    import raw_asgi

    return _AsgiStats(raw_asgi.app)
