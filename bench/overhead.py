"""Per-request overhead of the middleware against the bare app, measured in one run.

    python bench/overhead.py [--requests N]

Calls the WSGI callables directly with a prepared environ (no sockets, no
server), so what is left is the middleware's own work. Each row times the
bare app and the wrapped app on the same requests and prints both, the
overhead in microseconds, the ratio, and the issue's target:

- no cookies: an anonymous request to an unprotected path;
- valid session seen before: the same session cookie on every request;
- first-seen valid session: every request a new JWT (from the emulator's
  ``create_session``), so each one costs a signature check.

The measuring helpers (``time_per_call``, ``Row``, ``print_rows``) live in
``bench/_common.py`` and do not know about WSGI: the ASGI rows use them too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from _common import (
    PROTECT,
    Row,
    Section,
    compare,
    first_seen_row,
    first_seen_sizes,
    run_sections,
    session_cookie,
)
from overhead_asgi import asgi_rows

from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware
from crossmint_wsgi.testing import CrossmintEmulator

# -- WSGI -------------------------------------------------------------------------------------


def bare_wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def wsgi_environ(cookie: str | None = None, path: str = "/") -> dict[str, Any]:
    """What a WSGI server passes for a plain browser GET."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml,*/*;q=0.8",
        "HTTP_USER_AGENT": "bench",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        # Browsers send the app's other cookies too.
        environ["HTTP_COOKIE"] = f"theme=dark; _ga=GA1.1.123456789.1700000000; {cookie}"
    return environ


def wsgi_caller(app: Any, environs: Sequence[dict[str, Any]]) -> Callable[[int], None]:
    """One request through ``app``: call it, drain the body, close it, as a server does."""
    last = len(environs) - 1

    def call(index: int) -> None:
        body = app(environs[min(index, last)], _start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    return call


def wsgi_rows(emulator: CrossmintEmulator, count: int) -> list[Row]:
    """The WSGI rows, each against a fresh middleware on the emulator."""

    def wrapped() -> tuple[CrossmintWSGIMiddleware, CrossmintAuth]:
        auth = CrossmintAuth(emulator.crossmint())
        return CrossmintWSGIMiddleware(bare_wsgi_app, auth, protect=PROTECT), auth

    def row(name: str, environs: list[dict[str, Any]], target_us: float) -> Row:
        middleware, auth = wrapped()
        with auth:
            bare, wrapped_app = (
                wsgi_caller(bare_wsgi_app, environs),
                wsgi_caller(middleware, environs),
            )
            return compare(name, bare, wrapped_app, count, target_us=target_us)

    # A server builds a new environ, and new header strings, for every request:
    # so do the rows (a string's hash is computed once per object; wsgi_environ
    # formats a new Cookie string each time).
    rows = [row("no cookies", [wsgi_environ() for _ in range(count)], 2.0)]

    # The same valid session on every request: verified once, then remembered.
    cookie = session_cookie(emulator, "user-seen")
    rows.append(row("valid session seen before", [wsgi_environ(cookie) for _ in range(count)], 5.0))

    # The same session, but another cookie of the app changes on every request
    # (an analytics counter, a rolling CSRF or session cookie): what a browser
    # really sends. Not one of the rows; the same target applies.
    cookie = session_cookie(emulator, "user-churn")
    environs = [wsgi_environ(f"_gat={i}; {cookie}") for i in range(count)]
    rows.append(row("seen before, other cookies change", environs, 5.0))

    # A new JWT on every request: each is a signature check.
    fresh, repeats = first_seen_sizes(count)
    # Enough for the warm-up call and every timed request.
    environs = [
        wsgi_environ(session_cookie(emulator, f"user-{i}")) for i in range(fresh * repeats + 1)
    ]
    middleware, auth = wrapped()
    with auth:
        # The key set is fetched on the first verification; keep that out of the row.
        wsgi_caller(middleware, [wsgi_environ(session_cookie(emulator, "warm-up"))])(0)
        bare = wsgi_caller(bare_wsgi_app, environs)
        rows.append(first_seen_row(bare, wsgi_caller(middleware, environs), len(environs), count))
    return rows


#: Each section of the table: a title and ``rows(emulator, count)``.
SECTIONS: list[Section] = [
    ("WSGI (CrossmintWSGIMiddleware vs the bare app)", wsgi_rows),
    ("ASGI (CrossmintASGIMiddleware vs the bare app)", asgi_rows),
]


def main(argv: Sequence[str] | None = None) -> None:
    run_sections(__doc__, "middleware overhead", SECTIONS, argv)


if __name__ == "__main__":
    main()
