"""The Flask and Bottle examples, served for real (gunicorn and werkzeug's server), hit with httpx.

Each server starts once per module. Under gunicorn the workers use an
emulator started here; ``python examples/<name>.py`` embeds its own, which
the tests drive through its HTTP control routes (its URL is in the
start-up line).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from support import ROOT, Server, free_port, require_program, run_server

from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

# Inherited settings must not pick another Crossmint for the servers.
CLEAN_ENV = {
    "SERVER_CROSSMINT_API_KEY": "",
    "CROSSMINT_EMULATOR_URL": "",
    "CROSSMINT_REDIS_URL": "",
}


class Control:
    """An emulator driven over its HTTP control routes, wherever it runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)
        self.was_down = False

    def _post(self, route: str, **data: Any) -> Any:
        answer = self.http.post(f"/_emulator/{route}", json=data)
        answer.raise_for_status()
        return answer.json()

    def session(self, user_id: str = "user-1", jwt_ttl: int | None = None) -> dict[str, str]:
        """The cookies of a logged-in browser."""
        data = {"user_id": user_id, "email": f"{user_id}@example.com"}
        if jwt_ttl is not None:
            data["jwt_ttl"] = jwt_ttl  # type: ignore[assignment]
        answer = self._post("sessions", **data)
        return {
            "crossmint-jwt": answer["jwt"],
            "crossmint-refresh-token": answer["refresh"]["secret"],
        }

    def one_time_secret(self, user_id: str = "user-1") -> str:
        return str(self._post("one-time-secrets", user_id=user_id)["secret"])

    def down(self, down: bool = True) -> None:
        self._post("down", down=down)

    def reset(self) -> None:
        self._post("reset")

    def requests(self) -> dict[str, int]:
        answer = self.http.get("/_emulator/requests")
        answer.raise_for_status()
        return dict(answer.json())


@dataclass
class Running:
    """A served example and the emulator behind it."""

    kind: str
    server: Server
    control: Control

    def client(self, cookies: dict[str, str] | None = None) -> httpx.Client:
        # Cookies go in a header: the test, not a jar, decides what is sent.
        headers = {"Cookie": cookie_header(cookies)} if cookies else {}
        return httpx.Client(
            base_url=self.server.url, headers=headers, timeout=30, follow_redirects=False
        )


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def gunicorn_command(app: str, port: int) -> list[str]:
    gunicorn = require_program("gunicorn")
    if app == "flask":
        # The example's own config, with two workers instead of four.
        return [gunicorn, "-c", "examples/gunicorn.conf.py"]
    return [gunicorn, "--chdir", "examples", "-w", "2", "-b", f"127.0.0.1:{port}", f"{app}_app:app"]


EMBEDDED = re.compile(r"using embedded Crossmint emulator at (http://127\.0\.0\.1:\d+)")


@pytest.fixture(scope="module")
def emulator() -> Iterator[CrossmintEmulator]:
    """The emulator every gunicorn worker points at."""
    with CrossmintEmulator() as instance:
        yield instance


@pytest.fixture(
    scope="module",
    params=["flask-gunicorn", "flask-dev-server", "bottle-gunicorn", "bottle-dev-server"],
)
def running(request: pytest.FixtureRequest, emulator: CrossmintEmulator) -> Iterator[Running]:
    kind: str = request.param
    app, _, how = kind.partition("-")
    port = free_port()
    env = {**CLEAN_ENV, "PORT": str(port), "WEB_CONCURRENCY": "2"}
    if how == "gunicorn":
        command = gunicorn_command(app, port)
        env["CROSSMINT_EMULATOR_URL"] = emulator.url
    else:
        command = [sys.executable, f"examples/{app}_app.py"]
    with run_server(command, port=port, env=env, cwd=ROOT) as server:
        if how == "gunicorn":
            control = Control(emulator.url)
        else:
            found = EMBEDDED.search(server.output())
            assert found, f"no emulator URL in the start-up output:\n{server.output()}"
            control = Control(found.group(1))
        yield Running(kind, server, control)
        control.http.close()


@pytest.fixture
def site(running: Running) -> Iterator[Running]:
    """The running example, its emulator reset."""
    running.control.reset()
    yield running
    running.control.reset()


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header's name -> its value."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


def assert_cleared(response: httpx.Response) -> None:
    cookies = set_cookies(response)
    assert cookies == {"crossmint-jwt": "", "crossmint-refresh-token": ""}


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert payload["message"]
    return str(payload["error"])


# -- the scenarios ----------------------------------------------------------------------------


def test_start_up_line_names_the_crossmint_and_no_key(site: Running) -> None:
    output = site.server.output()
    assert re.search(
        r"_app: using (embedded )?Crossmint emulator at http://127\.0\.0\.1:\d+", output
    )
    assert "sk_development_" not in output


