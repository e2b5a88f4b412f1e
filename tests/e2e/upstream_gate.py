"""A pass-through proxy in front of the Crossmint emulator that can hold refresh calls.

The app under test talks to Crossmint through :class:`UpstreamGate` instead of
the emulator itself. Inside :meth:`UpstreamGate.holding_refreshes`, every
refresh call waits at the gate, so no session can be refreshed (and no new
cookie can reach the browser) until the test has seen the event it is waiting
for, for example every tab's request leaving the browser, and calls
:meth:`UpstreamGate.release`. Everything else goes straight through.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: The Crossmint API path of a refresh call (see SPEC.md section 2).
REFRESH_PATH = "/session/sdk/auth/refresh"
#: Headers that belong to one connection, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
#: Headers of the emulator's answer the proxy does not copy: its own replace them.
NOT_COPIED = HOP_BY_HOP | {"date", "server"}
#: A safety net only, never reached in a passing run: how long a held refresh
#: waits for a test that died without releasing the gate.
ABANDONED = 60.0


class UpstreamGate:
    """A local proxy to ``upstream`` (the emulator's URL) that can hold refresh calls."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"the upstream needs a host and a port: {upstream!r}")
        target = (parts.hostname, parts.port)
        self._open = threading.Event()
        self._open.set()
        gate_open = self._open

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and self.path.endswith(REFRESH_PATH):
                    gate_open.wait(ABANDONED)
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                connection = http.client.HTTPConnection(*target, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    answer = connection.getresponse()
                    payload = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for name, value in answer.getheaders():
                        if name.lower() not in NOT_COPIED:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    connection.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @contextlib.contextmanager
    def holding_refreshes(self) -> Iterator[None]:
        """Hold every refresh call that arrives inside the block.

        They go through when :meth:`release` is called, or when the block ends.
        """
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def release(self) -> None:
        """Let the held refresh calls (and any later one) through. Any thread may call it."""
        self._open.set()

    def __enter__(self) -> UpstreamGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._open.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
