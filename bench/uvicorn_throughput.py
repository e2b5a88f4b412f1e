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
few processes running a bounded ``http.client`` loop (both in
``bench/_common.py``, which ``bench/gunicorn_throughput.py`` uses too). Every
run is bounded in time and only ever talks to 127.0.0.1.

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import (
    TARGET,
    Server,
    free_port,
    get,
    pick_load,
    print_summary,
    process_cpu,
    round_arguments,
    run_rounds,
    serve,
    session_cookie,
)

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


def options(folder: Path, port: int) -> list[str]:
    """uvicorn's options for a bench: the app from ``folder``, on loopback, quiet, no lifespan."""
    return [
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
    ]


@contextlib.contextmanager
def uvicorn(target: list[str], folder: Path, env: dict[str, str]) -> Iterator[Server]:
    """One uvicorn process serving ``target`` from ``folder`` on a free loopback port."""
    port = free_port()
    program = shutil.which("uvicorn") or str(Path(sys.executable).parent / "uvicorn")
    command = [program, *options(folder, port), "--backlog", "2048", *target]
    with serve("uvicorn", target, command, port, env) as pid:
        yield Server(port, lambda: process_cpu(pid))


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
            *options(folder, port),
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
    round_arguments(parser, connections=16)
    parser.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=500,
        metavar="N",
        help="count instructions per request under valgrind instead (N: default 500)",
    )
    args = parser.parse_args(argv)
    load, loader = pick_load(args.connections)

    with CrossmintEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        Path(folder, "hello.py").write_text(HELLO)
        cookie = session_cookie(emulator, "bench-user")
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
            # It must turn away a request without a session (run_rounds checks it takes one).
            status, _ = get(wrapped_server.port, "/protected", {})
            assert status == 401, f"the wrapped server let an anonymous request in ({status})"
            servers = (bare_server, wrapped_server)
            bare, wrapped = run_rounds(load, servers, cookie, args, digits=1)
    print_summary(bare, wrapped, cpu_label="server CPU", digits=1)


if __name__ == "__main__":
    main()
