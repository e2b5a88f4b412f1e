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

The measurement helpers (:func:`time_per_call`, :class:`Row`,
:func:`print_rows`) do not know about WSGI: the ASGI rows use them too.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware
from crossmint_wsgi.testing import CrossmintEmulator

PROTECT = ["/protected/:path*"]

# -- measuring, for any kind of app ---------------------------------------------------------


@dataclass
class Row:
    """One line of the table: the bare and wrapped cost of the same requests."""

    name: str
    bare_us: float
    wrapped_us: float
    target_us: float | None = None

    @property
    def overhead_us(self) -> float:
        return self.wrapped_us - self.bare_us

    @property
    def ratio(self) -> float:
        return self.wrapped_us / self.bare_us

    @property
    def verdict(self) -> str:
        if self.target_us is None:
            return ""
        return "meets" if self.overhead_us <= self.target_us else "MISSES"


def time_per_call(
    calls: Sequence[Callable[[int], None]], count: int, *, repeats: int = 9
) -> list[float]:
    """Microseconds per call of each ``call(i)``: the fastest of ``repeats`` timed loops.

    Time is this thread's CPU time, not the wall clock: while other
    processes hold the CPU the loop is not charged for it. The calls' loops
    take turns (bare, wrapped, bare, wrapped...), so what load remains
    (caches, frequency) affects both alike; and the fastest loop counts, as
    :mod:`timeit` advises. ``call`` gets the index of the request within
    the loop (0..count-1), so a row can give every request its own data,
    prepared beforehand.
    """
    for call in calls:
        call(0)  # warm-up: imports, caches, first connections
    best = [float("inf")] * len(calls)
    gc.collect()
    for _ in range(repeats):
        for position, call in enumerate(calls):
            gc.disable()
            start = time.thread_time_ns()
            for index in range(count):
                call(index)
            elapsed = time.thread_time_ns() - start
            gc.enable()
            best[position] = min(best[position], elapsed / count / 1000)
    return best


def compare(
    name: str,
    bare: Callable[[int], None],
    wrapped: Callable[[int], None],
    count: int,
    *,
    target_us: float | None = None,
    repeats: int = 9,
) -> Row:
    """A row: the bare and the wrapped call timed in turns."""
    bare_us, wrapped_us = time_per_call([bare, wrapped], count, repeats=repeats)
    return Row(name, bare_us, wrapped_us, target_us)


def print_rows(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    header = f"{'':34} {'bare':>9} {'wrapped':>9} {'overhead':>9} {'ratio':>7} {'target':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f"<= {row.target_us:g} us" if row.target_us is not None else ""
        print(
            f"{row.name:34} {row.bare_us:7.2f}us {row.wrapped_us:7.2f}us"
            f" {row.overhead_us:7.2f}us {row.ratio:6.2f}x {target:>9} {row.verdict}"
        )


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


def session_cookie(emulator: CrossmintEmulator, user_id: str) -> str:
    material = emulator.create_session(user_id, jwt_ttl=3600)
    return f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"


def wsgi_rows(emulator: CrossmintEmulator, count: int) -> list[Row]:
    """The three WSGI rows, each against a fresh middleware on the emulator."""
    rows = []

    def wrapped() -> tuple[CrossmintWSGIMiddleware, CrossmintAuth]:
        auth = CrossmintAuth(emulator.crossmint())
        return CrossmintWSGIMiddleware(bare_wsgi_app, auth, protect=PROTECT), auth

    # A server builds a new environ, and new header strings, for every request:
    # so do the rows (a string's hash is computed once per object).
    def environs_for(cookie: str | None) -> list[dict[str, Any]]:
        # wsgi_environ formats a new Cookie string each time.
        return [wsgi_environ(cookie) for _ in range(count)]

    # No cookies at all.
    environs = environs_for(None)
    middleware, auth = wrapped()
    with auth:
        rows.append(
            compare(
                "no cookies",
                wsgi_caller(bare_wsgi_app, environs),
                wsgi_caller(middleware, environs),
                count,
                target_us=2.0,
            )
        )

    # The same valid session on every request: verified once, then remembered.
    environs = environs_for(session_cookie(emulator, "user-seen"))
    middleware, auth = wrapped()
    with auth:
        rows.append(
            compare(
                "valid session seen before",
                wsgi_caller(bare_wsgi_app, environs),
                wsgi_caller(middleware, environs),
                count,
                target_us=5.0,
            )
        )

    # The same session, but another cookie of the app changes on every request
    # (an analytics counter, a rolling CSRF or session cookie): what a browser
    # really sends. Not one of the rows; the same target applies.
    material = emulator.create_session("user-churn", jwt_ttl=3600)
    auth_cookies = (
        f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"
    )
    environs = [wsgi_environ(f"_gat={i}; {auth_cookies}") for i in range(count)]
    middleware, auth = wrapped()
    with auth:
        rows.append(
            compare(
                "seen before, other cookies change",
                wsgi_caller(bare_wsgi_app, environs),
                wsgi_caller(middleware, environs),
                count,
                target_us=5.0,
            )
        )

    # A new JWT on every request: each is a signature check. Minting is slow
    # (an RSA signature each), so this row runs fewer requests.
    fresh, repeats = max(50, count // 100), 5
    # Enough for the warm-up call and every timed request.
    environs = [
        wsgi_environ(session_cookie(emulator, f"user-{i}")) for i in range(fresh * repeats + 1)
    ]
    middleware, auth = wrapped()
    with auth:
        # The key set is fetched on the first verification; keep that out of the row.
        wsgi_caller(middleware, [wsgi_environ(session_cookie(emulator, "warm-up"))])(0)
        call = wsgi_caller(middleware, environs)
        served = [0]

        def first_seen(index: int) -> None:
            call(served[0])
            served[0] += 1

        bare = wsgi_caller(bare_wsgi_app, environs)
        rows.append(compare("first-seen valid session", bare, first_seen, fresh, repeats=repeats))
        assert served[0] <= len(environs), "every timed request must carry a new JWT"
    return rows


#: Each section of the table: a title and ``rows(emulator, count)``. The ASGI
#: rows go here beside the WSGI ones.
SECTIONS: list[tuple[str, Callable[[CrossmintEmulator, int], list[Row]]]] = [
    ("WSGI (CrossmintWSGIMiddleware vs the bare app)", wsgi_rows),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per timed loop")
    args = parser.parse_args(argv)
    print(
        f"crossmint-wsgi middleware overhead: Python {platform.python_version()},"
        f" {platform.machine()}, {args.requests} requests per loop, CPU time of the fastest loop"
    )
    sections = list(SECTIONS)
    try:
        # The ASGI rows live beside this file; they reuse its helpers.
        from overhead_asgi import asgi_rows
    except ImportError:
        pass
    else:
        sections.append(("ASGI (CrossmintASGIMiddleware vs the bare app)", asgi_rows))
    with CrossmintEmulator(algorithm="RS256") as emulator:
        for title, rows in sections:
            print_rows(title, rows(emulator, args.requests))


if __name__ == "__main__":
    main()
