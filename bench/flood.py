"""Valid sessions during a flood of made-up refresh cookies, on real servers.

    python bench/flood.py [--servers uvicorn,gunicorn] [--seconds S] [--flooders N]

Starts a real server (uvicorn with ``examples/raw_asgi.py``; gunicorn, 2 sync
workers, with ``examples/flask_app.py``) on the emulator, then measures a
signed-in user's requests (2 sequential clients, ``GET /`` with a valid
session cookie) three ways, for ``--seconds`` each:

- quiet: nothing else;
- reference: ``--flooders`` other signed-in clients, the load any traffic
  of that volume puts on the server;
- flood, one address: ``--flooders`` clients sending ``GET /`` with a random
  ``crossmint-refresh-token`` cookie each, all from 127.0.0.1;
- flood, many addresses, slow Crossmint: the same from 127.0.0.2-127.0.0.254
  (a different source address per request), with every Crossmint answer
  delayed 2 s.

Flooding clients run in processes of their own. Printed: the user's requests
per second and p50 / p99 latency, as ratios to the quiet run of the same
server (compare a flood's row with the reference row), and how many refresh calls reached
Crossmint during each flood (the bounds: 20 failures per address per minute,
16 refreshes in flight per process).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import free_port, serve, session_cookie

from crossmint_wsgi.testing import CrossmintEmulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def command(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "raw_asgi:app",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLES), "--workers", "2",
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--timeout", "60",
        "flask_app:app",
    ]  # fmt: skip


def request(port: int, cookie: str, source: str = "127.0.0.1") -> tuple[int, float]:
    """One ``GET /`` on a new connection from ``source``: its status and seconds."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/", headers={"Cookie": cookie})
        answer = connection.getresponse()
        answer.read()
        return answer.status, time.perf_counter() - start
    except (OSError, http.client.HTTPException):
        return 0, time.perf_counter() - start
    finally:
        connection.close()


def user(port: int, cookie: str, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        status, seconds = request(port, cookie)
        assert status == 200, f"a valid session was answered {status}"
        latencies.append(seconds)


def flooder(port: int, stop: Any, kind: str, counter: Any, seed: int) -> None:
    """One flooding client, in a process of its own (no GIL shared with the user's clients).

    ``kind``: ``"one"`` address, ``"many"`` addresses, or ``"valid"``: the same
    load from signed-in users, the reference for what any load costs.
    """
    number = seed
    while not stop.is_set():
        number += 1
        source = f"127.0.0.{2 + number % 253}" if kind == "many" else "127.0.0.1"
        cookie = (
            kind
            if kind.startswith("crossmint-jwt=")
            else (f"crossmint-refresh-token={secrets.token_urlsafe(32)}")
        )
        request(port, cookie, source)
        with counter.get_lock():
            counter.value += 1


def measure(port: int, cookie: str, seconds: float, flooders: int, kind: str) -> dict[str, float]:
    stop, flood_stop = threading.Event(), multiprocessing.Event()
    latencies: list[float] = []
    counter = multiprocessing.Value("i", 0)
    processes = [
        multiprocessing.Process(target=flooder, args=(port, flood_stop, kind, counter, 97 * i))
        for i in range(flooders)
    ]
    for process in processes:
        process.start()
    if processes:
        time.sleep(1.0)  # the flood under way before the user's requests are timed
    threads = [threading.Thread(target=user, args=(port, cookie, stop, latencies)) for _ in "ab"]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    flood_stop.set()
    for process in processes:
        process.join(timeout=60)
    ordered = sorted(latencies)
    return {
        "rate": len(ordered) / seconds,
        "p50": statistics.median(ordered),
        "p99": ordered[int(len(ordered) * 0.99) - 1],
        "flood": counter.value,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="uvicorn,gunicorn")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--flooders", type=int, default=4)
    args = parser.parse_args(argv)
    print(
        f"flood: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
        f" load {os.getloadavg()[0]:.1f}; {args.flooders} flooding clients, 2 signed-in clients,"
        f" {args.seconds:g} s per run"
    )
    with CrossmintEmulator() as emulator:
        env = {"CROSSMINT_EMULATOR_URL": emulator.url}
        cookie = session_cookie(emulator, "flood-user")
        for server in args.servers.split(","):
            port = free_port()
            with serve(server, "example", command(server, port), port, env):
                request(port, cookie)  # warm-up: the key set
                quiet = measure(port, cookie, args.seconds, 0, "one")
                print(
                    f"\n{server}: quiet {quiet['rate']:.0f} req/s,"
                    f" p50 {quiet['p50'] * 1000:.1f} ms, p99 {quiet['p99'] * 1000:.1f} ms"
                )
                other = session_cookie(emulator, "other-user")
                for name, kind, latency in (
                    ("as many signed-in clients (reference)", other, 0.0),
                    ("flood, one address", "one", 0.0),
                    ("flood, many addresses, Crossmint 2 s", "many", 2.0),
                ):
                    emulator.set_latency(latency)
                    before = emulator.requests["refresh"]
                    during = measure(port, cookie, args.seconds, args.flooders, kind)
                    emulator.set_latency(0.0)
                    calls = emulator.requests["refresh"] - before
                    print(
                        f"  {name:38} {during['rate'] / quiet['rate']:5.2f}x req/s,"
                        f" p50 {during['p50'] / quiet['p50']:5.2f}x,"
                        f" p99 {during['p99'] / quiet['p99']:5.2f}x;"
                        f" {during['flood']} requests of theirs,"
                        f" {calls} refreshes reached Crossmint"
                    )
                time.sleep(2.5)  # let slow upstream calls finish before the server stops


if __name__ == "__main__":
    main()
