"""Differential test: wherever a framework's router runs a protected view, we demanded a session.

Every supported framework (Flask, Bottle, Django, Starlette, FastAPI, Quart)
serves the same small app (``tests/routers/apps.py``): protected views at
``/account``, ``/account/<path:p>`` and ``/users/<name>``, public ones at
``/`` and ``/public/<path:p>``. Each request is sent to the app twice, once
bare and once behind our middleware, with no cookies: whenever the bare
router runs a protected view, the wrapped one must answer 401 and run no
view. The bare run is the oracle: we never guess how a router reads a path.

Requests go in process (a WSGI environ or an ASGI scope built as the
servers build them: percent-decoded once, PEP 3333 latin-1 for WSGI, uvicorn's
``root_path`` prefix for ASGI) for a table of tricky paths and for
hypothesis-generated ones; and the table goes as raw bytes on a socket
through real servers (gunicorn, uvicorn plain and ``--root-path``, hypercorn
``--root-path``), because servers decode differently. Mounts: werkzeug's
DispatcherMiddleware (SCRIPT_NAME), Starlette's ``Mount``, and root paths.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routers import apps
from support import require_program, serve

from crossmint_wsgi import (
    AsyncCrossmintAuth,
    CrossmintASGIMiddleware,
    CrossmintAuth,
    CrossmintWSGIMiddleware,
)
from crossmint_wsgi.testing import CrossmintEmulator

apps.configure_django()

#: Raw request targets (what a client puts on the request line), before any mount prefix.
TRICKY = [
    "/account",
    "/account/",
    "/account//",
    "/account/x",
    "/account/..",
    "/account/.",
    "/account/%2e%2e",
    "/account/%2E%2E/",
    "/account/.%2e",
    "/account/x/../..",
    "/account/..%2f",
    "/account/..%2F..",
    "/account%2f..",
    "/account%2fx",
    "/account/%0A",
    "/account/a%00b",
    "//account/x",
    "/x/../account/y",
    "/x/%2e%2e/account",
    "/public/..%2faccount",
    "/public/%2e%2e/account/x",
    "/%61ccount/x",
    "/users/bob",
    "/users/bob/",
    "/users/..",
    "/users/.",
    "/users/%2e%2e",
    "/users/a%0Alice",
    "/users/a%0D%0Alice",
    "/users/bob%0A",
    "/users/%00",
    "/users/caf%C3%A9",
    "/users/%FF",
    "/users/a%2Fb",
    "/users//bob",
    "/accountant",
    "/public/x",
    "/public/x%20y",
    "/",
]
#: Targets a plain router certainly routes to a protected view: the app is wired.
WIRED = ["/account/x", "/users/bob"]
#: Public targets that must stay public behind the middleware.
PUBLIC = ["/", "/public/x"]


@dataclass
class Outcome:
    status: int
    body: bytes
    views: list[str]  # views that ran, in process; empty through a server

    @property
    def ran_protected(self) -> bool:
        return bool(apps.PROTECTED_VIEWS.intersection(self.views)) or apps.ran_protected(self.body)

    @property
    def ran(self) -> bool:
        return bool(self.views) or b"ran:" in self.body


def assert_guarded(where: str, target: str, bare: Outcome, wrapped: Outcome) -> bool:
    """The property; returns whether the bare router ran a protected view."""
    if bare.ran_protected:
        seen = (
            f"{where}: {target!r} runs a protected view bare ({bare.status} {bare.body[:60]!r})"
            f" and behind the middleware answers {wrapped.status} {wrapped.body[:60]!r}"
        )
        assert not wrapped.ran, seen
        assert wrapped.status == 401, seen
    return bare.ran_protected


# -- in process ------------------------------------------------------------------------------


def wsgi_environ(target: str) -> dict[str, Any]:
    """What gunicorn builds: PATH_INFO percent-decoded once, bytes as latin-1 (PEP 3333)."""
    path = target.partition("?")[0]
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "RAW_URI": target,
        "REQUEST_URI": target,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_ACCEPT": "*/*",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": BytesIO(),
        "wsgi.errors": BytesIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def call_wsgi(app: Any, target: str) -> Outcome:
    apps.RAN.clear()
    statuses: list[int] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        statuses.append(int(status.split()[0]))
        return lambda data: None

    result = app(wsgi_environ(target), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Outcome(statuses[-1], body, list(apps.RAN))


def asgi_scope(target: str, root_path: str, prefixed: bool) -> dict[str, Any]:
    """What uvicorn builds: ``path`` percent-decoded once (UTF-8); ``prefixed``: with root_path."""
    raw = target.partition("?")[0]
    path = unquote(raw)
    if prefixed:
        path, raw = root_path + path, root_path + raw
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": root_path,
        "path": path,
        "raw_path": raw.encode("latin-1"),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"*/*")],
        "state": {},
    }


async def call_asgi(app: Any, scope: dict[str, Any]) -> Outcome:
    apps.RAN.clear()
    done = anyio.Event()
    requested = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Quart cancels the view when the client leaves: leave once answered.
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Outcome(start["status"], body, list(apps.RAN))


@dataclass
class Stack:
    """One framework, bare and wrapped, and how a client target reaches it."""

    name: str
    call: Callable[[Any, str], Outcome]
    bare: Any
    wrapped: Any
    prefix: str = ""  # a mount: the client asks for prefix + target

    def both(self, target: str) -> tuple[Outcome, Outcome]:
        full = self.prefix + target
        return self.call(self.bare, full), self.call(self.wrapped, full)


WSGI_STACKS = {
    "flask": (apps.flask_app, False),
    "bottle": (apps.bottle_app, False),
    "django": (apps.django_app, False),
    "flask-under-dispatcher": (apps.flask_app, True),
}
#: name: (build, Starlette Mount at /sub, root_path, path carries root_path)
ASGI_STACKS = {
    "starlette": (apps.starlette_app, False, "", False),
    "fastapi": (apps.fastapi_app, False, "", False),
    "quart": (apps.quart_app, False, "", False),
    "starlette-mount": (apps.starlette_app, True, "", False),
    "starlette-root-path": (apps.starlette_app, False, "/app", True),
    "fastapi-root-path": (apps.fastapi_app, False, "/app", True),
    "quart-root-path": (apps.quart_app, False, "/app", True),
    "starlette-root-path-unprefixed": (apps.starlette_app, False, "/app", False),
}
STACKS = [*WSGI_STACKS, *ASGI_STACKS]


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal(backend="asyncio") as running:
        yield running


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, crossmint_emulator: CrossmintEmulator, portal: BlockingPortal
) -> Iterator[Stack]:
    name = request.param
    with contextlib.ExitStack() as exit_stack:
        if name in WSGI_STACKS:
            build, mounted = WSGI_STACKS[name]
            if build is apps.django_app:
                exit_stack.enter_context(override_settings(**apps.DJANGO_SETTINGS))
            auth = exit_stack.enter_context(CrossmintAuth(crossmint_emulator.crossmint()))
            bare = build()
            wrapped = CrossmintWSGIMiddleware(build(), auth, protect=apps.PROTECT)
            if mounted:
                yield Stack(
                    name, call_wsgi, apps.dispatcher(bare), apps.dispatcher(wrapped), "/sub"
                )
            else:
                yield Stack(name, call_wsgi, bare, wrapped)
            return
        build, mounted, root_path, prefixed = ASGI_STACKS[name]
        async_auth = exit_stack.enter_context(
            portal.wrap_async_context_manager(AsyncCrossmintAuth(crossmint_emulator.crossmint()))
        )
        bare = build()
        wrapped = CrossmintASGIMiddleware(build(), async_auth, protect=apps.PROTECT)
        if mounted:
            bare, wrapped = apps.starlette_mount(bare), apps.starlette_mount(wrapped)

        def call(app: Any, target: str) -> Outcome:
            return portal.call(call_asgi, app, asgi_scope(target, root_path, prefixed))

        yield Stack(name, call, bare, wrapped, "/sub" if mounted else "")


@pytest.mark.parametrize("stack", STACKS, indirect=True)
def test_tricky_paths_in_process(stack: Stack) -> None:
    guarded = []
    for target in TRICKY:
        bare, wrapped = stack.both(target)
        if assert_guarded(stack.name, target, bare, wrapped):
            guarded.append(target)
    # The oracle sees the protected views (else the property holds vacuously),
    # and the public ones stay public behind the middleware.
    assert set(WIRED) <= set(guarded), guarded
    for target in PUBLIC:
        bare, wrapped = stack.both(target)
        assert bare.ran, (target, bare)
        assert not bare.ran_protected, (target, bare)
        assert wrapped.ran, (target, wrapped)
        assert wrapped.status == 200, (target, wrapped)


SEGMENTS = st.sampled_from(
    [
        "account",
        "users",
        "public",
        "accountant",
        "bob",
        "",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        ".%2e",
        "..%2f",
        "%2f",
        "%2F..",
        "%0A",
        "a%0Alice",
        "%0D%0A",
        "%00",
        "%09",
        "%20",
        "caf%C3%A9",
        "%FF",
        "%25",
        "%252e%252e",
        ";x",
        "%61ccount",
        "ACCOUNT",
    ]
)
#: Any text, percent-encoded as a client would (``/``, ``.`` and ``;`` kept raw, sometimes).
FREE_TEXT = st.text(max_size=4).map(lambda text: quote(text, safe="/.;"))
#: Mostly below a protected or public view, where dodges matter.
FIRST = st.sampled_from(["account", "users", "public", "x", "%61ccount", "", "account%2f.."])
TARGETS = st.builds(
    lambda first, segments, tail: "/" + "/".join([first, *segments]) + tail,
    FIRST,
    st.lists(st.one_of(SEGMENTS, SEGMENTS, FREE_TEXT), max_size=4),
    st.sampled_from(["", "/", "//", "/.", "/..", "%0A", "%0D%0A"]),
)


@pytest.mark.parametrize("stack", STACKS, indirect=True)
@settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(target=TARGETS)
def test_generated_paths_in_process(stack: Stack, target: str) -> None:
    bare, wrapped = stack.both(target)
    assert_guarded(stack.name, target, bare, wrapped)


# -- through real servers, raw bytes on a socket ----------------------------------------------


def raw_get(port: int, target: str, framework: str, variant: str) -> Outcome:
    """One GET with ``target`` on the request line byte for byte (no client normalizes it)."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Framework: {framework}\r\n"
        f"X-Variant: {variant}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0
    return Outcome(status, response.partition(b"\r\n\r\n")[2], [])


