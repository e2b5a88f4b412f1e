"""Differential test: the middleware never vouches for a JWT the app reads differently.

Beside the router differential test (``test_router_differential.py``): each
framework serves ``/whoami`` behind our middleware through a real server
(gunicorn for Flask, Bottle and Django; uvicorn and hypercorn for Starlette,
FastAPI, Quart and Django's ASGI handler), and reports ``crossmint-jwt`` as
its own cookie reader returns it beside the JWT of the session we published
(``tests/routers/cookie_apps.py``). A browser sends a name twice when two
cookies differ in path or domain, and a sibling subdomain can toss one in:
with mallory's genuine JWT and an ``alg=none`` token naming the victim in
the same name, in either order, on one ``Cookie`` line or two, no session may
be published whose JWT differs from what the app reads (here: none at all).

The same servers show that an app's answer carrying our cookies (a refresh,
a cleared session) comes back ``private, no-store`` with ``Vary: Cookie``,
whatever ``Cache-Control`` the app set.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import require_program, serve

from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

MALLORY = "mallory"
VICTIM = "victim-admin"

#: (server, command after the bind options, frameworks it serves)
SERVERS = {
    "gunicorn": (
        ["gunicorn", "--chdir", "tests", "-w", "1", "routers.serve_wsgi:app"],
        ["cookies-flask", "cookies-bottle", "cookies-django"],
    ),
    "uvicorn": (
        ["uvicorn", "--app-dir", "tests", "--lifespan", "off", "routers.serve_asgi:app"],
        ["cookies-starlette", "cookies-fastapi", "cookies-quart", "cookies-django"],
    ),
    "hypercorn": (
        ["hypercorn", "routers.serve_asgi:app"],
        ["cookies-starlette", "cookies-fastapi", "cookies-quart", "cookies-django"],
    ),
}
ASGI = {"uvicorn", "hypercorn"}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> dict[str, str | None]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


def get(port: int, target: str, framework: str, cookie_lines: list[str]) -> Reply:
    """One GET with ``cookie_lines`` as separate ``Cookie`` header lines, byte for byte."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"X-Framework: {framework}",
        "X-Variant: wrapped",
        "Connection: close",
        *(f"Cookie: {line}" for line in cookie_lines),
    ]
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(p.strip() for p in line.split(":", 1)) for line in header_lines]
    reply = Reply(int(status_line.split()[1]), headers, body)  # type: ignore[arg-type]
    if any(v.lower() == "chunked" for v in reply.all("Transfer-Encoding")):
        reply.body = _dechunk(body)
    return reply


