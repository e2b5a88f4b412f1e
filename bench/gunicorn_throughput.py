"""Hello-world throughput under gunicorn: the app behind Crossmint auth vs the bare app.

    python bench/gunicorn_throughput.py [--seconds S] [--rounds R] [--workers W]

Starts gunicorn twice on loopback, once with the bare hello-world app and
once with the same app through ``crossmint_wsgi.gunicorn:wrap`` (the
emulator as its Crossmint), and loads each with requests carrying a valid
session cookie. The two servers take turns for several rounds, so a change
in the machine's load affects both alike; the median of each server's
rounds counts. Target: wrapped / bare >= 0.9.

The load comes from ``wrk`` when it is installed (``apt-get install wrk``),
otherwise from a few processes running a bounded ``http.client`` loop (both
in ``bench/_common.py``). Every run is bounded in time and only ever talks
to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import (
    Server,
    children_cpu,
    free_port,
    pick_load,
    print_summary,
    round_arguments,
    run_rounds,
    serve,
    session_cookie,
)

from crossmint_wsgi.testing import CrossmintEmulator

HELLO = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
"""


@contextlib.contextmanager
def gunicorn(app: str, folder: Path, workers: int, env: dict[str, str]) -> Iterator[Server]:
    """A gunicorn serving ``app`` from ``folder`` on a free loopback port.

    Its CPU time is its workers', read from the master's children.
    """
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
    with serve("gunicorn", app, command, port, env) as master:
        yield Server(port, lambda: children_cpu(master))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    round_arguments(parser, connections=8)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    args = parser.parse_args(argv)
    load, loader = pick_load(args.connections)

    with CrossmintEmulator() as emulator, tempfile.TemporaryDirectory() as folder:
        Path(folder, "hello.py").write_text(HELLO)
        cookie = session_cookie(emulator, "bench-user")
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
            servers = (bare_server, wrapped_server)
            bare, wrapped = run_rounds(load, servers, cookie, args, digits=0)
    print_summary(bare, wrapped, cpu_label="workers' CPU", digits=0)


if __name__ == "__main__":
    main()