@dataclass
class RealServer:
    name: str
    port: int
    frameworks: list[tuple[str, str]]  # (framework header, prefix the client sends)


_UVICORN = ["uvicorn", "--app-dir", "tests", "--lifespan", "off"]
SERVERS = {
    "gunicorn": (
        ["gunicorn", "--chdir", "tests", "-w", "1", "routers.serve_wsgi:app"],
        [("flask", ""), ("bottle", ""), ("django", ""), ("flask-sub", "/sub")],
    ),
    "uvicorn": (
        [*_UVICORN, "routers.serve_asgi:app"],
        [("starlette", ""), ("fastapi", ""), ("quart", ""), ("starlette-sub", "/sub")],
    ),
    # uvicorn puts root_path in front of path (a proxy stripped it from the request);
    # hypercorn leaves path as the client sent it, prefix included (Quart needs it there).
    "uvicorn-root-path": (
        [*_UVICORN, "--root-path", "/app", "routers.serve_asgi:app"],
        [("starlette", ""), ("fastapi", ""), ("quart", "")],
    ),
    "hypercorn-root-path": (
        ["hypercorn", "--root-path", "/app", "routers.serve_asgi:app"],
        [("starlette", ""), ("starlette", "/app"), ("fastapi", "/app"), ("quart", "/app")],
    ),
}


