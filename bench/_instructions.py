"""Instructions per operation under valgrind's cachegrind: a figure the machine's load cannot move.

- :func:`python_instructions`: a Python snippet run ``few`` and ``many`` times
  in a fresh interpreter; the difference over ``many - few`` is one
  operation, start-up and set-up excluded.
- :func:`server_instructions`: a server command under cachegrind serving
  ``warm + n`` requests; :func:`per_request` runs it for two ``n`` and divides
  the difference.

Both need ``valgrind`` (``apt-get install valgrind``).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["need_valgrind", "per_request", "python_instructions", "server_instructions"]

VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
#: String hashing seeded alike in every run: dict probing, and so the counts, repeat.
SEEDED = {"PYTHONHASHSEED": "0"}


def need_valgrind() -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("instruction counts need valgrind: apt-get install valgrind")


def _file_count(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise SystemExit(f"no summary in {path}")


def python_instructions(setup: str, step: str, few: int, many: int, env: dict[str, str]) -> float:
    """Instructions of one ``step`` (Python source, may use ``i``) after ``setup``.

    ``setup`` runs once, then ``step`` runs ``few`` times in one interpreter
    and ``many`` times in another; the difference over ``many - few`` is the
    figure. ``env`` is added to the environment (``PYTHONPATH`` for a tree).
    """
    need_valgrind()
    counts = []
    for n in (few, many):
        source = f"{setup}\nfor i in range({n}):\n" + textwrap.indent(step, "    ") + "\n"
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder, "step.py")
            script.write_text(source)
            out = Path(folder, "out")
            done = subprocess.run(
                [*VALGRIND, f"--cachegrind-out-file={out}", sys.executable, str(script)],
                env={**os.environ, **SEEDED, **env},
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                raise SystemExit(f"the snippet failed under valgrind:\n{done.stderr[-3000:]}")
            counts.append(_file_count(out))
    return (counts[1] - counts[0]) / (many - few)


def _wait(port: int, process: subprocess.Popen[str], deadline: float) -> None:
    while True:
        try:
            with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=60)) as c:
                c.request("GET", "/")
                c.getresponse().read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("a server under valgrind did not serve") from None
            time.sleep(0.5)


def server_instructions(
    command: list[str],
    port: int,
    env: dict[str, str],
    cookie: str,
    n: int,
    *,
    keep_alive: bool,
) -> int:
    """Instructions every process of ``command`` (started under cachegrind)
    executes to start, serve ``1 + n`` requests and stop (SIGTERM).

    The master of a pre-fork server is counted too: it only sleeps and
    wakes for heartbeats, alike in every run of a comparison.
    """
    need_valgrind()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [*VALGRIND, f"--cachegrind-out-file={folder}/out.%p", *command],
            env={**os.environ, **SEEDED, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            try:
                _wait(port, process, time.monotonic() + 600)
            except SystemExit:
                process.kill()
                errors = process.communicate()[1][-2000:]
                raise SystemExit(f"{command[:4]} did not serve:\n{errors}") from None
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            for _ in range(n):
                if not keep_alive:
                    connection.close()
                connection.request("GET", "/", headers={"Cookie": cookie})
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200, answer.status
            connection.close()
            os.killpg(process.pid, signal.SIGTERM)
            process.communicate(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        files = list(Path(folder).glob("out.*"))
        if not files:
            raise SystemExit("valgrind wrote no counts")
        return sum(_file_count(path) for path in files)


def per_request(count: Callable[[int], int], few: int, many: int) -> float:
    """``(count(many) - count(few)) / (many - few)``: one request, start-up excluded."""
    return (count(many) - count(few)) / (many - few)
