"""Helpers for tests that start real servers as subprocesses."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


#: Ports :func:`free_port` handed out in this process: never handed out twice.
_HANDED_OUT: set[int] = set()
#: Open lock files, one per port handed out lately (the oldest are let go: their
#: servers bound them long ago, and a process's open files are limited).
_RESERVATIONS: collections.deque[IO[str]] = collections.deque()
_MAX_RESERVATIONS = 128
#: Where processes that use :func:`free_port` (test runs, benchmarks) reserve ports.
_RESERVATION_DIR = Path(tempfile.gettempdir()) / f"crossmint-wsgi-test-ports-{os.getuid()}"


def _reserve(port: int) -> bool:
    """Hold a lock on ``port`` (until :data:`_MAX_RESERVATIONS` later ones, or this
    process's end); ``False`` when another process holds it (it handed the port out,
    its server may not have bound it yet)."""
    _RESERVATION_DIR.mkdir(mode=0o700, exist_ok=True)
    lock = open(_RESERVATION_DIR / str(port), "a")  # noqa: SIM115 - held while reserved
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        return False
    _RESERVATIONS.append(lock)
    while len(_RESERVATIONS) > _MAX_RESERVATIONS:
        _RESERVATIONS.popleft().close()
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and that no other
    caller of this function (in this process or another) is handed.

    Picked below Linux's ephemeral range (32768 and up): a server that binds
    port 0 meanwhile (an embedded emulator), or any outgoing connection,
    cannot be handed the same one. A process that binds ports of its own
    choosing may still take it before its server does: :func:`serve` starts
    a server again on another port when that happens.
    """
    for _ in range(500):
        port = random.randint(20_000, 32_000)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _reserve(port):
            continue
        _HANDED_OUT.add(port)
        return port
    raise AssertionError("no free TCP port between 20000 and 32000")


#: What servers print when the port they were given is taken (uvicorn, hypercorn,
#: werkzeug, Django: "address/port already in use"; gunicorn: "Connection in use";
#: node: EADDRINUSE; redis-server: "bind: Address already in use").
_PORT_TAKEN = re.compile(r"already in use|connection in use|eaddrinuse", re.IGNORECASE)


def port_taken(output: str) -> bool:
    """Whether a server's output says its port was taken."""
    return _PORT_TAKEN.search(output) is not None


class PortTaken(AssertionError):
    """The server could not bind its port: another process took it after
    :func:`free_port` picked it."""


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
        self.port = int(url.rsplit(":", 1)[1])
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
    the failure message if it never became ready. When the port was taken
    (see :func:`free_port`), raises :class:`PortTaken`; :func:`serve` then
    starts the server again on another port.
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
                output = server.output()
                error = PortTaken if port_taken(output) else AssertionError
                raise error(
                    f"{command[0]} exited with {process.returncode} before serving:\n" + output
                )
            try:
                httpx.get(url + ready_path, timeout=5.0)
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{command[0]} did not serve {url} in {timeout}s:\n" + server.output()
                    ) from None
                time.sleep(0.1)
                continue
            if port_taken(server.output()):
                # Another process answered: this one is still retrying its bind (gunicorn).
                raise PortTaken(f"{command[0]} could not bind {url}:\n" + server.output())
            break
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


#: How many ports :func:`serve` tries before giving up.
PORT_ATTEMPTS = 5


@contextlib.contextmanager
def serve(
    command: Callable[[int], Sequence[str]],
    *,
    env: Mapping[str, str] | Callable[[int], Mapping[str, str]] | None = None,
    ready_path: str = "/",
    timeout: float = 30.0,
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """:func:`run_server` on a port of :func:`free_port`, ``command(port)``
    (and ``env(port)`` when ``env`` is callable).

    A port is free when picked, not necessarily when the server binds it: when
    another process took it meanwhile, the server is started again on another
    port (at most :data:`PORT_ATTEMPTS` ports).
    """
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port()
        full_env = env(port) if callable(env) else env
        starting = contextlib.ExitStack()
        try:
            server = starting.enter_context(
                run_server(
                    command(port),
                    port=port,
                    env=full_env,
                    ready_path=ready_path,
                    timeout=timeout,
                    cwd=cwd,
                )
            )
        except PortTaken:
            if attempt == PORT_ATTEMPTS:
                raise
            continue
        with starting:
            yield server
        return


def until(condition: Callable[[], bool], within: float = 30.0) -> float:
    """Seconds until ``condition()`` held, looking every 10 ms; fails after ``within``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.01)
    return time.monotonic() - start


def refused(auth: Any, jwt: str) -> bool:
    """Whether ``auth`` (a ``CrossmintAuth``) refuses ``jwt`` as logged out or expired."""
    from crossmint_wsgi import CrossmintAuthError, ErrorCode

    try:
        auth.verify_crossmint_jwt(jwt)
    except CrossmintAuthError as error:
        return error.code is ErrorCode.SESSION_EXPIRED
    return False