@pytest.fixture(scope="module")
def real_servers(
    _crossmint_emulator_server: CrossmintEmulator,
) -> Iterator[dict[str, RealServer]]:
    """Every server at once, each started once for the module (they take seconds to start)."""
    path = os.pathsep.join(filter(None, ["tests", os.environ.get("PYTHONPATH")]))
    env = {"CROSSMINT_EMULATOR_URL": _crossmint_emulator_server.url, "PYTHONPATH": path}
    started = {}
    with contextlib.ExitStack() as exit_stack:
        for name, (command, frameworks) in SERVERS.items():
            program, *arguments = command

            def bound(
                port: int, program: str = program, arguments: list[str] = arguments
            ) -> list[str]:
                bind = ["--bind", f"127.0.0.1:{port}"] if program != "uvicorn" else []
                bind += ["--port", str(port)] if program == "uvicorn" else []
                return [require_program(program), *bind, *arguments]

            server = exit_stack.enter_context(serve(bound, env=env))
            started[name] = RealServer(name, server.port, frameworks)
        yield started


@pytest.mark.slow
@pytest.mark.parametrize("server", list(SERVERS))
def test_tricky_paths_through_real_servers(
    real_servers: dict[str, RealServer], server: str
) -> None:
    running = real_servers[server]
    for framework, prefix in running.frameworks:
        guarded = []
        for target in TRICKY:
            full = prefix + target
            bare = raw_get(running.port, full, framework, "bare")
            wrapped = raw_get(running.port, full, framework, "wrapped")
            if assert_guarded(f"{server} {framework}", full, bare, wrapped):
                guarded.append(target)
        assert set(WIRED) <= set(guarded), (framework, guarded)
        for target in PUBLIC:
            wrapped = raw_get(running.port, prefix + target, framework, "wrapped")
            assert wrapped.status == 200, (framework, target, wrapped)
            assert b"ran:" in wrapped.body, (framework, target, wrapped)
