"""Hello-world throughput under uvicorn: the app behind CrossmintASGIMiddleware vs the bare app.

    python bench/uvicorn_throughput.py [--seconds S] [--rounds R] [--connections C]

Starts uvicorn twice on loopback (one process each, uvloop and httptools
when installed, no access log), once with a bare ASGI hello-world app and
once with the same app wrapped by the middleware (the emulator as its
Crossmint), and loads each with requests carrying a valid session cookie.
The servers take turns for several rounds, so a change in the machine's load
affects both alike; the median of each server's rounds counts. Target:
wrapped / bare >= 0.9. Also printed: the server's CPU time per request,
which other load on the machine disturbs less.

The load comes from ``wrk`` (``apt-get install wrk``) or, without it, from a
few processes running a bounded ``http.client`` loop (see
``bench/gunicorn_throughput.py``, whose load generators this uses). Every run
is bounded in time and only ever talks to 127.0.0.1.

On a shared or busy machine throughput and CPU time wander; ``--instructions``
counts instead, under valgrind's cachegrind (``apt-get install valgrind``),
the instructions each server executes per request: the same on any load.
Each server runs twice, serving N and 5N requests on one keep-alive
connection, and the difference divided by 4N is the cost of one request,
start-up excluded. The ratio bare / wrapped is the throughput ratio of a
CPU-bound server whose instructions all cost the same.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gunicorn_throughput import free_port, get, python_load, wrk_load

from crossmint_wsgi.testing import CrossmintEmulator

HELLO = """
import os

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware
from crossmint_wsgi.testing import connect_emulator

START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
BODY = {"type": "http.response.body", "body": b"Hello, world!"}


async def app(scope, receive, send):
    await send(START)
    await send(BODY)


def wrapped():
    auth = AsyncCrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))
    return CrossmintASGIMiddleware(app, auth, protect=["/protected/:path*"])
"""

TARGET = 0.9


class Server:
    """A running uvicorn process: its port and pid (for its CPU time)."""

    def __init__(self, port: int, pid: int) -> None:
        self.port = port
        self.pid = pid

    def cpu(self) -> float:
        """CPU seconds the server has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def uvicorn(target: list[str], folder: Path, env: dict[str, str]) -> Iterator[Server]:
    """One uvicorn process serving ``target`` from ``folder`` on a free loopback port."""
    port = free_port()
    program = shutil.which("uvicorn") or str(Path(sys.executable).parent / "uvicorn")
    command = [
        program,
        "--app-dir",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--lifespan",
        "off",
        "--backlog",
        "2048",
        *target,
    ]
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"uvicorn exited with {process.returncode}: {target}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                get(port, "/", {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"uvicorn did not serve in 60 s: {target}") from None
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
        """The server's CPU time per request, in microseconds."""
        return self.cpu / self.requests * 1e6


Load = Callable[[int, str, float, int], int]


def run_round(load: Load, server: Server, cookie: str, seconds: float, connections: int) -> Round:
    cpu = server.cpu()
    start = time.monotonic()
    requests = load(server.port, cookie, seconds, connections)
    return Round(requests, time.monotonic() - start, server.cpu() - cpu)


def instructions(target: list[str], folder: Path, env: dict[str, str], cookie: str, n: int) -> int:
    """Instructions a uvicorn under cachegrind executes to start, serve ``n`` requests, stop."""
    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".cachegrind") as out:
        command = [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            f"--cachegrind-out-file={out.name}",
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(folder),
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "off",
            *target,
        ]
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    connection.connect()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(
                            f"uvicorn under valgrind did not serve: {target}"
                        ) from None
                    time.sleep(0.5)
            # The first requests take the slow path (key set fetch): in both runs alike.
            for _ in range(20 + n):
                connection.request("GET", "/", headers={"Cookie": cookie})
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200, answer.status
            connection.close()
            os.killpg(process.pid, signal.SIGINT)
            _, errors = process.communicate(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    found = re.search(r"I\s+refs:\s+([\d,]+)", errors)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{errors}")
    return int(found.group(1).replace(",", ""))


def count_instructions(folder: Path, env: dict[str, str], cookie: str, n: int) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind: apt-get install valgrind")
    print(f"instructions per request under cachegrind ({4 * n} requests counted per server)")
    per_request = {}
    for name, target in (("bare", ["hello:app"]), ("wrapped", ["--factory", "hello:wrapped"])):
        few = instructions(target, folder, env, cookie, n)
        many = instructions(target, folder, env, cookie, 5 * n)
        per_request[name] = (many - few) / (4 * n)
        print(f"  {name:8} {per_request[name]:9.0f} instructions/request")
    ratio = per_request["bare"] / per_request["wrapped"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(
        f"middleware: {per_request['wrapped'] - per_request['bare']:.0f} instructions/request;"
        f" bare / wrapped {ratio:.3f} (target >= {TARGET}: {verdict})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=500,
        metavar="N",
        help="count instructions per request under valgrind instead (N: default 500)",
    )
    args = parser.parse_args(argv)
    load: Load = wrk_load if shutil.which("wrk") else python_load
    loader = "wrk" if load is wrk_load else f"{args.connections} Python client processes"

    with CrossmintEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        Path(folder, "hello.py").write_text(HELLO)
        material = emulator.create_session("bench-user", jwt_ttl=3600)
        cookie = (
            f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"
        )
        env = {"CROSSMINT_EMULATOR_URL": emulator.url}
        if args.instructions:
            count_instructions(Path(folder), env, cookie, args.instructions)
            return
        print(
            f"uvicorn hello-world, 1 process, load from {loader} ({args.connections} connections),"
            f" {args.rounds} rounds of {args.seconds:g} s per server, valid session cookie"
        )
        with (
            uvicorn(["hello:app"], Path(folder), env) as bare_server,
            uvicorn(["--factory", "hello:wrapped"], Path(folder), env) as wrapped_server,
        ):
            # The wrapped server must really see the session: check once, then warm up.
            status, _ = get(wrapped_server.port, "/protected", {"Cookie": cookie})
            assert status == 200, f"the wrapped server refused the session ({status})"
            status, _ = get(wrapped_server.port, "/protected", {})
            assert status == 401, f"the wrapped server let an anonymous request in ({status})"
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
                    f" ({bare[-1].cpu_us:5.1f} us CPU/req)   wrapped"
                    f" {wrapped[-1].per_second:7.0f} req/s ({wrapped[-1].cpu_us:5.1f} us CPU/req)"
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
        cpu_ratio = median(bare, "cpu_us") / median(wrapped, "cpu_us")
        print(
            f"server CPU per request, median: bare {median(bare, 'cpu_us'):.1f} us,"
            f" wrapped {median(wrapped, 'cpu_us'):.1f} us; throughput ratio when CPU-bound"
            f" {cpu_ratio:.3f} (target >= {TARGET}: {'meets' if cpu_ratio >= TARGET else 'MISSES'})"
        )


if __name__ == "__main__":
    main()
