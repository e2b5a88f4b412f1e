"""What the benchmarks share: timing loops and their table, servers on loopback, and load.

- In process (``overhead.py``, ``overhead_asgi.py``): :func:`time_per_call`
  times the bare and the wrapped app in turns, :func:`compare` makes a
  :class:`Row` of them and :func:`print_rows` prints the table.
- Over sockets (``gunicorn_throughput.py``, ``uvicorn_throughput.py``):
  :func:`serve` runs a server in its own process group until it answers,
  :func:`pick_load` chooses ``wrk`` or Python client processes, and
  :func:`run_rounds` / :func:`print_summary` take turns between the bare and
  the wrapped server and print the medians as ratios.

Every server and every request stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from crossmint_wsgi.testing import CrossmintEmulator

PROTECT = ["/protected/:path*"]
TARGET = 0.9


def session_cookie(emulator: CrossmintEmulator, user_id: str) -> str:
    """A Cookie header value with a fresh session of ``user_id`` (JWT valid for an hour)."""
    material = emulator.create_session(user_id, jwt_ttl=3600)
    return f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"


# -- timing in process, for any kind of app ---------------------------------------------------


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


def first_seen_sizes(count: int) -> tuple[int, int]:
    """``(requests per loop, loops)`` of the first-seen row, which needs ``a * b + 1`` JWTs.

    Minting a JWT is slow (an RSA signature each), so that row runs fewer requests.
    """
    return max(50, count // 100), 5


def first_seen_row(
    bare: Callable[[int], None], wrapped: Callable[[int], None], prepared: int, count: int
) -> Row:
    """The first-seen row: each wrapped call takes the next of ``prepared`` requests.

    Each prepared request carries a JWT of its own, so the wrapped app sees
    none twice across the warm-up and all timed loops.
    """
    fresh, repeats = first_seen_sizes(count)
    served = [0]

    def first_seen(index: int) -> None:
        wrapped(served[0])
        served[0] += 1

    row = compare("first-seen valid session", bare, first_seen, fresh, repeats=repeats)
    assert served[0] <= prepared, "every timed request must carry a new JWT"
    return row


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


#: A section of the table: its title and ``rows(emulator, count)``.
Section = tuple[str, Callable[[CrossmintEmulator, int], list[Row]]]


def run_sections(
    doc: str, what: str, sections: Sequence[Section], argv: Sequence[str] | None
) -> None:
    """The command line of an in-process bench: parse ``--requests``, print each section."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per timed loop")
    args = parser.parse_args(argv)
    print(
        f"crossmint-wsgi {what}: Python {platform.python_version()},"
        f" {platform.machine()}, {args.requests} requests per loop, CPU time of the fastest loop"
    )
    with CrossmintEmulator(algorithm="RS256") as emulator:
        for title, rows in sections:
            print_rows(title, rows(emulator, args.requests))


