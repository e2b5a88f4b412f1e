"""A throwaway redis-server on a free loopback port, for apps with several workers."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import redis
from support import free_port, require_program


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """Run ``redis-server`` without persistence; yield its ``redis://`` URL."""
    program = require_program("redis-server")
    port = free_port()
    process = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise AssertionError(f"redis-server exited with {process.returncode}:\n{output}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not answer on {url}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
