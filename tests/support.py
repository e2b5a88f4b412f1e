"""Helpers for tests that start real servers as subprocesses."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from crossmint_wsgi.keys import KeySetCache

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


#: How long a process that failed to fetch Crossmint's keys, with none cached,
#: answers 503 without trying again (``KeySetCache``'s ``failure_backoff``).
KEYS_FAILURE_BACKOFF: float = KeySetCache.__init__.__kwdefaults__["failure_backoff"]


def wait_out_key_backoff() -> None:
    """After Crossmint comes back: let every worker that failed a key fetch
    while it was down fetch again. A worker with no keys cached fails fast for
    :data:`KEYS_FAILURE_BACKOFF` seconds by design, and a test cannot choose
    which gunicorn worker answers it."""
    time.sleep(KEYS_FAILURE_BACKOFF + 0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Picked below Linux's ephemeral range (32768 and up): a server that binds
    port 0 meanwhile (an embedded emulator) cannot be handed the same one.
    """
    for _ in range(200):
        port = random.randint(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP port between 20000 and 32000")


def require_program(name: str) -> str:
    """The path of a program the test needs; fails (never skips) when it is missing."""
    found = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    if found is None:
        raise AssertionError(
            f"{name!r} is not installed: run the README's test command (tools/test.sh),"
            " which installs it"
        )
    return found


class Server:
    """A server process started by :func:`run_server`."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_server(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 30.0,
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """Start ``command`` listening on ``port``; yield once ``ready_path`` answers.

    The process runs in its own process group and is terminated (then killed)
    with all its children at the end. Its output goes to a log file, shown in
    the failure message if it never became ready.
    """
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process
        prefix="server-", suffix=".log", delete=False
    )
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(process, url, Path(log_file.name))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"{command[0]} exited with {process.returncode} before serving:\n"
                    + server.output()
                )
            try:
                httpx.get(url + ready_path, timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{command[0]} did not serve {url} in {timeout}s:\n" + server.output()
                    ) from None
                time.sleep(0.1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log_file.close()
        os.unlink(log_file.name)
