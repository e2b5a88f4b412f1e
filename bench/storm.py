"""Refresh storms: upstream calls and latency when one expired session arrives many times at once.

Run: ``.venv/bin/python bench/storm.py [--bursts N] [--size R] [--workers W] [--latency S]``

A burst is ``R`` requests released together, all carrying the same expired
JWT and refresh secret, spread round-robin over ``W`` simulated worker
processes (each its own ``CrossmintAuth`` and middleware, so nothing is
shared in memory between them). Crossmint is the emulator with single-use
refresh tokens (``reuse_window=0``) and ``S`` seconds of latency per call.

Coordinators compared, in one run:

- naive: coordination off, every request calls Crossmint itself (what the JS
  SDK does); the baseline;
- in-memory: the default :class:`~crossmint_wsgi.LocalCoordinator`, with one
  worker and with ``W`` workers (each worker coordinates only its own threads);
- Redis: :class:`~crossmint_wsgi.redis.RedisCoordinator` on a real
  ``redis-server`` started here, with ``W`` workers.

For each it prints upstream refreshes per burst, requests logged out per
burst (a refused refresh clears the user's cookies), and p50/p99 latency of
the burst's requests, with ratios against the naive run.

Across hosts: ``bench/storm.py --hosts H [--workers W] [--users U] [--per-host R]``
(root, ``ip``) makes ``H`` hosts as network namespaces, each running gunicorn
with ``W`` workers of the Flask example, Redis and the emulator in a namespace
of their own (``tests/multihost.py``). A burst is ``U`` expired sessions, each
sent ``R`` times to every host at once. It runs without Redis (each worker on
its own: the baseline) and with ``CROSSMINT_REDIS_URL``, one deployment each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware, LocalCoordinator
from crossmint_wsgi.coordination import RefreshCoordinator
from crossmint_wsgi.models import AuthMaterial
from crossmint_wsgi.redis import RedisCoordinator
from crossmint_wsgi.testing import CrossmintEmulator

# The tests' redis-server helper (free port, no persistence, killed at the end).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import redis_server

JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"


class Naive:
    """Coordination off: every request trades the secret itself."""

    def refresh(self, secret: str, perform: Callable[[], AuthMaterial]) -> AuthMaterial:
        return perform()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"session" if session else b"none"]


@dataclass
class Result:
    name: str
    refreshes: list[int]
    logged_out: list[int]
    latencies: list[float]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def burst(workers: list[Client], cookie: str, size: int) -> tuple[list[float], list[bytes]]:
    """``size`` requests released together, round-robin over the workers."""
    barrier = threading.Barrier(size)
    times = [0.0] * size
    outcomes = [b""] * size

    def request(index: int) -> None:
        client = workers[index % len(workers)]
        barrier.wait()
        start = time.perf_counter()
        response = client.get("/", headers={"Cookie": cookie})
        times[index] = time.perf_counter() - start
        outcomes[index] = response.get_data()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, outcomes


def run(
    name: str,
    emulator: CrossmintEmulator,
    coordinators: list[RefreshCoordinator | None],
    *,
    bursts: int,
    size: int,
    latency: float,
) -> Result:
    crossmint = emulator.crossmint()
    auths = [CrossmintAuth(crossmint, leeway=0, coordinator=c) for c in coordinators]
    workers = [Client(CrossmintWSGIMiddleware(app, auth), use_cookies=False) for auth in auths]
    # Fetch each worker's key set before the storms, so they measure refreshes only.
    warm = emulator.create_session("warm-up")
    for auth in auths:
        auth.get_session(jwt=warm.jwt, refresh_token=warm.refresh_token.secret)
    result = Result(name, [], [], [])
    for _ in range(bursts):
        login = emulator.create_session("storm-user", jwt_ttl=-30)
        cookie = f"{JWT_COOKIE}={login.jwt}; {REFRESH_COOKIE}={login.refresh_token.secret}"
        before = emulator.requests["refresh"]
        emulator.set_latency(latency)
        times, outcomes = burst(workers, cookie, size)
        emulator.set_latency(0)
        result.refreshes.append(emulator.requests["refresh"] - before)
        result.logged_out.append(sum(outcome != b"session" for outcome in outcomes))
        result.latencies.extend(times)
    for auth in auths:
        auth.close()
    return result


def across_hosts(args: argparse.Namespace) -> None:
    """The storm against real gunicorn hosts, without Redis and then with it."""
    import tempfile

    from multihost import hosts

    rows: list[tuple[str, list[int], list[int], list[float]]] = []
    for redis_on in (False, True):
        name = f"{'Redis' if redis_on else 'no Redis'}, {args.hosts} hosts x {args.workers}"
        refreshes: list[int] = []
        logged_out: list[int] = []
        times: list[float] = []
        with (
            tempfile.TemporaryDirectory() as logs,
            hosts(Path(logs), args.hosts, args.workers, redis=redis_on) as made,
        ):
            for _ in range(args.bursts):
                answer = made.client(
                    "--apps", ",".join(made.app_urls), "--users", str(args.users),
                    "--per-host", str(args.per_host), "--latency", str(args.latency),
                )  # fmt: skip
                answers = answer["answers"]
                assert isinstance(answers, list)
                refreshes.append(int(str(answer["refreshes"])))
                logged_out.append(sum(a != "ok" for a in answers))
                times.extend(float(t) for t in answer["times"])  # type: ignore[attr-defined]
        rows.append((name, refreshes, logged_out, sorted(times)))
    per_burst = args.users * args.hosts * args.per_host
    print(
        f"Refresh storms across hosts: {args.bursts} bursts of {args.users} expired sessions,"
        f" each sent {args.per_host}x to each host ({per_burst} requests),"
        f" Crossmint latency {args.latency * 1000:.0f} ms, single-use refresh tokens"
    )
    print(
        f"{'deployment':26} {'refreshes/burst':>15} {'per session':>11} {'logged out/burst':>17}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'p50 vs base':>12} {'p99 vs base':>12}"
    )
    base = rows[0][3]
    base_p50, base_p99 = base[len(base) // 2], base[min(len(base) - 1, int(0.99 * len(base)))]
    for name, refreshes, logged_out, times in rows:
        p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(0.99 * len(times)))]
        mean = statistics.mean(refreshes)
        print(
            f"{name:26} {mean:15.1f} {mean / args.users:11.2f} {statistics.mean(logged_out):17.1f}"
            f" {p50 * 1000:8.1f} {p99 * 1000:8.1f} {p50 / base_p50:11.2f}x {p99 / base_p99:11.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bursts", type=int, default=10, help="bursts per coordinator")
    parser.add_argument("--size", type=int, default=64, help="requests per burst")
    parser.add_argument("--workers", type=int, default=4, help="simulated worker processes")
    parser.add_argument("--latency", type=float, default=0.05, help="Crossmint latency, seconds")
    parser.add_argument("--hosts", type=int, default=0, help="hosts (namespaces); 0: in process")
    parser.add_argument("--users", type=int, default=12, help="sessions per burst, across hosts")
    parser.add_argument("--per-host", type=int, default=3, help="requests per session and host")
    args = parser.parse_args(argv)
    if args.hosts:
        across_hosts(args)
        return
    w = args.workers

    with CrossmintEmulator(reuse_window=0) as emulator, redis_server() as redis:
        settings = {"bursts": args.bursts, "size": args.size, "latency": args.latency}
        results = [
            run(f"naive, {w} workers", emulator, [Naive() for _ in range(w)], **settings),
            run("in-memory, 1 worker", emulator, [LocalCoordinator()], **settings),
            run(f"in-memory, {w} workers", emulator, [None] * w, **settings),
            run(
                f"Redis, {w} workers",
                emulator,
                [RedisCoordinator.from_url(redis.url) for _ in range(w)],
                **settings,
            ),
        ]

    baseline = results[0]
    base_refreshes = statistics.mean(baseline.refreshes)
    base_p50, base_p99 = baseline.percentile(0.50), baseline.percentile(0.99)
    print(
        f"Refresh storms: {args.bursts} bursts of {args.size} requests with one expired"
        f" session, Crossmint latency {args.latency * 1000:.0f} ms, single-use refresh tokens"
    )
    print(
        f"{'coordinator':22} {'refreshes/burst':>15} {'vs naive':>9} {'logged out/burst':>17}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'p50 vs naive':>13} {'p99 vs naive':>13}"
    )
    for result in results:
        refreshes = statistics.mean(result.refreshes)
        logged_out = statistics.mean(result.logged_out)
        p50, p99 = result.percentile(0.50), result.percentile(0.99)
        print(
            f"{result.name:22} {refreshes:15.1f} {refreshes / base_refreshes:8.3f}x"
            f" {logged_out:17.1f} {p50 * 1000:8.1f} {p99 * 1000:8.1f}"
            f" {p50 / base_p50:12.2f}x {p99 / base_p99:12.2f}x"
        )


if __name__ == "__main__":
    main()
