"""Side by side with what teams write instead: bare, ours, hand-written PyJWT, hand-written joserfc.

    python bench/peers.py [--servers uvicorn,gunicorn] [--few N] [--many M]
                          [--seconds S] [--no-instructions] [--no-wall] [--no-burst]

The same hello-world app (``bench/peers_apps.py``) under uvicorn + Starlette
(one process) and gunicorn sync + Flask (one worker), four ways: bare, behind
this library's middleware, and behind what a team writes by hand with PyJWT's
``PyJWKClient`` or with joserfc (a pure ASGI middleware, a Flask
``before_request``: verify every request, refresh on expiry). One emulator,
one key set, the same cookies: a valid session plus two other cookies.

Three tables, each as ratios to the bare app of the same run:

1. instructions per request under cachegrind (the headline: the machine's
   load does not move it): each server serves ``few`` then ``many``
   requests in two runs; the difference over ``many - few`` is one request;
2. wall clock: requests per second and the server's CPU per request, the
   servers taking turns (``--seconds`` per turn, two turns each);
3. an expired-JWT burst: 50 concurrent requests carrying one session whose
   JWT has expired (refresh tokens single use, as Crossmint's are assumed to
   be): how many refreshes reached Crossmint and how many of the 50 users
   were logged out (answered without a session).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import secrets
import shutil
import sys
import threading
from pathlib import Path

from _common import children_cpu, free_port, get, process_cpu, python_load, serve, session_cookie
from _instructions import per_request, server_instructions

from crossmint_wsgi.testing import CrossmintEmulator

HERE = Path(__file__).resolve().parent
VARIANTS = ["bare", "ours", "pyjwt", "joserfc"]
BURST = 50


def other_cookies() -> str:
    """Two cookies a real site also sets: an analytics id and a CSRF token."""
    client = 10**9 + secrets.randbelow(9 * 10**9)  # ten digits: the same length every run
    return f"_ga=GA1.1.{client}.1700000000; csrftoken={secrets.token_hex(32)}"


def command(server: str, variant: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning", "--lifespan", "off",
            "--factory", f"peers_apps:starlette_{variant}",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "--workers", "1",
        "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--timeout", "900",
        "--log-level", "warning", f"peers_apps:flask_{variant}()",
    ]  # fmt: skip


def instruction_table(
    servers: list[str], env: dict[str, str], cookie: str, few: int, many: int
) -> dict[tuple[str, str], float]:
    print(f"\n1. instructions per request under cachegrind ({many - few} requests counted)")
    found: dict[tuple[str, str], float] = {}
    for server in servers:
        for variant in VARIANTS:

            def count(n: int, server: str = server, variant: str = variant) -> int:
                port = free_port()
                return server_instructions(
                    command(server, variant, port),
                    port,
                    env,
                    cookie,
                    n,
                    keep_alive=server == "uvicorn",
                )

            found[server, variant] = per_request(count, few, many)
            bare = found[server, "bare"]
            print(
                f"  {server:9} {variant:8} {found[server, variant] / 1000:8.1f}k"
                f"  {found[server, variant] / bare:5.2f}x bare",
                flush=True,
            )
    return found


def wall_table(servers: list[str], env: dict[str, str], cookie: str, seconds: float) -> None:
    print(f"\n2. wall clock: 4 client processes, 2 turns of {seconds:g} s per server, medians")
    for server in servers:
        rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpus: dict[str, list[float]] = {v: [] for v in VARIANTS}
        with _all_serving(server, env) as ports:
            for port, _pid in ports.values():
                python_load(port, cookie, 0.5, 2)  # warm-up: key set, caches
            for _ in range(2):
                for variant, (port, pid) in ports.items():
                    cpu = process_cpu(pid) + children_cpu(pid)
                    done = python_load(port, cookie, seconds, 4)
                    used = process_cpu(pid) + children_cpu(pid) - cpu
                    rates[variant].append(done / seconds)
                    cpus[variant].append(used / done * 1e6)
        bare_rate, bare_cpu = max(rates["bare"]), min(cpus["bare"])
        for variant in VARIANTS:
            rate, cpu = max(rates[variant]), min(cpus[variant])
            print(
                f"  {server:9} {variant:8} {rate:7.0f} req/s ({rate / bare_rate:4.2f}x bare)"
                f"  {cpu:7.0f} us CPU/req ({cpu / bare_cpu:5.2f}x bare)"
            )


class _all_serving:
    """Every variant of one server running at once, each on its own port."""

    def __init__(self, server: str, env: dict[str, str]) -> None:
        self.server, self.env = server, env
        self.stack: list[object] = []

    def __enter__(self) -> dict[str, tuple[int, int]]:
        import contextlib

        self.exit = contextlib.ExitStack()
        ports = {}
        for variant in VARIANTS:
            port = free_port()
            pid = self.exit.enter_context(
                serve(self.server, variant, command(self.server, variant, port), port, self.env)
            )
            ports[variant] = (port, pid)
        return ports

    def __exit__(self, *exc: object) -> None:
        self.exit.close()


def burst_table(servers: list[str], env: dict[str, str], emulator: CrossmintEmulator) -> None:
    print(f"\n3. expired-JWT burst: {BURST} concurrent requests, one session, single-use refresh")
    for server in servers:
        with _all_serving(server, env) as ports:
            for variant in VARIANTS[1:]:
                port = ports[variant][0]
                material = emulator.create_session(f"burst-{variant}", jwt_ttl=-60)
                cookie = (
                    f"crossmint-jwt={material.jwt};"
                    f" crossmint-refresh-token={material.refresh_token.secret}"
                )
                before = emulator.requests["refresh"]
                start = threading.Barrier(BURST)

                def one(
                    _: int, port: int = port, cookie: str = cookie, start: threading.Barrier = start
                ) -> int:
                    start.wait()
                    return get(port, "/me", {"Cookie": cookie})[0]

                with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
                    statuses = list(pool.map(one, range(BURST)))
                refreshes = emulator.requests["refresh"] - before
                logged_out = sum(status == 401 for status in statuses)
                assert all(status in (200, 401) for status in statuses), statuses
                print(
                    f"  {server:9} {variant:8} {refreshes:3} refreshes upstream,"
                    f" {logged_out:3} of {BURST} logged out"
                )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="uvicorn,gunicorn")
    parser.add_argument("--few", type=int, default=40, help="requests in the short run")
    parser.add_argument("--many", type=int, default=440, help="requests in the long run")
    parser.add_argument("--seconds", type=float, default=3.0, help="one wall-clock turn")
    parser.add_argument("--variants", default="ours,pyjwt,joserfc", help="bare is always run")
    parser.add_argument("--no-instructions", action="store_true")
    parser.add_argument("--no-wall", action="store_true")
    parser.add_argument("--no-burst", action="store_true")
    args = parser.parse_args(argv)
    servers = args.servers.split(",")
    VARIANTS[:] = ["bare", *(v for v in args.variants.split(",") if v != "bare")]
    if "pyjwt" in VARIANTS and importlib.util.find_spec("jwt") is None:
        print("(PyJWT is not installed: pip install pyjwt; its column is left out)")
        VARIANTS.remove("pyjwt")
    load = os.getloadavg()[0]
    print(
        f"peers: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.1f};"
        " one uvicorn process, one gunicorn sync worker; RS256"
    )
    with CrossmintEmulator(algorithm="RS256") as emulator:
        env = {"CROSSMINT_EMULATOR_URL": emulator.url}
        cookie = f"{session_cookie(emulator, 'peers-user')}; {other_cookies()}"
        print(f"Cookie header: {len(cookie)} bytes")
        if not args.no_instructions:
            if shutil.which("valgrind") is None:
                print("(no valgrind: instruction counts skipped)")
            else:
                instruction_table(servers, env, cookie, args.few, args.many)
        if not args.no_wall:
            wall_table(servers, env, cookie, args.seconds)
        if not args.no_burst:
            burst_table(servers, env, emulator)
        print(
            "\nCrossmint's JS server SDK, for comparison: one key-set fetch per getSession"
            " (500 fetches for 500 calls); 50 refreshes for 50 concurrent expired requests."
        )


if __name__ == "__main__":
    main()
