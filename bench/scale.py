"""How cost grows with users: 1, 1k, 10k, 100k distinct sessions visited in turn.

    python bench/scale.py [--sessions 1,1000,10000,100000] [--budget MiB]
                          [--token-cache-size N] [--layer asgi|wsgi]

One middleware in process (ASGI by default, called as a server would, no
sockets), a bare app behind it, and ``S`` sessions whose requests come
round-robin: every session once, then again, the worst order for a cache
smaller than ``S``. Each request carries its session's two auth cookies and
two other cookies (about 770 bytes of ``Cookie`` header). Per ``S``:

- the middleware's CPU per request (this thread's CPU time, bare app
  subtracted), and as a ratio to ``verify_crossmint_jwt`` alone on a token
  it has never seen (the cost of one signature check, measured in the same run);
- the hit rate of the middleware's caches over the timed requests, and the
  cost of one miss, worked out from the hit rate and the ``S = 1`` cost
  (target: at most 1.1x ``verify_crossmint_jwt`` alone);
- the memory the caches hold per cached session (``tracemalloc``: every
  byte Python allocated while the sessions were first seen and kept
  after; target at most 1 KiB), and the caches' own estimate.

With the default budget (64 MiB) three quarters hold recent sessions (about
15,000 of these) and an eighth verified tokens: sessions beyond them are
served by a signature check, with a hit rate of about held / sessions.
``--token-cache-size`` is the auth's ``token_cache_size`` (by default, as
many as the tokens' share of the budget holds).
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from overhead_asgi import _receive, _send, asgi_scope, bare_asgi_app, run_to_completion

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuth,
    CrossmintWSGIMiddleware,
)
from crossmint_wsgi.caches import DEFAULT_BUDGET
from crossmint_wsgi.testing import CrossmintEmulator

MISS_TARGET = 1.1
SESSION_TARGET = 1024


def mint(emulator: CrossmintEmulator, count: int) -> list[str]:
    """``count`` Cookie headers, each a session of its own (an hour to live)."""
    started = time.monotonic()
    headers = []
    for i in range(count):
        jwt = emulator.issue_jwt(f"user-{i}", ttl=3600)
        headers.append(
            f"crossmint-jwt={jwt}; crossmint-refresh-token={secrets.token_urlsafe(32)};"
            f" _ga=GA1.1.{secrets.randbelow(10**10)}.1700000000; csrftoken={secrets.token_hex(32)}"
        )
        if i and i % 10_000 == 0:
            print(f"  minted {i} sessions in {time.monotonic() - started:.0f} s", flush=True)
    return headers


def _bare_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def _ignore(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def caller(layer: str, app: Any, headers: list[str]) -> Callable[[int], None]:
    """One request of session ``index``, as the layer's server would make it."""
    if layer == "wsgi":
        base = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
        }

        def call_wsgi(index: int) -> None:
            environ = dict(base)
            environ["HTTP_COOKIE"] = headers[index][:-1] + headers[index][-1]  # a new str
            app(environ, _ignore)

        return call_wsgi
    scopes = [asgi_scope(header) for header in headers]

    def call_asgi(index: int) -> None:
        scope = dict(scopes[index])
        scope["state"] = {}
        # A server decodes a new bytes object per request: so must this (bytes(b) is b
        # itself, with its hash cached; and the cache must be charged for keeping it).
        scope["headers"] = [(name, bytes(memoryview(value))) for name, value in scope["headers"]]
        run_to_completion(app(scope, _receive, _send))

    return call_asgi


def middleware(layer: str, emulator: CrossmintEmulator, budget: int, tokens: int | None) -> Any:
    options = {"jwks": emulator.key_set, "cache_budget": budget, "token_cache_size": tokens}
    if layer == "wsgi":
        return CrossmintWSGIMiddleware(_bare_wsgi, CrossmintAuth(emulator.crossmint(), **options))
    auth = AsyncCrossmintAuth(emulator.crossmint(), **options)
    return CrossmintASGIMiddleware(bare_asgi_app, auth)


