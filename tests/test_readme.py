"""The README's code runs as written: in process, and under each server it names."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support import free_port, run_server
from werkzeug.test import Client

from crossmint_wsgi.testing import CrossmintEmulator

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)

#: A line that only each snippet has.
FLASK = "def me(session):  # the JWT names the user"
ASGI = "async def hello(scope, receive, send):"
EMULATOR_APP = 'if "CROSSMINT_EMULATOR_URL" in os.environ:'


def _snippet(marker: str) -> str:
    (found,) = [code for code in SNIPPETS if marker in code]
    return found


def _run(code: str, emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute a README snippet; create_crossmint answers with the emulator's config.

    The snippets call create_crossmint with a real key from the environment;
    the emulator's key is signed by the emulator, so it stands in for that call.
    """
    monkeypatch.setenv("SERVER_CROSSMINT_API_KEY", emulator.api_key)
    monkeypatch.setattr("crossmint_wsgi.create_crossmint", lambda key: emulator.crossmint())
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("marker", [FLASK, ASGI])
def test_readme_has_each_example_once_and_short(marker: str) -> None:
    code = _snippet(marker)
    assert len(code.strip().splitlines()) <= 22


def test_flask_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _run(_snippet(FLASK), crossmint_emulator, monkeypatch)["app"]
    client = Client(app)
    assert client.get("/").text == "Hello, stranger"
    assert client.get("/api/me").status_code == 401
    assert client.get("/account").status_code == 401
    material = crossmint_emulator.create_session("ada", email="ada@example.com")
    client.set_cookie("crossmint-jwt", material.jwt)
    assert client.get("/").text == "Hello ada"
    # Only what the session has: the JWT carries no email.
    assert client.get("/api/me").json == {"user_id": "ada"}


@pytest.mark.anyio
async def test_asgi_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _run(_snippet(ASGI), crossmint_emulator, monkeypatch)["app"]
    material = crossmint_emulator.create_session("grace")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).text == "Hello, stranger"
        assert (await client.get("/account")).status_code == 401
        answer = await client.get("/", headers={"cookie": f"crossmint-jwt={material.jwt}"})
        assert answer.text == "Hello grace"


@pytest.mark.anyio
async def test_asgi_example_answers_the_lifespan_protocol(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up and shut-down are answered, through the middleware, on asyncio and trio."""
    app = _run(_snippet(ASGI), crossmint_emulator, monkeypatch)["app"]
    to_app, app_receives = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_sends, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with to_app, app_receives, app_sends, from_app, anyio.create_task_group() as tasks:
        tasks.start_soon(app, scope, app_receives.receive, app_sends.send)
        with anyio.fail_after(30):
            await to_app.send({"type": "lifespan.startup"})
            assert await from_app.receive() == {"type": "lifespan.startup.complete"}
            await to_app.send({"type": "lifespan.shutdown"})
            assert await from_app.receive() == {"type": "lifespan.shutdown.complete"}


# -- under the servers the snippet names

#: The module a server imports: the README's snippet, with create_crossmint
#: answering with the emulator's config (as _run does in process).
SERVED_SNIPPET = """\
import os

import crossmint_wsgi
from crossmint_wsgi.testing import connect_emulator

crossmint_wsgi.create_crossmint = lambda key: connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"])
exec(compile({code!r}, "README.md", "exec"))
"""

#: Each server the snippet's comment names, as it names it, on a port of ours.
SERVERS = {
    "uvicorn": ["-m", "uvicorn", "--port", "{port}", "module:app"],
    "hypercorn": ["-m", "hypercorn", "--bind", "127.0.0.1:{port}", "module:app"],
    "hypercorn-trio": ["-m", "hypercorn", "-k", "trio", "--bind", "127.0.0.1:{port}", "module:app"],
}


def test_the_snippet_names_each_server_tested() -> None:
    comment = _snippet(ASGI).strip().splitlines()[-1]
    named = re.findall(r"(uvicorn|hypercorn(?: -k trio)?) module:app", comment)
    assert sorted(named) == sorted(name.replace("-trio", " -k trio") for name in SERVERS)


@pytest.fixture
def snippet_module(tmp_path: Path) -> Path:
    (tmp_path / "module.py").write_text(SERVED_SNIPPET.format(code=_snippet(ASGI)))
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_asgi_example_under_its_servers(
    server: str, snippet_module: Path, crossmint_emulator: CrossmintEmulator
) -> None:
    port = free_port()
    command = [sys.executable, *(part.format(port=port) for part in SERVERS[server])]
    env = {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url, "SERVER_CROSSMINT_API_KEY": "unused"}
    material = crossmint_emulator.create_session("grace")
    with run_server(command, port=port, env=env, cwd=snippet_module) as served:
        with httpx.Client(base_url=served.url, timeout=10) as client:
            assert client.get("/").text == "Hello, stranger"
            assert client.get("/account").status_code == 401
            answer = client.get("/", headers={"cookie": f"crossmint-jwt={material.jwt}"})
            assert answer.text == "Hello grace"
        # Ctrl-C: the server asks the app to shut down and waits for its answer.
        os.killpg(served.process.pid, signal.SIGINT)
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{server} did not stop:\n{served.output()}") from None
        output = served.output()
    assert served.process.returncode == 0, output
    assert "Traceback" not in output, output
    assert "error" not in output.lower(), output
    if server == "uvicorn":
        assert "Application startup complete." in output, output
        assert "Application shutdown complete." in output, output
        assert "lifespan" not in output.lower(), output  # "ASGI 'lifespan' ... unsupported"


# -- the emulator in its own process


@pytest.mark.parametrize(
    "emulated", [pytest.param(True, id="emulator"), pytest.param(False, id="real")]
)
def test_connect_emulator_example(
    emulated: bool, crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    if emulated:
        monkeypatch.setenv("CROSSMINT_EMULATOR_URL", crossmint_emulator.url)
    else:
        monkeypatch.delenv("CROSSMINT_EMULATOR_URL", raising=False)
    auth = _run(_snippet(EMULATOR_APP), crossmint_emulator, monkeypatch)["auth"]
    with auth:
        material = crossmint_emulator.create_session("ada")
        assert auth.get_session(jwt=material.jwt).user_id == "ada"
        assert auth.crossmint == crossmint_emulator.crossmint()


def test_the_printed_export_line_is_the_readmes() -> None:
    """The README shows the line the emulator's command prints for its port."""
    from crossmint_wsgi.testing.__main__ import _instructions

    with CrossmintEmulator(port=free_port()) as emulator:
        printed = _instructions(emulator).replace(emulator.url, "http://127.0.0.1:8787")
    (export,) = [line.strip() for line in printed.splitlines() if "export " in line]
    assert re.search(rf"^{re.escape(export)} +#", README, re.MULTILINE)
    assert "python -m crossmint_wsgi.testing --port 8787" in README
