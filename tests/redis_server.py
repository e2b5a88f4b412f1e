"""A real ``redis-server`` on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from support import PORT_ATTEMPTS, PortTaken, free_port, port_taken, require_program


class RedisServer:
    """A ``redis-server`` process with no persistence, in its own temporary directory.

    :param directory: where it runs and logs.
    :param port: the loopback port; a free one when ``None``.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.program = require_program("redis-server")
        self.directory = directory
        #: Whether the port is ours to change: picked here, never served on yet.
        self._may_move = port is None
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout: float = 30.0) -> RedisServer:
        """Start the server (again after :meth:`kill`, on the same port); wait for PING.

        A first start on a port picked here that another process took meanwhile
        is tried again on another port (see :func:`support.free_port`).
        """
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start(timeout)
            except PortTaken:
                if not self._may_move or attempt == PORT_ATTEMPTS:
                    raise
                self.port = free_port()
                self.log.unlink(missing_ok=True)  # its "already in use" told this attempt only
                continue
            self._may_move = False
            return self
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> None:
        command = [
            self.program,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        with redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    output = self.output()
                    error = PortTaken if port_taken(output) else AssertionError
                    raise error(f"redis-server exited with {self.process.returncode}:\n{output}")
                try:
                    # This server's answer, not another process's on a port taken meanwhile.
                    if client.info("server")["process_id"] == self.process.pid:
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(
                        f"redis-server did not answer PING in {timeout}s:\n{self.output()}"
                    )
                time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self) -> redis.Redis:
        """A new blocking client on this server."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would. Safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started :class:`RedisServer`, killed at the end."""
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        server = RedisServer(Path(directory)).start()
        try:
            yield server
        finally:
            server.kill()