def cpu_us(call: Callable[[int], None], order: range | list[int]) -> float:
    gc.collect()
    gc.disable()
    start = time.thread_time_ns()
    for index in order:
        call(index)
    elapsed = time.thread_time_ns() - start
    gc.enable()
    return elapsed / len(order) / 1000


def verify_alone(emulator: CrossmintEmulator, count: int) -> float:
    """``verify_crossmint_jwt`` on tokens it has never seen, CPU microseconds each."""
    auth = CrossmintAuth(emulator.crossmint(), jwks=emulator.key_set)
    tokens = [emulator.issue_jwt(f"alone-{i}", ttl=3600) for i in range(count + 1)]
    auth.verify_crossmint_jwt(tokens[-1])
    best = float("inf")
    for round_ in range(3):
        chunk = tokens[round_ * (count // 3) : (round_ + 1) * (count // 3)]
        start = time.thread_time_ns()
        for token in chunk:
            auth.verify_crossmint_jwt(token)
        best = min(best, (time.thread_time_ns() - start) / len(chunk) / 1000)
    return best


def signature_checks(app: Any) -> int:
    """Requests that reached a signature check: each is a miss of the tokens cache."""
    return next(stats.misses for stats in app.cache_stats() if stats.name == "tokens")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,1000,10000,100000")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET / 2**20, help="MiB")
    parser.add_argument("--token-cache-size", type=int, default=None)
    parser.add_argument("--layer", choices=("asgi", "wsgi"), default="asgi")
    parser.add_argument("--requests", type=int, default=20_000, help="at least, per row")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sessions.split(",")]
    budget = int(args.budget * 2**20)
    print(
        f"scale: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.1f}; {args.layer}, cache budget {args.budget:g} MiB,"
        f" token_cache_size {args.token_cache_size or 'by budget'}, RS256, round-robin"
    )
    with CrossmintEmulator(algorithm="RS256") as emulator:
        alone = verify_alone(emulator, 600)
        print(f"verify_crossmint_jwt alone, first-seen: {alone:.1f} us CPU")
        headers = mint(emulator, max(sizes))
        bare = caller(args.layer, bare_asgi_app if args.layer == "asgi" else _bare_wsgi, headers)
        print(
            f"\n{'sessions':>9} {'us/req':>8} {'x verify':>9} {'hit rate':>9}"
            f" {'miss x verify':>14} {'B/session':>10} {'estimate':>9} {'sessions':>9}"
            f" {'tokens':>7}"
        )
        hit_cost = None
        for size in sizes:
            app = middleware(args.layer, emulator, budget, args.token_cache_size)
            call = caller(args.layer, app, headers)
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for index in range(size):  # every session seen once: the caches fill
                call(index)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            stats = {one.name: one for one in app.cache_stats()}
            # Two keys a session in the recent sessions; one a token.
            sessions_held = stats["sessions"].entries // 2
            cached = max(sessions_held, stats["tokens"].entries)
            estimate = stats["sessions"].bytes + stats["tokens"].bytes
            count = max(args.requests, size)
            order = [i % size for i in range(count)]
            checks = signature_checks(app)
            wrapped_us = cpu_us(call, order)
            rate = 1 - (signature_checks(app) - checks) / count
            own = wrapped_us - cpu_us(bare, order)
            if hit_cost is None:
                hit_cost = own
            miss = (own - rate * hit_cost) / (1 - rate) / alone if rate < 0.999 else float("nan")
            print(
                f"{size:9} {own:8.2f} {own / alone:8.3f}x {rate:9.3f} {miss:13.2f}x"
                f" {held / max(cached, 1):10.0f} {estimate / max(cached, 1):9.0f}"
                f" {sessions_held:9} {stats['tokens'].entries:7}",
                flush=True,
            )
        print(
            f"\ntargets: a miss <= {MISS_TARGET}x verify alone; <= {SESSION_TARGET} B per cached"
            " session (tracemalloc)"
        )


if __name__ == "__main__":
    main()