def test_anonymous(site: Running) -> None:
    with site.client() as http:
        home = http.get("/")
        assert home.status_code == 200
        assert "Not signed in" in home.text
        assert "set-cookie" not in home.headers
        me = http.get("/api/me")
        assert me.status_code == 401
        assert error_of(me) == "MISSING_SESSION"


def test_valid_session(site: Running) -> None:
    with site.client(site.control.session("user-1")) as http:
        home = http.get("/")
        assert "Signed in as <code>user-1</code>" in home.text
        protected = http.get("/protected", headers={"Accept": "text/html"})
        assert protected.status_code == 200
        assert "user-1" in protected.text
        assert 'id="logout"' in protected.text
        assert "user-1@example.com" in protected.text
        assert http.get("/api/me").json() == {"user_id": "user-1", "email": "user-1@example.com"}
        assert "set-cookie" not in protected.headers
    assert site.control.requests()["refresh"] == 0


def test_expired_jwt_is_refreshed_on_the_apps_answer(site: Running) -> None:
    with site.client(site.control.session("user-1", jwt_ttl=-30)) as http:
        home = http.get("/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert "Signed in as <code>user-1</code>" in home.text
    cookies = set_cookies(home)
    assert set(cookies) == {"crossmint-jwt", "crossmint-refresh-token"}
    assert site.control.requests()["refresh"] == 1
    with site.client(cookies) as http:
        again = http.get("/api/me")
    assert again.json()["user_id"] == "user-1"
    assert "set-cookie" not in again.headers
    assert site.control.requests()["refresh"] == 1


def test_rejected_refresh_clears_cookies(site: Running) -> None:
    cookies = site.control.session("user-1", jwt_ttl=-30)
    cookies["crossmint-refresh-token"] = "not-a-known-secret"
    with site.client(cookies) as http:
        home = http.get("/")
        assert "Not signed in" in home.text
        assert_cleared(home)
        protected = http.get("/protected", headers={"Accept": "text/html"})
        assert protected.status_code == 302
        assert protected.headers["location"] == "/login?next=/protected"
        assert_cleared(protected)


def test_crossmint_down_answers_503_and_keeps_cookies(site: Running) -> None:
    cookies = site.control.session("user-1", jwt_ttl=-30)
    site.control.down()
    with site.client(cookies) as http:
        protected = http.get("/protected", headers={"Accept": "text/html"})
        assert protected.status_code == 503
        assert error_of(protected) == "UPSTREAM_UNAVAILABLE"
        assert int(protected.headers["retry-after"]) > 0
        assert "set-cookie" not in protected.headers
        home = http.get("/")
        assert home.status_code == 200
        assert "Not signed in" in home.text
        assert "set-cookie" not in home.headers
        me = http.get("/api/me")
        assert me.status_code == 503
        assert "set-cookie" not in me.headers
    site.control.down(False)
    with site.client(cookies) as http:
        recovered = http.get("/protected")
    assert recovered.status_code == 200
    assert set(set_cookies(recovered)) == {"crossmint-jwt", "crossmint-refresh-token"}


def test_protected_without_session(site: Running) -> None:
    with site.client() as http:
        browser = http.get("/protected", headers={"Accept": "text/html"})
        assert browser.status_code == 302
        assert browser.headers["location"] == "/login?next=/protected"
        api = http.get("/protected", headers={"Accept": "application/json"})
        assert api.status_code == 401
        assert error_of(api) == "MISSING_SESSION"
        login = http.get("/login", params={"next": "/protected"})
        assert 'id="demo-sign-in"' in login.text


def test_demo_sign_in(site: Running) -> None:
    """What the sign-in page's script does: mint a one-time secret, post it to /refresh."""
    with site.client() as http:
        minted = http.post("/demo/one-time-secret")
        assert minted.status_code == 200
        signed_in = http.post(
            "/refresh",
            json={"refresh": minted.json()["secret"]},
            headers={"Origin": site.server.url, "Sec-Fetch-Site": "same-origin"},
        )
    assert signed_in.status_code == 200
    payload = signed_in.json()
    assert payload["user"]["id"] == "demo-user"
    cookies = set_cookies(signed_in)
    assert cookies["crossmint-jwt"] == payload["jwt"]
    with site.client(cookies) as http:
        protected = http.get("/protected", headers={"Accept": "text/html"})
    assert protected.status_code == 200
    assert "demo-user" in protected.text
    assert "demo@example.com" in protected.text


@pytest.mark.parametrize(
    ("body", "with_cookie", "status", "error"),
    [
        pytest.param(None, False, 200, None, id="one-time-secret"),
        pytest.param(b"{}", True, 200, None, id="empty-object-uses-cookie"),
        pytest.param(b"{not json", True, 400, "INVALID_REQUEST", id="bad-json"),
        pytest.param(b'{"refresh": 42}', True, 400, "INVALID_REQUEST", id="wrong-type"),
        pytest.param(b"[]", True, 400, "INVALID_REQUEST", id="not-an-object"),
        pytest.param(b" " * (100 * 1024), True, 400, "INVALID_REQUEST", id="over-64KiB"),
        pytest.param(b'{"refresh": "unknown"}', False, 401, "SESSION_EXPIRED", id="rejected"),
        pytest.param(b"{}", False, 401, "MISSING_SESSION", id="no-token"),
    ],
)
def test_refresh_route(
    site: Running, body: bytes | None, with_cookie: bool, status: int, error: str | None
) -> None:
    cookies = site.control.session("user-1") if with_cookie else None
    if body is None:
        body = b'{"refresh": "%s"}' % site.control.one_time_secret().encode()
    with site.client(cookies) as http:
        answer = http.post("/refresh", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    if error is None:
        payload = answer.json()
        assert set(payload) == {"jwt", "refreshToken", "user"}
        assert set(set_cookies(answer)) == {"crossmint-jwt", "crossmint-refresh-token"}
        return
    assert error_of(answer) == error
    if error == "SESSION_EXPIRED":
        assert_cleared(answer)
    else:
        assert "set-cookie" not in answer.headers


def test_refresh_route_with_crossmint_down(site: Running) -> None:
    # Nothing valid left: 503, cookies kept.
    expired = site.control.session("user-1", jwt_ttl=-30)
    live = site.control.session("user-1")
    with site.client(live) as http:
        assert http.get("/api/me").status_code == 200  # the site holds Crossmint's keys
    site.control.down()
    with site.client(expired) as http:
        answer = http.post("/refresh", json={})
    assert answer.status_code == 503
    assert error_of(answer) == "UPSTREAM_UNAVAILABLE"
    assert int(answer.headers["retry-after"]) > 0
    assert "set-cookie" not in answer.headers
    # A JWT still valid: the browser SDK gets it back (any error status logs its user out).
    with site.client(live) as http:
        answer = http.post("/refresh", json={})
    assert answer.status_code == 200
    assert answer.json()["jwt"] == live["crossmint-jwt"]
    assert "set-cookie" not in answer.headers


def test_logout(site: Running) -> None:
    cookies = site.control.session("user-1")
    with site.client(cookies) as http:
        answer = http.post("/logout")
    assert answer.status_code == 200
    assert_cleared(answer)
    assert site.control.requests()["logout"] == 1
    # The refresh token is revoked: the old cookies cannot come back to life.
    with site.client({"crossmint-refresh-token": cookies["crossmint-refresh-token"]}) as http:
        assert http.post("/refresh", json={}).status_code == 401


@pytest.mark.parametrize("route", ["/refresh", "/logout"])
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="other-origin"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
    ],
)
def test_cross_site_post_is_refused(site: Running, route: str, headers: dict[str, str]) -> None:
    with site.client(site.control.session("user-1")) as http:
        answer = http.post(route, json={}, headers=headers)
    assert answer.status_code == 403
    assert error_of(answer) == "FORBIDDEN_ORIGIN"
    assert "set-cookie" not in answer.headers
    assert site.control.requests() == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}


# -- gunicorn.conf.py with no Crossmint configured: one emulator in the master ------------------


def test_gunicorn_conf_shares_one_emulator_between_workers() -> None:
    port = free_port()
    command = [require_program("gunicorn"), "-c", "examples/gunicorn.conf.py"]
    env = {**CLEAN_ENV, "PORT": str(port), "WEB_CONCURRENCY": "2"}
    with run_server(command, port=port, env=env, cwd=ROOT) as server:
        urls = set(re.findall(r"using Crossmint emulator at (\S+)", server.output()))
        with httpx.Client(base_url=server.url, timeout=30) as http:
            secret = http.post("/demo/one-time-secret").json()["secret"]
            signed_in = http.post("/refresh", json={"refresh": secret})
            assert signed_in.status_code == 200
            jwt = signed_in.json()["jwt"]
            # Whichever worker answers, it trusts the JWT the other minted.
            for _ in range(6):
                me = http.get("/api/me", headers={"Cookie": f"crossmint-jwt={jwt}"})
                assert me.json()["user_id"] == "demo-user"
        urls |= set(re.findall(r"using Crossmint emulator at (\S+)", server.output()))
    assert len(urls) == 1
