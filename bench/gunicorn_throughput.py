"""Hello-world throughput under gunicorn: the app behind Crossmint auth vs the bare app.

    python bench/gunicorn_throughput.py [--seconds S] [--rounds R] [--workers W]

Starts gunicorn twice on loopback, once with the bare hello-world app and
once with the same app through ``crossmint_wsgi.gunicorn:wrap`` (the
emulator as its Crossmint), and loads each with requests carrying a valid
session cookie. The two servers take turns for several rounds, so a change
in the machine's load affects both alike; the median of each server's
rounds counts. Target: wrapped / bare >= 0.9.

The load comes from ``wrk`` when it is installed (``apt-get install wrk``),
otherwise from a few processes running a bounded ``http.client`` loop.
Every run is bounded in time and only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from crossmint_wsgi.testing import CrossmintEmulator

HELLO = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
"""

TARGET = 0.9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(app: str, folder: Path, workers: int, env: dict[str, str]) -> Iterator[int]:
    """A gunicorn serving ``app`` from ``folder`` on a free loopback port; yields the port."""
    port = free_port()
    program = shutil.which("gunicorn") or str(Path(sys.executable).parent / "gunicorn")
    command = [
        program,
        "--chdir",
        str(folder),
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        app,
    ]
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {process.returncode}: {app}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                get(port, "/", {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"gunicorn did not serve in 60 s: {app}") from None
                time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- load generators ------------------------------------------------------------------------


def wrk_load(port: int, cookie: str, seconds: float, connections: int) -> float:
    """Requests per second measured by wrk."""
    done = subprocess.run(
        [
            "wrk",
            "--threads",
            "2",
            "--connections",
            str(connections),
            "--duration",
            f"{seconds:g}s",
            "--timeout",
            "5s",
            "--header",
            f"Cookie: {cookie}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} failed answers:\n{done.stdout}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if found is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{done.stdout}")
    return float(found.group(1))


def _client_loop(port: int, cookie: str, deadline: float, counts: multiprocessing.Queue) -> None:
    served = 0
    headers = {"Cookie": cookie}
    while time.monotonic() < deadline:
        status, _ = get(port, "/", headers)
        if status != 200:
            raise SystemExit(f"answer {status}")
        served += 1
    counts.put(served)


def python_load(port: int, cookie: str, seconds: float, connections: int) -> float:
    """Requests per second from ``connections`` processes, each a sequential client."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    start = time.monotonic()
    deadline = start + seconds
    clients = [
        multiprocessing.Process(target=_client_loop, args=(port, cookie, deadline, counts))
        for _ in range(connections)
    ]
    for client in clients:
        client.start()
    total = sum(counts.get(timeout=seconds + 30) for _ in clients)
    for client in clients:
        client.join(timeout=10)
    return total / (time.monotonic() - start)


# -- the run --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    args = parser.parse_args(argv)
    load = wrk_load if shutil.which("wrk") else python_load
    loader = "wrk" if load is wrk_load else f"{args.connections} Python client processes"

    with CrossmintEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        Path(folder, "hello.py").write_text(HELLO)
        material = emulator.create_session("bench-user", jwt_ttl=3600)
        cookie = (
            f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"
        )
        env = {
            "CROSSMINT_EMULATOR_URL": emulator.url,
            "SERVER_CROSSMINT_API_KEY": "",
            "CROSSMINT_PROTECT": "/protected/:path*",
        }
        print(
            f"gunicorn hello-world, {args.workers} sync workers, load from {loader},"
            f" {args.rounds} rounds of {args.seconds:g} s per server, valid session cookie"
        )
        with (
            gunicorn("hello:app", Path(folder), args.workers, env) as bare_port,
            gunicorn(
                "crossmint_wsgi.gunicorn:wrap('hello:app')", Path(folder), args.workers, env
            ) as wrapped_port,
        ):
            # The wrapped server must really see the session: check once, then warm up.
            status, _ = get(wrapped_port, "/protected", {"Cookie": cookie})
            assert status == 200, f"the wrapped server refused the session ({status})"
            bare: list[float] = []
            wrapped: list[float] = []
            for port in (bare_port, wrapped_port):
                load(port, cookie, 1.0, args.connections)
            for round_number in range(1, args.rounds + 1):
                bare.append(load(bare_port, cookie, args.seconds, args.connections))
                wrapped.append(load(wrapped_port, cookie, args.seconds, args.connections))
                print(
                    f"  round {round_number}: bare {bare[-1]:8.0f} req/s"
                    f"   wrapped {wrapped[-1]:8.0f} req/s   ratio {wrapped[-1] / bare[-1]:.3f}"
                )
        ratio = statistics.median(wrapped) / statistics.median(bare)
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(
            f"median: bare {statistics.median(bare):.0f} req/s, wrapped"
            f" {statistics.median(wrapped):.0f} req/s, ratio {ratio:.3f}"
            f" (target >= {TARGET}: {verdict})"
        )


if __name__ == "__main__":
    main()
