"""The framework examples served for real: FastAPI under uvicorn, the Django project under
uvicorn (ASGI) and gunicorn (WSGI), Quart under hypercorn; all against one emulator started here.

The scenarios are the ones every example passes, imported from ``test_examples_asgi``
(HTTP, for the ASGI servers) and ``test_examples_wsgi`` (for gunicorn), so pytest runs
them here with this module's servers. Django has no websockets: those are run on
FastAPI and Quart only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
import test_examples_asgi as asgi_cases
import test_examples_wsgi as wsgi_cases
from support import ROOT, Server, require_program, serve
from websockets.exceptions import InvalidStatus

from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

# name -> command line; "{port}" is replaced by the server's port.
SERVERS: dict[str, list[str]] = {
    # `python examples/fastapi_app.py` serves with uvicorn on $PORT.
    "fastapi-uvicorn": ["python", "examples/fastapi_app.py"],
    "django-uvicorn": [
        "uvicorn",
        "--app-dir",
        "examples",
        "django_app.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ],
    "quart-hypercorn": ["hypercorn", "--bind", "127.0.0.1:{port}", "examples/quart_app.py:app"],
}
WEBSOCKET_SERVERS = ["fastapi-uvicorn", "quart-hypercorn"]


def command_for(name: str, port: int) -> list[str]:
    program, *args = SERVERS[name]
    executable = sys.executable if program == "python" else require_program(program)
    return [executable, *(arg.replace("{port}", str(port)) for arg in args)]


# -- fixtures: the ASGI servers, and the Django project under gunicorn ---------------------------

emulator = asgi_cases.emulator
fresh_emulator = asgi_cases.fresh_emulator
site = wsgi_cases.site


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, emulator: CrossmintEmulator) -> Iterator[Server]:
    def env(port: int) -> dict[str, str]:
        return {**wsgi_cases.CLEAN_ENV, "CROSSMINT_EMULATOR_URL": emulator.url, "PORT": str(port)}

    with serve(lambda port: command_for(request.param, port), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def running(emulator: CrossmintEmulator) -> Iterator[wsgi_cases.Running]:
    """The Django project under gunicorn, two workers, for the WSGI scenarios."""

    def command(port: int) -> list[str]:
        return [
            require_program("gunicorn"),
            *("--chdir", "examples", "-w", "2", "-b", f"127.0.0.1:{port}", "django_app.wsgi"),
        ]

    def env(port: int) -> dict[str, str]:
        return {**wsgi_cases.CLEAN_ENV, "CROSSMINT_EMULATOR_URL": emulator.url, "PORT": str(port)}

    with serve(command, env=env, cwd=ROOT) as server:
        control = wsgi_cases.Control(emulator.url)
        yield wsgi_cases.Running("django-gunicorn", server, control)
        control.http.close()


# -- the ASGI scenarios, on every server here ---------------------------------------------------

test_anonymous_visitor = asgi_cases.test_anonymous_visitor
test_valid_session = asgi_cases.test_valid_session
test_expired_jwt_is_refreshed = asgi_cases.test_expired_jwt_is_refreshed_transparently
test_rejected_refresh_clears_the_cookies = asgi_cases.test_rejected_refresh_clears_the_cookies
test_invalid_token_is_refused = asgi_cases.test_invalid_token_is_refused
test_crossmint_down_keeps_the_cookies = asgi_cases.test_crossmint_down_keeps_the_cookies
test_protected_without_session = asgi_cases.test_protected_without_session
test_sign_in_as_the_browser_sdk_does = asgi_cases.test_sign_in_as_the_browser_sdk_does
test_refresh_route = asgi_cases.test_refresh_route
test_refresh_route_reads_a_chunked_body = asgi_cases.test_refresh_route_reads_a_chunked_body
test_refresh_route_refuses_a_large_chunked_body = (
    asgi_cases.test_refresh_route_refuses_a_large_chunked_body
)
test_logout_route = asgi_cases.test_logout_route
test_logs_name_users_never_tokens = asgi_cases.test_logs_name_users_never_tokens

# -- the WSGI scenarios, on the Django project under gunicorn -----------------------------------

test_gunicorn_start_up_line = wsgi_cases.test_start_up_line_names_the_crossmint_and_no_key
test_gunicorn_anonymous = wsgi_cases.test_anonymous
test_gunicorn_valid_session = wsgi_cases.test_valid_session
test_gunicorn_expired_jwt_is_refreshed = wsgi_cases.test_expired_jwt_is_refreshed_on_the_apps_answer
test_gunicorn_rejected_refresh_clears_cookies = wsgi_cases.test_rejected_refresh_clears_cookies
test_gunicorn_crossmint_down = wsgi_cases.test_crossmint_down_answers_503_and_keeps_cookies
test_gunicorn_protected_without_session = wsgi_cases.test_protected_without_session
test_gunicorn_demo_sign_in = wsgi_cases.test_demo_sign_in
test_gunicorn_refresh_route = wsgi_cases.test_refresh_route
test_gunicorn_refresh_route_with_crossmint_down = wsgi_cases.test_refresh_route_with_crossmint_down
test_gunicorn_logout = wsgi_cases.test_logout
test_gunicorn_cross_site_post_is_refused = wsgi_cases.test_cross_site_post_is_refused


# -- websockets: FastAPI and Quart ----------------------------------------------------------------


@pytest.mark.parametrize("server", WEBSOCKET_SERVERS, indirect=True)
@pytest.mark.parametrize(
    ("path", "signed_in", "expected"),
    [
        pytest.param("/ws", True, asgi_cases.USER, id="session"),
        pytest.param("/ws", False, "anonymous", id="anonymous"),
        pytest.param("/ws/private", True, asgi_cases.USER, id="protected-with-session"),
    ],
)
def test_websocket_accepted(
    server: Server, emulator: CrossmintEmulator, path: str, signed_in: bool, expected: str
) -> None:
    cookies = asgi_cases.session_cookies(emulator) if signed_in else {}
    assert asgi_cases.websocket_text(server, path, cookies) == expected


@pytest.mark.parametrize("server", WEBSOCKET_SERVERS, indirect=True)
def test_protected_websocket_refused(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        asgi_cases.websocket_text(server, "/ws/private")
    assert refused.value.response.status_code == 403


# -- FastAPI: the schema and a sync route, as served ----------------------------------------------


@pytest.mark.parametrize("server", ["fastapi-uvicorn"], indirect=True)
def test_fastapi_openapi_names_the_session_cookie(server: Server) -> None:
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    assert schema["components"]["securitySchemes"]["CrossmintSession"]["in"] == "cookie"
    assert schema["components"]["securitySchemes"]["CrossmintSession"]["name"] == "crossmint-jwt"
    me = schema["paths"]["/api/me"]["get"]
    assert me["security"] == [{"CrossmintSession": []}]
    assert "requestBody" not in me
    assert "security" not in schema["paths"]["/login"]["get"]


@pytest.mark.parametrize("server", ["fastapi-uvicorn"], indirect=True)
@pytest.mark.parametrize(
    ("signed_in", "hello"),
    [pytest.param(True, asgi_cases.USER, id="session"), pytest.param(False, "stranger", id="none")],
)
def test_fastapi_sync_route_gets_the_optional_session(
    server: Server, emulator: CrossmintEmulator, signed_in: bool, hello: str
) -> None:
    cookies = asgi_cases.session_cookies(emulator) if signed_in else {}
    answer = asgi_cases.call(server, "GET", "/api/hello", cookies)
    assert answer.json() == {"hello": hello, "path": "/api/hello"}
