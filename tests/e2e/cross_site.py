"""A second web site on loopback, for cross-site requests to the app under test."""

from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CrossSiteServer:
    """Another web site on loopback: pages with a form that posts itself elsewhere.

    The server listens on 127.0.0.1; the browser can reach it as
    ``http://127.0.0.1:PORT`` (same site as the app, another origin: its
    SameSite=Lax cookies are sent) or ``http://localhost:PORT`` (another
    site: they are not).
    """

    def __init__(self) -> None:
        self.forms: dict[str, str] = {}
        forms = self.forms

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                action = forms.get(self.path)
                if action is None:
                    self.send_error(404)
                    return
                body = (
                    "<!doctype html><title>Another site</title>"
                    f'<form id="attack" method="post" action="{html.escape(action)}">'
                    '<input type="hidden" name="x" value="1"></form>'
                    '<script>document.getElementById("attack").submit()</script>'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def form_posting_to(self, action: str, *, host: str) -> str:
        """The URL, on ``host``, of a page that auto-submits a POST form to ``action``."""
        path = f"/form-{len(self.forms)}"
        self.forms[path] = action
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> CrossSiteServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
