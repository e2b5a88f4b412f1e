"""crossmint_wsgi.gunicorn: the app built from the settings, and start-up under real gunicorn."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port, require_program, serve
from werkzeug.test import Client

from crossmint_wsgi import CrossmintConfigError, CrossmintWSGIMiddleware
from crossmint_wsgi.gunicorn import APP_LOAD_ERROR, build, wrap
from crossmint_wsgi.redis import RedisCoordinator
from crossmint_wsgi.testing import CrossmintEmulator

HELLO_APP = """
def app(environ, start_response):
    session = environ.get("crossmint.session")
    body = ("hello " + (session.user_id if session else "anonymous")).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]

def create_app(greeting):
    def greet(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [greeting.encode()]
    return greet
"""

# -- the Crossmint config, built from the settings ------------------------------------------

BAD_KEY = "sk_production_5KQ8sEcretPayloadThatIsNotSigned"


@pytest.mark.parametrize(
    ("environ", "starts_with"),
    [
        pytest.param({}, "SERVER_CROSSMINT_API_KEY is not set", id="missing"),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": "  "}, "SERVER_CROSSMINT_API_KEY is not set", id="blank"
        ),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": BAD_KEY}, "SERVER_CROSSMINT_API_KEY: ", id="bad-signature"
        ),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": "sk_live_abcdef"},
            "SERVER_CROSSMINT_API_KEY: Crossmint API key has the old",
            id="old-format",
        ),
        pytest.param(
            {"CROSSMINT_EMULATOR_URL": "http://127.0.0.1:1"},
            "CROSSMINT_EMULATOR_URL: no Crossmint emulator answers",
            id="emulator-unreachable",
        ),
    ],
)
def test_build_refuses_bad_keys(environ: dict[str, str], starts_with: str) -> None:
    with pytest.raises(CrossmintConfigError) as caught:
        build(lambda environ, start_response: [], environ)
    message = str(caught.value)
    assert message.startswith(starts_with)
    assert "\n" not in message
    assert BAD_KEY not in message


def test_build_with_a_bad_base_url_names_it(crossmint_emulator: CrossmintEmulator) -> None:
    environ = {
        "SERVER_CROSSMINT_API_KEY": crossmint_emulator.api_key,
        "CROSSMINT_BASE_URL": "ftp:/x",
    }
    with pytest.raises(CrossmintConfigError) as caught:
        build(lambda environ, start_response: [], environ)
    # The emulator's key is not signed by Crossmint, so either check may speak first.
    assert str(caught.value).startswith(("CROSSMINT_BASE_URL", "SERVER_CROSSMINT_API_KEY"))
    assert crossmint_emulator.api_key not in str(caught.value)


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["crossmint.session"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"hello {session.user_id if session else 'anonymous'}".encode()]


def test_build_wraps_with_the_settings(crossmint_emulator: CrossmintEmulator) -> None:
    environ = {
        "CROSSMINT_EMULATOR_URL": crossmint_emulator.url,
        "CROSSMINT_PROTECT": "/private/:path*",
        "CROSSMINT_LOGIN_URL": "/sign-in",
        "CROSSMINT_REFRESH_PATH": "/auth/refresh",
        "CROSSMINT_COOKIE_SECURE": "true",
        "CROSSMINT_ALLOWED_ORIGINS": "https://app.example",
    }
    middleware = build(hello, environ)
    assert isinstance(middleware, CrossmintWSGIMiddleware)
    with middleware.auth:
        client = Client(middleware, use_cookies=False)

        redirected = client.get("/private/x", headers={"Accept": "text/html"})
        assert redirected.status_code == 302
        assert redirected.headers["Location"].startswith("/sign-in?next=")

        secret = crossmint_emulator.one_time_secret("user-1")
        refreshed = client.post(
            "/auth/refresh",
            json={"refresh": secret},
            headers={"Origin": "https://app.example"},
        )
        assert refreshed.status_code == 200
        cookies = refreshed.headers.getlist("Set-Cookie")
        assert len(cookies) == 2
        assert all("Secure" in cookie for cookie in cookies)

        jwt = refreshed.get_json()["jwt"]
        page = client.get("/private/x", headers={"Cookie": f"crossmint-jwt={jwt}"})
        assert page.get_data() == b"hello user-1"


def test_build_uses_redis_when_configured(crossmint_emulator: CrossmintEmulator) -> None:
    environ = {
        "CROSSMINT_EMULATOR_URL": crossmint_emulator.url,
        "CROSSMINT_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    middleware = build(hello, environ)
    assert isinstance(middleware.auth.coordinator, RedisCoordinator)
    without = build(hello, {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url})
    assert not isinstance(without.auth.coordinator, RedisCoordinator)


def test_build_refuses_a_bad_redis_url(crossmint_emulator: CrossmintEmulator) -> None:
    environ = {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url, "CROSSMINT_REDIS_URL": "http://x"}
    with pytest.raises(CrossmintConfigError, match=r"^CROSSMINT_REDIS_URL: "):
        build(hello, environ)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(404, None, id="404"),
        pytest.param(200, b"<!doctype html><title>shop</title>", id="html"),
    ],
)
def test_build_refuses_a_url_that_is_not_crossmint(
    crossmint_emulator: CrossmintEmulator, status: int, body: bytes | None
) -> None:
    crossmint_emulator.fail_next(1, status=status, body=body, endpoint="jwks")
    with pytest.raises(CrossmintConfigError) as caught:
        build(hello, {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url})
    message = str(caught.value)
    assert message.startswith("CROSSMINT_EMULATOR_URL: Crossmint is not at ")
    assert f"{crossmint_emulator.url}/.well-known/jwks.json" in message
    assert crossmint_emulator.api_key not in message


def test_build_goes_on_through_an_outage_naming_the_url(
    crossmint_emulator: CrossmintEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    crossmint_emulator.fail_next(1, status=503, endpoint="jwks")
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        middleware = build(hello, {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url})
    with middleware.auth:
        assert Client(middleware).get("/").get_data() == b"hello anonymous"
    warnings = [r.getMessage() for r in caplog.records if "jwks.json" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("CROSSMINT_EMULATOR_URL: ")
    assert "HTTP 503" in warnings[0]


# -- wrap: what gunicorn calls ----------------------------------------------------------------


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module ``hello_app`` in a temporary directory on sys.path."""
    (tmp_path / "hello_app.py").write_text(HELLO_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("hello_app", None)


@pytest.mark.parametrize(
    ("target", "body"),
    [
        pytest.param("hello_app:app", b"hello anonymous", id="module-attribute"),
        pytest.param("hello_app:create_app('hi there')", b"hi there", id="factory-call"),
        pytest.param(hello, b"hello anonymous", id="app-object"),
    ],
)
def test_wrap_imports_the_app(
    crossmint_emulator: CrossmintEmulator, app_module: Path, target: Any, body: bytes
) -> None:
    middleware = wrap(target, {"CROSSMINT_EMULATOR_URL": crossmint_emulator.url})
    with middleware.auth:
        assert Client(middleware).get("/").get_data() == body


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="missing-key"),
        pytest.param({"SERVER_CROSSMINT_API_KEY": BAD_KEY}, id="bad-key"),
        pytest.param({"CROSSMINT_PROTECT": "nope"}, id="bad-setting"),
    ],
)
def test_wrap_stops_with_one_line(
    environ: dict[str, str], app_module: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        wrap("hello_app:app", environ)
    assert caught.value.code == APP_LOAD_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("crossmint_wsgi: cannot start: ")
    assert BAD_KEY not in err
    # The settings are refused before the app is imported.
    assert "hello_app" not in sys.modules


# -- under real gunicorn ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        pytest.param({}, "SERVER_CROSSMINT_API_KEY is not set", id="missing-key"),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": BAD_KEY}, "SERVER_CROSSMINT_API_KEY: ", id="bad-key"
        ),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": BAD_KEY, "PRELOAD": "1"},
            "SERVER_CROSSMINT_API_KEY: ",
            id="bad-key-preload",
        ),
    ],
)
def test_gunicorn_stops_at_start_up_with_one_line(
    app_module: Path, environ: dict[str, str], reason: str
) -> None:
    gunicorn = require_program("gunicorn")
    preload = ["--preload"] if environ.pop("PRELOAD", None) else []
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CROSSMINT_", "SERVER_CROSSMINT_"))
    }
    command = [
        gunicorn,
        "--chdir",
        str(app_module),
        "--workers",
        "3",
        "--bind",
        f"127.0.0.1:{free_port()}",
        *preload,
        "crossmint_wsgi.gunicorn:wrap('hello_app:app')",
    ]
    done = subprocess.run(
        command, env={**env, **environ}, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == APP_LOAD_ERROR, output
    lines = [line for line in output.splitlines() if "crossmint_wsgi: cannot start:" in line]
    assert len(lines) == 1, output
    assert lines[0].startswith(f"crossmint_wsgi: cannot start: {reason}")
    assert "Traceback" not in output
    assert BAD_KEY not in output


WARNING = "runs 2 workers with no host store"


def wait_for_line(server: Any, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in server.output():
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("redis_url", "host_store"),
    [(None, None), ("redis://127.0.0.1:1/0", None), (None, "off")],
    ids=["host-store", "redis", "nothing-shared"],
)
def test_gunicorn_serves_the_wrapped_app(
    crossmint_emulator: CrossmintEmulator,
    app_module: Path,
    redis_url: str | None,
    host_store: str | None,
) -> None:
    gunicorn = require_program("gunicorn")

    def command(port: int) -> list[str]:
        return [
            gunicorn,
            "--chdir",
            str(app_module),
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "crossmint_wsgi.gunicorn:wrap('hello_app:app')",
        ]

    env = {
        "CROSSMINT_EMULATOR_URL": crossmint_emulator.url,
        "CROSSMINT_PROTECT": "/private/:path*",
        **({"CROSSMINT_REDIS_URL": redis_url} if redis_url else {}),
        **({"CROSSMINT_HOST_STORE": host_store} if host_store else {}),
    }
    with (
        serve(command, env=env) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        assert http.get("/").text == "hello anonymous"
        assert http.get("/private").status_code == 401
        secret = crossmint_emulator.one_time_secret("user-1")
        refreshed = http.post("/refresh", json={"refresh": secret})
        assert refreshed.status_code == 200
        jwt = refreshed.json()["jwt"]
        # Both workers answer the same way: a few requests reach each.
        for _ in range(6):
            answer = http.get("/private", headers={"Cookie": f"crossmint-jwt={jwt}"})
            assert answer.text == "hello user-1"
        assert http.post("/logout").status_code == 200
        if host_store == "off" and redis_url is None:
            # Two workers, each refreshing on its own: one line says so, naming the fixes.
            wait_for_line(server, WARNING)
            lines = [line for line in server.output().splitlines() if WARNING in line]
            assert len(lines) == 1, server.output()
            assert "CROSSMINT_HOST_STORE" in lines[0]
            assert "CROSSMINT_REDIS_URL" in lines[0]
        else:
            assert WARNING not in server.output()
