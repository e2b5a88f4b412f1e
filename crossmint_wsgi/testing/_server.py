"""The emulator's server: a werkzeug server on a loopback port, served from a daemon thread."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["EmulatorServer"]


def _url_host(host: str) -> str:
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]" if ":" in host else host


class EmulatorServer:
    """Serves one WSGI app at ``host:port`` in a thread; started and stopped any number of times.

    :param host: the address to listen on.
    :param port: the port to listen on; ``0`` picks a free one at each start.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        #: Set while the server stops, to cut waits in the app (injected latency) short.
        self.stopping = threading.Event()
        #: ``http://HOST:PORT`` once started; the last one after a stop.
        self.url: str | None = None
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: WSGIApplication, handler: type[WSGIRequestHandler]) -> None:
        """Listen and serve ``app`` in a daemon thread; nothing when already serving.

        :raises OSError: the address is unusable (for example the port is taken).
        """
        with self._lock:
            if self._server is not None:
                return
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            # Bind here, not in werkzeug: it calls sys.exit when a port is taken.
            listener = socket.create_server((self.host, self.port), family=family, backlog=128)
            try:
                server = make_server(
                    self.host,
                    self.port,
                    app,
                    threaded=True,
                    request_handler=handler,
                    fd=listener.fileno(),
                )
            finally:
                listener.close()
            self.stopping.clear()
            self.url = f"http://{_url_host(self.host)}:{server.port}"
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"crossmint-emulator:{server.port}",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving, join the thread and close the socket; nothing when not serving."""
        with self._lock:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._server = self._thread = None
            self.stopping.set()
            server.shutdown()
            thread.join()
            server.server_close()
