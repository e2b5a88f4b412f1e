"""Load and soak: many users, JWTs expiring every few seconds, a key rotation, real servers.

Run: ``.venv/bin/python bench/soak.py [--seconds 60] [--users 200] [--servers gunicorn,uvicorn]``
(``--help`` for the rest). Bounded in time; CI does not run it. Everything
listens on 127.0.0.1 only.

It starts, as real processes:

- the Crossmint emulator (``python -m crossmint_wsgi.testing``) with a JWT
  lifetime of a few seconds and single-use refresh tokens (``reuse_window=0``);
- a ``redis-server`` (``tests/redis_server.py``);
- the Flask example under gunicorn with 4 workers and ``CROSSMINT_REDIS_URL``
  (``examples/gunicorn.conf.py``), then the raw ASGI example under uvicorn.

Each example is served through a thin pass-through (``bench/soak_app.py``), which adds
one route, ``GET /_soak/stats`` (its process id, RSS and the figures of the
library's in-memory caches, read through the middleware's public
``cache_stats()``), and lowers the caches' bounds through the auth's public
settings: ``token_cache_size`` to ``--cache-bound``, ``cache_budget`` to what
lets ``AuthCore``'s shares of it (read from a real one: ``session_budget``,
``token_budget``, ``refresh_budget``) hold that many sessions and tokens
(``soak_app.cache_budget``), and the Redis coordinator's ``max_entries`` to
``--cache-bound`` (its per-process refresh results keep a byte budget of
their own). So the caches fill
up during the run: memory after warm-up is then the steady state, and a leak
shows as growth.

Against each server, for ``--seconds``: a baseline of anonymous requests
first (its throughput is the ratio's denominator), then ``--users`` distinct
users at once, each with a session of its own, like browsers: mostly
``GET /api/me``, sometimes a burst of 3 parallel requests with the same
cookies (a page and its assets), sometimes a logout and a fresh login
through ``/refresh``. JWTs expire every few seconds, so sessions refresh all
the time. Midway Crossmint rotates its signing key; later 5 refresh calls
are made to fail with 503 (the only errors expected, as 503s shortly after).

Checked on every answer: the status; the user id the app saw is the user's
own; every Set-Cookie JWT belongs to the user whose request it answers (no
cross-talk). Reported: requests, errors by kind, throughput against the
baseline, RSS after warm-up against the end (target: under 10 % growth),
each cache's entries, bytes against its budget and evictions, Redis keys and
memory, Crossmint calls.

The modules, one concern each: ``soak_app`` (what the servers load),
``soak_http`` (the client), ``soak_checks`` (what every answer is checked
for), ``soak_load`` (the browsers), ``soak_servers`` (processes and figures),
``soak_report`` (printing and the verdict); this one runs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from soak_report import failed, report
from soak_servers import INJECTED, ServerResult, crossmint_and_redis, soak_server

__all__ = ["CACHE_BOUND", "INJECTED", "ServerResult", "main", "report", "soak"]

#: Sessions each cache is sized for by default: fewer than the users, so they fill up.
CACHE_BOUND = 256


def soak(
    *,
    seconds: float = 60.0,
    users: int = 200,
    jwt_ttl: int = 4,
    cache_bound: int = CACHE_BOUND,
    servers: tuple[str, ...] = ("gunicorn", "uvicorn"),
    log: Callable[[str], None] = print,
) -> list[ServerResult]:
    """Soak each server in turn; see the module docstring."""
    results = []
    with crossmint_and_redis(jwt_ttl) as (emulator_url, redis_url):
        for name in servers:
            log(f"{name}: {users} users for {seconds:g} s, JWTs living {jwt_ttl} s")
            results.append(
                soak_server(
                    name,
                    emulator_url=emulator_url,
                    redis_url=redis_url,
                    seconds=seconds,
                    users=users,
                    cache_bound=cache_bound,
                    log=log,
                )
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per server")
    parser.add_argument("--users", type=int, default=200, help="distinct concurrent users")
    parser.add_argument("--jwt-ttl", type=int, default=4, help="JWT lifetime, seconds")
    parser.add_argument(
        "--cache-bound", type=int, default=CACHE_BOUND, help="sessions each cache is sized for"
    )
    parser.add_argument("--servers", default="gunicorn,uvicorn", help="comma-separated")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = soak(
        seconds=args.seconds,
        users=args.users,
        jwt_ttl=args.jwt_ttl,
        cache_bound=args.cache_bound,
        servers=tuple(args.servers.split(",")),
    )
    for result in results:
        print(report(result))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    bad = failed(results)
    if bad:
        print(f"FAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