# -- servers on loopback ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@contextlib.contextmanager
def serve(
    program: str, what: object, command: list[str], port: int, env: dict[str, str]
) -> Iterator[int]:
    """Run ``command``, a ``program`` serving ``what`` on ``port``, until it answers ``/``.

    Yields the process's pid; the server runs in a process group of its
    own, which is stopped (SIGTERM, then SIGKILL after 15 s) on the way out.
    """
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{program} exited with {process.returncode}: {what}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                get(port, "/", {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{program} did not serve in 60 s: {what}") from None
                time.sleep(0.2)
        yield process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def process_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children_cpu(pid: int) -> float:
    """CPU seconds the children of process ``pid`` have used so far (Linux /proc; 0 elsewhere)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return 0.0
    return sum(process_cpu(int(child)) for child in children.split())


@dataclass(frozen=True)
class Server:
    """A running server: its port, and the CPU seconds its serving processes have used so far."""

    port: int
    cpu: Callable[[], float]


# -- load -------------------------------------------------------------------------------------

#: ``load(port, cookie, seconds, connections)``: the requests served in ``seconds``.
Load = Callable[[int, str, float, int], int]


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


def pick_load(connections: int) -> tuple[Load, str]:
    """wrk when it is installed, else Python client processes; and its name for the header."""
    if shutil.which("wrk"):
        return wrk_load, "wrk"
    return python_load, f"{connections} Python client processes"


# -- rounds -----------------------------------------------------------------------------------


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
        """The serving processes' CPU time per request, in microseconds."""
        return self.cpu / self.requests * 1e6


def run_round(load: Load, server: Server, cookie: str, seconds: float, connections: int) -> Round:
    cpu = server.cpu()
    start = time.monotonic()
    requests = load(server.port, cookie, seconds, connections)
    return Round(requests, time.monotonic() - start, server.cpu() - cpu)


def round_arguments(parser: argparse.ArgumentParser, connections: int) -> None:
    """The options of :func:`run_rounds`: ``--seconds``, ``--rounds``, ``--connections``."""
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per server")
    parser.add_argument(
        "--connections", type=int, default=connections, help="concurrent connections"
    )


def run_rounds(
    load: Load,
    servers: tuple[Server, Server],
    cookie: str,
    args: argparse.Namespace,
    *,
    digits: int,
) -> tuple[list[Round], list[Round]]:
    """Check the wrapped server sees the session, warm both up, then load them in turns.

    Each round's figures are printed as it ends (CPU time with ``digits``
    decimals); ``args`` holds the options of :func:`round_arguments`.

    :return: the bare server's rounds and the wrapped server's.
    """
    bare_server, wrapped_server = servers
    # The wrapped server must really see the session: check once, then warm up.
    status, _ = get(wrapped_server.port, "/protected", {"Cookie": cookie})
    assert status == 200, f"the wrapped server refused the session ({status})"
    for server in servers:
        load(server.port, cookie, 1.0, args.connections)
    bare: list[Round] = []
    wrapped: list[Round] = []
    for number in range(1, args.rounds + 1):
        bare.append(run_round(load, bare_server, cookie, args.seconds, args.connections))
        wrapped.append(run_round(load, wrapped_server, cookie, args.seconds, args.connections))
        print(
            f"  round {number}: bare {bare[-1].per_second:7.0f} req/s"
            f" ({bare[-1].cpu_us:5.{digits}f} us CPU/req)   wrapped"
            f" {wrapped[-1].per_second:7.0f} req/s ({wrapped[-1].cpu_us:5.{digits}f} us CPU/req)"
        )
    return bare, wrapped


def print_summary(bare: list[Round], wrapped: list[Round], *, cpu_label: str, digits: int) -> None:
    """The medians of the rounds, as ratios wrapped / bare against :data:`TARGET`.

    The CPU line (``cpu_label``: whose CPU) is left out where /proc is not there.
    """

    def median(rounds: list[Round], measure: str) -> float:
        return statistics.median(getattr(one, measure) for one in rounds)

    ratio = median(wrapped, "per_second") / median(bare, "per_second")
    print(
        f"requests/s, median of rounds: bare {median(bare, 'per_second'):.0f},"
        f" wrapped {median(wrapped, 'per_second'):.0f}, ratio {ratio:.3f}"
        f" (target >= {TARGET}: {'meets' if ratio >= TARGET else 'MISSES'})"
    )
    if median(bare, "cpu_us") > 0:
        # Robust to other load on the machine: what each request costs the server.
        cpu_ratio = median(bare, "cpu_us") / median(wrapped, "cpu_us")
        print(
            f"{cpu_label} per request, median: bare {median(bare, 'cpu_us'):.{digits}f} us,"
            f" wrapped {median(wrapped, 'cpu_us'):.{digits}f} us; throughput ratio when CPU-bound"
            f" {cpu_ratio:.3f} (target >= {TARGET}: {'meets' if cpu_ratio >= TARGET else 'MISSES'})"
        )
