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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
def gunicorn(app: str, folder: Path, workers: int, env: dict[str, str]) -> Iterator[Server]:
    """A gunicorn serving ``app`` from ``folder`` on a free loopback port."""
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
        yield Server(port, process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Server:
    """A running gunicorn: its port, and its master's pid (for the workers' CPU time)."""

    def __init__(self, port: int, master: int) -> None:
        self.port = port
        self.master = master

    def workers_cpu(self) -> float:
        """CPU seconds the workers have used so far (Linux /proc; 0 elsewhere)."""
        try:
            children = Path(f"/proc/{self.master}/task/{self.master}/children").read_text()
        except OSError:
            return 0.0
        total = 0
        for pid in children.split():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- load generators ------------------------------------------------------------------------


def wrk_load(port: int, cookie: str, seconds: float, connections: int) -> int:
    """Requests served in ``seconds``, as wrk counts them."""
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
    found = re.search(r"(\d+) requests in", done.stdout)
    if found is None:
        raise SystemExit(f"no request count in wrk's output:\n{done.stdout}")
    return int(found.group(1))


def _client_loop(port: int, cookie: str, deadline: float, counts: multiprocessing.Queue) -> None:
    served = 0
    headers = {"Cookie": cookie}
    while time.monotonic() < deadline:
        status, _ = get(port, "/", headers)
        if status != 200:
            raise SystemExit(f"answer {status}")
        served += 1
    counts.put(served)


def python_load(port: int, cookie: str, seconds: float, connections: int) -> int:
    """Requests served in ``seconds`` to ``connections`` processes, each a sequential client."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    deadline = time.monotonic() + seconds
    clients = [
        multiprocessing.Process(target=_client_loop, args=(port, cookie, deadline, counts))
        for _ in range(connections)
    ]
    for client in clients:
        client.start()
    total = sum(counts.get(timeout=seconds + 30) for _ in clients)
    for client in clients:
        client.join(timeout=10)
    return int(total)


# -- the run --------------------------------------------------------------------------------


@dataclass
class Round:
    """One load round against one server."""

    requests: int
    seconds: float
    cpu: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """Workers' CPU time per request, in microseconds."""
        return self.cpu / self.requests * 1e6


def run_round(load: Any, server: Server, cookie: str, seconds: float, connections: int) -> Round:
    cpu = server.workers_cpu()
    start = time.monotonic()
    requests = load(server.port, cookie, seconds, connections)
    return Round(requests, time.monotonic() - start, server.workers_cpu() - cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server")
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
            gunicorn("hello:app", Path(folder), args.workers, env) as bare_server,
            gunicorn(
                "crossmint_wsgi.gunicorn:wrap('hello:app')", Path(folder), args.workers, env
            ) as wrapped_server,
        ):
            # The wrapped server must really see the session: check once, then warm up.
            status, _ = get(wrapped_server.port, "/protected", {"Cookie": cookie})
            assert status == 200, f"the wrapped server refused the session ({status})"
            for server in (bare_server, wrapped_server):
                load(server.port, cookie, 1.0, args.connections)
            bare: list[Round] = []
            wrapped: list[Round] = []
            for number in range(1, args.rounds + 1):
                bare.append(run_round(load, bare_server, cookie, args.seconds, args.connections))
                wrapped.append(
                    run_round(load, wrapped_server, cookie, args.seconds, args.connections)
                )
                print(
                    f"  round {number}: bare {bare[-1].per_second:7.0f} req/s"
                    f" ({bare[-1].cpu_us:5.0f} us CPU/req)   wrapped"
                    f" {wrapped[-1].per_second:7.0f} req/s ({wrapped[-1].cpu_us:5.0f} us CPU/req)"
                )

    def median(rounds: list[Round], measure: str) -> float:
        return statistics.median(getattr(one, measure) for one in rounds)

    ratio = median(wrapped, "per_second") / median(bare, "per_second")
    print(
        f"requests/s, median of rounds: bare {median(bare, 'per_second'):.0f},"
        f" wrapped {median(wrapped, 'per_second'):.0f}, ratio {ratio:.3f}"
        f" (target >= {TARGET}: {'meets' if ratio >= TARGET else 'MISSES'})"
    )
    if median(bare, "cpu_us") > 0:
        # Robust to other load on the machine: what each request costs the workers.
        cpu_ratio = median(bare, "cpu_us") / median(wrapped, "cpu_us")
        print(
            f"workers' CPU per request, median: bare {median(bare, 'cpu_us'):.0f} us,"
            f" wrapped {median(wrapped, 'cpu_us'):.0f} us; throughput ratio when CPU-bound"
            f" {cpu_ratio:.3f} (target >= {TARGET}: {'meets' if cpu_ratio >= TARGET else 'MISSES'})"
        )


if __name__ == "__main__":
    main()
