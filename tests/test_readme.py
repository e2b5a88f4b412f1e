"""The README's code runs as written: in process, and under each server it names."""

from __future__ import annotations

import ast
import inspect
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
from support import free_port, serve
from werkzeug.test import Client

import crossmint_wsgi
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
    def command(port: int) -> list[str]:
        return [sys.executable, *(part.format(port=port) for part in SERVERS[server])]

    env = {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url, "SERVER_CROSSMINT_API_KEY": "unused"}
    material = crossmint_emulator.create_session("grace")
    with serve(command, env=env, cwd=snippet_module) as served:
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


# -- the guides at the end: proxy, CORS, error page

PROXY = "ProxyFix(CrossmintWSGIMiddleware"
CORS = 'FRONT_END = "https://app.example"'
ERROR_PAGE = "SORRY = "
UVICORN_PROXY = "uvicorn --proxy-headers --forwarded-allow-ips=127.0.0.1 module:app"


@pytest.mark.parametrize(
    ("proxy_fix", "status", "secure"),
    [
        pytest.param(True, 200, True, id="with-proxy-fix"),
        pytest.param(False, 403, False, id="without"),
    ],
)
def test_proxy_fix_example(
    proxy_fix: bool,
    status: int,
    secure: bool,
    crossmint_emulator: CrossmintEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a proxy that rewrites Host and terminates TLS, sign-in works only with ProxyFix."""
    namespace = _run(_snippet(PROXY), crossmint_emulator, monkeypatch)
    app = namespace["app"]
    if not proxy_fix:
        app.wsgi_app = app.wsgi_app.app  # the middleware alone, as before the guide
    answer = Client(app).post(
        "/refresh",
        base_url="http://127.0.0.1:8000",  # the Host the proxy sends
        json={"refresh": crossmint_emulator.one_time_secret("ada")},
        headers={
            "Origin": "https://shop.example",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "shop.example",
        },
    )
    assert answer.status_code == status, answer.text
    cookies = answer.headers.getlist("Set-Cookie")
    assert bool(cookies) is secure
    assert all("; Secure" in cookie for cookie in cookies)


@pytest.mark.slow
def test_uvicorn_proxy_headers_example(
    snippet_module: Path, crossmint_emulator: CrossmintEmulator
) -> None:
    """The README's uvicorn line: cookies are Secure when the proxy says https."""
    (line,) = [line for line in README.splitlines() if line.startswith(UVICORN_PROXY)]

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", *line.split("#")[0].split(), "--port", str(port)]

    env = {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url, "SERVER_CROSSMINT_API_KEY": "unused"}
    with serve(command, env=env, cwd=snippet_module) as served:
        origin = f"https://127.0.0.1:{served.port}"
        signed_in = []
        for proto in ("https", "http"):
            answer = httpx.post(
                f"{served.url}/refresh",
                json={"refresh": crossmint_emulator.one_time_secret("ada")},
                headers={"Origin": origin, "X-Forwarded-Proto": proto},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            signed_in.append(answer.headers.get_list("set-cookie"))
    https, http = signed_in
    assert https
    assert all("; Secure" in cookie for cookie in https)
    assert http
    assert not any("; Secure" in cookie for cookie in http)


@pytest.mark.anyio
async def test_cors_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = _run(_snippet(CORS), crossmint_emulator, monkeypatch)
    front_end = namespace["FRONT_END"]
    transport = httpx.ASGITransport(app=namespace["app"])
    async with httpx.AsyncClient(transport=transport, base_url="https://api.example") as client:
        # The preflight: no cookies, answered by CORS before the auth middleware refuses it.
        preflight = await client.options(
            "/api/me",
            headers={"Origin": front_end, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == front_end
        assert preflight.headers["access-control-allow-credentials"] == "true"
        # The browser SDK signs in from the front end: cookies it will send cross-site.
        signed_in = await client.post(
            "/refresh",
            json={"refresh": crossmint_emulator.one_time_secret("ada")},
            headers={"Origin": front_end},
        )
        assert signed_in.status_code == 200, signed_in.text
        cookies = signed_in.headers.get_list("set-cookie")
        assert cookies
        assert all("SameSite=None" in c and "; Secure" in c for c in cookies)
        assert signed_in.headers["access-control-allow-origin"] == front_end
        me = await client.get("/api/me", headers={"Origin": front_end})
        assert me.json() == {"user_id": "ada"}
        assert me.headers["access-control-allow-origin"] == front_end
        # A refusal carries the CORS headers too, so the front end can read the 401.
        client.cookies.clear()
        refused = await client.get("/api/me", headers={"Origin": front_end})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == front_end
        # Any other site may not sign in here.
        other = await client.post(
            "/refresh",
            json={"refresh": crossmint_emulator.one_time_secret("ada")},
            headers={"Origin": "https://evil.example"},
        )
        assert other.status_code == 403


@pytest.mark.parametrize(
    ("down", "status", "shown"),
    [
        pytest.param(False, 200, "Your account, ada", id="signed-in"),
        pytest.param(True, 503, "Sign-in is unavailable for a moment", id="crossmint-down"),
    ],
)
def test_error_page_example(
    down: bool,
    status: int,
    shown: str,
    crossmint_emulator: CrossmintEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _run(_snippet(ERROR_PAGE), crossmint_emulator, monkeypatch)["app"]
    client = Client(app)
    anonymous = client.get("/account")
    assert (anonymous.status_code, anonymous.location) == (302, "/login?next=/account")
    # An expired JWT with its refresh token: the session needs Crossmint to go on.
    crossmint_emulator.configure(jwt_ttl=-60)
    material = crossmint_emulator.create_session("ada")
    client.set_cookie("crossmint-jwt", material.jwt)
    client.set_cookie("crossmint-refresh-token", material.refresh_token.secret)
    crossmint_emulator.set_down(down)
    page = client.get("/account")
    assert (page.status_code, shown in page.text) == (status, True), page.text
    if down:
        assert page.headers["Retry-After"] == "5"
        assert "text/html" in page.content_type
        # The JSON answer is kept for the API.
        assert client.get("/api/x").status_code == 503


# -- API: more names


@pytest.mark.anyio
async def test_closing_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    crossmint_emulator.create_session("user-1", email="one@example.com")
    namespace = _run(
        _snippet("with CrossmintAuth(crossmint) as auth:"), crossmint_emulator, monkeypatch
    )
    assert namespace["user"].email == "one@example.com"
    assert namespace["auth"]._client is None  # closed on the way out
    assert (await namespace["main"]()).email == "one@example.com"


def test_redis_settings_table_is_the_constructors() -> None:
    """Both classes take their settings from one base: the table lists exactly those."""
    from crossmint_wsgi.redis.base import RedisCoordinatorBase

    section = README.split("**`crossmint_wsgi.redis.AsyncRedisCoordinator`**", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, re.MULTILINE)
    documented = {
        name: None if default == "wait" else ast.literal_eval(default) for name, default in rows
    }
    parameters = inspect.signature(RedisCoordinatorBase.__init__).parameters.values()
    actual = {
        parameter.name: parameter.default
        for parameter in parameters
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert documented == actual


@pytest.mark.slow
@pytest.mark.anyio
async def test_async_redis_coordinator_example(
    crossmint_emulator: CrossmintEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis_server import redis_server

    with redis_server() as server:
        monkeypatch.setenv("CROSSMINT_REDIS_URL", server.url)
        namespace = _run(
            _snippet("AsyncRedisCoordinator.from_url("), crossmint_emulator, monkeypatch
        )
        assert namespace["coordinator"].settings.wait == 5
        async with namespace["auth"] as auth:
            try:
                material = await auth.refresh(crossmint_emulator.one_time_secret("ada"))
            finally:
                await namespace["coordinator"].aclose()
        assert material.user.id == "ada"
        with server.client() as client:
            assert client.keys("crossmint-wsgi:refresh:*")  # the refresh went through Redis


def test_every_logger_is_documented() -> None:
    package = Path(crossmint_wsgi.__file__).parent
    names = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r'getLogger\("([\w.]+)"\)', path.read_text())
    }
    assert "crossmint_wsgi" in names
    section = README.split("**Logging.**", 1)[1]
    for name in names:
        assert f"`{name}`" in section, name


def test_logging_example(crossmint_emulator: CrossmintEmulator) -> None:
    code = _snippet('logging.getLogger("crossmint_wsgi")')
    script = f"{code}\nlogging.getLogger('crossmint_wsgi.keys').info('seen')\n"
    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert re.search(r" crossmint_wsgi\.keys INFO seen$", shown.stderr.strip())


JWT, SCOPED_JWT, REFRESH = "crossmint-jwt", "crossmint-jwt-{project}", "crossmint-refresh-token"


@pytest.mark.parametrize(
    ("cookies", "names"),
    [
        pytest.param({JWT: "J", REFRESH: "R"}, (JWT, REFRESH), id="unscoped"),
        pytest.param({SCOPED_JWT: "J"}, (SCOPED_JWT,), id="sdk-scoped"),
        pytest.param({JWT: "J", SCOPED_JWT: "X"}, (JWT, SCOPED_JWT), id="unscoped-wins"),
    ],
)
def test_read_cookies_as_documented(
    cookies: dict[str, str], names: tuple[str, ...], auth: Any
) -> None:
    project = auth.crossmint.project_id
    jwt, refresh = "eyJ.secret-jwt.sig", "secret-refresh-value"
    values = {"J": jwt, "R": refresh, "X": "eyJ.other.sig"}
    found = auth.read_cookies({n.format(project=project): values[v] for n, v in cookies.items()})
    assert found.names == tuple(name.format(project=project) for name in names)
    assert found.jwt == jwt
    assert found.refresh == (refresh if "R" in cookies.values() else None)
    assert jwt not in repr(found)
    assert refresh not in repr(found)
    # The keywords override what the cookies say.
    assert auth.read_cookies({JWT: jwt}, jwt="eyJ.given.sig").jwt == "eyJ.given.sig"
    assert "**`read_cookies(source=None, *, jwt=None, refresh_token=None)`**" in README