def _segment(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged(emulator: CrossmintEmulator) -> str:
    """An unsigned token naming the victim, with every claim a real one has."""
    now = int(time.time())
    claims = {"sub": VICTIM, "aud": emulator.project_id, "iat": now, "exp": now + 600}
    return f"{_segment({'alg': 'none', 'typ': 'JWT', 'kid': emulator.kid})}.{_segment(claims)}."


@pytest.fixture(scope="module")
def servers(_crossmint_emulator_server: CrossmintEmulator) -> Iterator[dict[str, int]]:
    path = os.pathsep.join(filter(None, ["tests", os.environ.get("PYTHONPATH")]))
    env = {"CROSSMINT_EMULATOR_URL": _crossmint_emulator_server.url, "PYTHONPATH": path}
    ports = {}
    with contextlib.ExitStack() as stack:
        for name, (command, _) in SERVERS.items():
            program, *arguments = command

            def bound(port: int, program: str = program, arguments: list[str] = arguments) -> list:
                bind = (
                    ["--port", str(port)]
                    if program == "uvicorn"
                    else ["--bind", f"127.0.0.1:{port}"]
                )
                return [require_program(program), *bind, *arguments]

            ports[name] = stack.enter_context(serve(bound, env=env)).port
        yield ports


def _cases(mallory: str, fake: str, asgi: bool) -> list[tuple[str, list[str]]]:
    one_line = [
        ("valid-first", [f"crossmint-jwt={mallory}; crossmint-jwt={fake}"]),
        ("forged-first", [f"crossmint-jwt={fake}; crossmint-jwt={mallory}"]),
        ("among-others", [f"a=1; crossmint-jwt={mallory}; b=2; crossmint-jwt={fake}; c=3"]),
    ]
    # A WSGI server joins repeated lines with "," into one value: not two cookies.
    two_lines = [
        ("two-lines", [f"crossmint-jwt={mallory}", f"crossmint-jwt={fake}"]),
        ("two-lines-forged-first", [f"crossmint-jwt={fake}", f"crossmint-jwt={mallory}"]),
        ("two-lines-with-others", [f"a=1; crossmint-jwt={mallory}", f"crossmint-jwt={fake}; b=2"]),
    ]
    return one_line + (two_lines if asgi else [])


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_repeated_jwt_cookie_vouches_for_nobody(
    servers: dict[str, int], server: str, crossmint_emulator: CrossmintEmulator
) -> None:
    emulator = crossmint_emulator
    mallory = emulator.issue_jwt(MALLORY, ttl=600)
    fake = forged(emulator)
    port = servers[server]
    for framework in SERVERS[server][1]:
        # The control: one cookie, read alike by both, so the wiring is sound.
        alone = get(port, "/whoami", framework, [f"crossmint-jwt={mallory}"])
        assert alone.status == 200, (framework, alone)
        assert alone.json() == {"cookie": mallory, "session_jwt": mallory}, framework
        same = get(
            port, "/whoami", framework, [f"crossmint-jwt={mallory}; crossmint-jwt={mallory}"]
        )
        assert same.json()["session_jwt"] == mallory, (
            "identical duplicates are harmless",
            framework,
        )
        for case, lines in _cases(mallory, fake, server in ASGI):
            where = f"{server} {framework} {case}"
            reply = get(port, "/whoami", framework, lines)
            assert reply.status == 200, (where, reply)
            seen = reply.json()
            # The property: never a session whose JWT is not the one the app reads.
            assert seen["session_jwt"] in (None, seen["cookie"]), (where, seen)
            # And here, where one of the values is forged: no session at all.
            assert seen["session_jwt"] is None, (where, seen)
            # The ambiguous cookie is cleared, in an answer no shared cache keeps.
            cleared = [c for c in reply.all("Set-Cookie") if c.startswith("crossmint-jwt=;")]
            assert cleared, (where, reply.headers)
            assert_private(where, reply)
        if framework == "cookies-fastapi":
            for case, lines in _cases(mallory, fake, server in ASGI):
                token = get(port, "/scheme", framework, lines).json()["cookie_scheme"]
                assert token is None, (server, case, token)
            alone = get(port, "/scheme", framework, [f"crossmint-jwt={mallory}"])
            assert alone.json() == {"cookie_scheme": mallory}


def assert_private(where: str, reply: Reply) -> None:
    (cache_control,) = reply.all("Cache-Control")
    directives = {d.strip().lower() for d in cache_control.split(",")}
    assert {"private", "no-store"} <= directives, (where, cache_control)
    assert "public" not in directives, (where, cache_control)
    vary = {v.strip().lower() for value in reply.all("Vary") for v in value.split(",")}
    assert "cookie" in vary, (where, reply.headers)


@pytest.mark.parametrize("server", list(SERVERS))
def test_a_refresh_on_the_apps_answer_is_never_cached(
    servers: dict[str, int], server: str, crossmint_emulator: CrossmintEmulator
) -> None:
    emulator = crossmint_emulator
    port = servers[server]
    for framework in SERVERS[server][1]:
        material = emulator.create_session(f"user-{server}-{framework}", jwt_ttl=-60)
        lines = [
            f"crossmint-jwt={material.jwt}; crossmint-refresh-token={material.refresh_token.secret}"
        ]
        reply = get(port, "/whoami", framework, lines)
        where = f"{server} {framework}"
        assert reply.status == 200, (where, reply)
        refreshed = reply.json()["session_jwt"]
        assert refreshed not in (None, material.jwt), (where, reply.body)
        assert any(c.startswith(f"crossmint-jwt={refreshed};") for c in reply.all("Set-Cookie"))
        # The app said "public, max-age=60": ours is stronger, the rest stays.
        assert_private(where, reply)
        assert "max-age=60" in reply.all("Cache-Control")[0], where
