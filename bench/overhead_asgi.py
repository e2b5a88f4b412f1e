"""Per-request overhead of CrossmintASGIMiddleware against the bare ASGI app, in one run.

    python bench/overhead_asgi.py [--requests N]

Calls the ASGI callables directly with a prepared scope and trivial
``receive`` and ``send`` (no sockets, no server, no event loop scheduling),
so what is left is the middleware's own work. Rows, as for WSGI in
``bench/overhead.py`` (both measure with ``bench/_common.py``):

- no cookies: an anonymous request to an unprotected path (target <= 5 us);
- valid session seen before: the same session cookie on every request
  (target <= 10 us);
- seen before, other cookies change: the same session, with another cookie
  of the app changing on every request, as browsers really send;
- first-seen valid session: a new JWT on every request, each a signature check.

A request that needs no I/O never suspends, so each one is a coroutine run
to completion by one ``send(None)``: exactly what awaiting it costs inside a
server, minus the server. A coroutine that does suspend (it wanted the
network) stops the bench: the measured paths must do no I/O.

``asgi_rows(emulator, count)`` is the section ``bench/overhead.py`` can list
beside its WSGI rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from _common import (
    PROTECT,
    Row,
    compare,
    first_seen_row,
    first_seen_sizes,
    run_sections,
    session_cookie,
)

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware
from crossmint_wsgi.testing import CrossmintEmulator

TARGETS = {"no cookies": 5.0, "valid session seen before": 10.0}

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
BODY = {"type": "http.response.body", "body": b"ok"}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def bare_asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send(START)
    await send(BODY)


async def _receive() -> dict[str, Any]:
    return REQUEST


async def _send(message: Any) -> None:
    return None


def asgi_scope(cookie: str | None = None, path: str = "/") -> dict[str, Any]:
    """What uvicorn passes for a plain browser GET (``state``: its lifespan state copy)."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench"),
        (b"accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b"en-US,en;q=0.5"),
        (b"connection", b"keep-alive"),
    ]
    if cookie is not None:
        # Browsers send the app's other cookies too.
        headers.append(
            (b"cookie", f"theme=dark; _ga=GA1.1.123456789.1700000000; {cookie}".encode())
        )
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


def run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine that must not suspend, as awaiting it would."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the request suspended: it did I/O, which no measured path may do")


def asgi_caller(app: Any, scopes: Sequence[dict[str, Any]]) -> Callable[[int], None]:
    """One request through ``app``, with a scope of its own as a server gives it."""
    last = len(scopes) - 1

    def call(index: int) -> None:
        # The server builds a new scope (and state copy) per request; so does this.
        scope = dict(scopes[min(index, last)])
        scope["state"] = {}
        run_to_completion(app(scope, _receive, _send))

    return call


def asgi_rows(emulator: CrossmintEmulator, count: int) -> list[Row]:
    """The ASGI rows, each against a fresh middleware on the emulator."""
    rows = []

    def wrapped() -> CrossmintASGIMiddleware:
        auth = AsyncCrossmintAuth(emulator.crossmint())
        middleware = CrossmintASGIMiddleware(bare_asgi_app, auth, protect=PROTECT)
        # The key set is fetched on the first verification (network I/O, in an
        # event loop): do it here, outside the rows.
        warm = asgi_scope(session_cookie(emulator, "warm-up"))

        async def warm_up() -> None:
            await middleware(warm, _receive, _send)
            await auth.aclose()

        asyncio.run(warm_up())
        return middleware

    def row(name: str, scopes: list[dict[str, Any]]) -> Row:
        bare, middleware = asgi_caller(bare_asgi_app, scopes), asgi_caller(wrapped(), scopes)
        return compare(name, bare, middleware, count, target_us=TARGETS.get(name))

    rows.append(row("no cookies", [asgi_scope()]))
    rows.append(row("valid session seen before", [asgi_scope(session_cookie(emulator, "seen"))]))

    cookie = session_cookie(emulator, "user-churn")
    rows.append(
        row(
            "seen before, other cookies change",
            [asgi_scope(f"_gat={i}; {cookie}") for i in range(count)],
        )
    )

    # A new JWT on every request, each JWT used by one timed request only.
    fresh, repeats = first_seen_sizes(count)
    scopes = [asgi_scope(session_cookie(emulator, f"user-{i}")) for i in range(fresh * repeats + 1)]
    bare = asgi_caller(bare_asgi_app, scopes)
    rows.append(first_seen_row(bare, asgi_caller(wrapped(), scopes), len(scopes), count))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    section = ("ASGI (CrossmintASGIMiddleware vs the bare app)", asgi_rows)
    run_sections(__doc__, "ASGI middleware overhead", [section], argv)


if __name__ == "__main__":
    main()
