"""Sign in, silent refresh and logout in headless chromium, with the browser's real cookies.

One scenario per example app, run on a real server (gunicorn, uvicorn) that
talks to an emulator in this process. The JWT lives a few seconds and refresh
tokens are single use (``reuse_window=0``), so a second upstream refresh of
the same secret would log the user out: the scenario counts the emulator's
refresh calls step by step.

Every wait is on an event: a response, a URL, the browser's cookie jar, the
browser having sent a request. No step waits a fixed time for something to
have happened.

Screenshots of the signed-in page land in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, Response
from playwright.sync_api import Error as PlaywrightError

from crossmint_wsgi.testing import CrossmintEmulator
from crossmint_wsgi.testing.demo import DEMO_USER_ID

from .browsing import (
    APPS,
    JWT_COOKIE,
    REFRESH_COOKIE,
    App,
    BrowserScenario,
    Stage,
    auth_cookies,
    behind_gate,
    cookie_values,
    is_post,
    run_steps,
    watching_sent,
)
from .cross_site import CrossSiteServer
from .upstream_gate import UpstreamGate

USER_ID = DEMO_USER_ID

#: Seconds a JWT lives in these tests: long enough for a page load, short to wait out.
JWT_TTL = 5
#: Seconds the JWT of the last sign-in (step 7) lives. That step checks that its
#: cookies stay as they are across several requests, so its JWT must outlive the
#: step on however slow a machine. And it must not be the JWT that step 6 logged
#: out: the emulator signs JWTs deterministically (RS256) over sub, aud, iat and
#: exp only, so a sign-in in the same second as step 5's refresh would get that
#: very JWT, which the middleware refuses since the logout (and refreshes). A
#: lifetime of its own makes its ``exp``, so its JWT, different.
LAST_JWT_TTL = 600
#: How many tabs open at once after an expiry.
TABS = 5
#: How often the cookie jar is looked at while waiting for a cookie to expire.
POLL = 0.05
#: How long past its expiry a cookie may linger in the jar: the context's default timeout.
DEADLINE = 20.0

#: (host the cross-site page is opened on, whether the browser sends the app's cookies)
CROSS_ORIGINS: Sequence[tuple[str, bool]] = [("127.0.0.1", True), ("localhost", False)]


# -- small helpers -------------------------------------------------------------------------


def wait_until_dropped(context: BrowserContext, name: str) -> None:
    """Wait until the browser has dropped cookie ``name`` (it expires, it is not cleared).

    The JWT cookie expires with the JWT, so once the browser has dropped it
    the next request carries only the refresh cookie: the middleware's clock
    leeway for JWTs never comes into play. Nothing announces an expiry, so
    this watches the jar (which holds no expired cookie) until the cookie is
    gone, and fails when it outlives its expiry by the context's timeout.
    """
    cookie = auth_cookies(context).get(name)
    if cookie is None:
        return
    deadline = cookie["expires"] + DEADLINE
    while name in auth_cookies(context):
        if time.time() > deadline:
            raise AssertionError(
                f"the browser still holds {name} {DEADLINE:.0f} s after its expiry"
            )
        time.sleep(POLL)


def body_text(page: Page) -> str:
    return page.inner_text("body")


def set_cookie_values(response: Response, name: str) -> list[str]:
    """The values ``response`` set for cookie ``name``."""
    values = []
    for header in response.headers_array():
        if header["name"].lower() == "set-cookie":
            # Playwright may join several Set-Cookie headers with newlines.
            for line in header["value"].split("\n"):
                pair = line.split(";", 1)[0]
                if pair.startswith(f"{name}="):
                    values.append(pair[len(name) + 1 :])
    return values


def cookies_set(response: Response) -> dict[str, str]:
    """The auth cookies ``response`` set (clearing ones excluded), one value each."""
    values = {name: set_cookie_values(response, name) for name in (JWT_COOKIE, REFRESH_COOKIE)}
    assert all(len(given) <= 1 for given in values.values()), (response.url, values)
    return {name: given[0] for name, given in values.items() if given and given[0]}


def refreshes(emulator: CrossmintEmulator) -> int:
    return emulator.requests["refresh"]


def logouts(emulator: CrossmintEmulator) -> int:
    return emulator.requests["logout"]


def signed_in_at(page: Page, base: str, path: str = "/protected") -> None:
    assert page.url == base + path, f"expected {path}, the browser is at {page.url}"
    text = body_text(page)
    assert USER_ID in text, f"{path} does not show the user: {text!r}"


def redirected_to_login(page: Page, base: str, next_path: str) -> None:
    parts = urlsplit(page.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == base + "/login", (
        f"expected the login page, the browser is at {page.url}"
    )
    assert parse_qs(parts.query).get("next") == [next_path], page.url
    assert page.locator("#demo-sign-in").count() == 1, "the login page has no sign-in button"


def click_sign_in(page: Page, base: str) -> Response:
    """Click the login page's demo sign-in button and land on /protected.

    :return: the answer of the sign-in's ``POST /refresh``, which sets the cookies.
    """
    try:
        with page.expect_response(is_post(base, "/refresh")) as answer:
            page.click("#demo-sign-in")
            page.wait_for_url(base + "/protected")
    except PlaywrightError:
        # The page's script writes what went wrong into #status.
        status = page.locator("#status").all_inner_texts()
        raise AssertionError(f"sign-in did not reach /protected: {page.url} {status}") from None
    return answer.value


def sign_in(page: Page, base: str) -> Response:
    """Sign in as the demo user from the login page, and land on /protected.

    :return: the answer of the sign-in's ``POST /refresh``, which sets the cookies.
    """
    page.goto(base + "/login?next=/protected")
    return click_sign_in(page, base)


# -- the scenario --------------------------------------------------------------------------


class Scenario(BrowserScenario):
    """The steps of issue 8, on one running app, in one fresh browser context."""

    def __init__(self, stage: Stage, screenshot: Path) -> None:
        self.screenshot = screenshot
        #: Every JWT and refresh secret any response of the app set, as seen by
        #: the context's response listener: a net for the leak check at the end.
        self.secrets: set[str] = set()
        #: Each new session the app handed to the browser, in order: the cookies
        #: set by the response that created it (read from that awaited response,
        #: and checked against the browser's jar).
        self.sessions: list[dict[str, str]] = []
        stage.context.on("response", self._collect_secrets)
        super().__init__(stage)

    def _collect_secrets(self, response: Response) -> None:
        if response.url.startswith(self.base):
            for name in (JWT_COOKIE, REFRESH_COOKIE):
                self.secrets.update(value for value in set_cookie_values(response, name) if value)

    def handed_out(self, response: Response) -> None:
        """Record the new session ``response`` set; it must be the one the browser now holds."""
        given = cookies_set(response)
        assert given == cookie_values(self.context), (
            f"{response.url} set {sorted(given)}, the browser holds other cookies"
        )
        assert set(given) == {JWT_COOKIE, REFRESH_COOKIE}, (response.url, sorted(given))
        self.sessions.append(given)

    def run(self, cross_site: CrossSiteServer) -> None:
        run_steps(
            [
                ("1 public page, no session", self.public_page_without_session),
                ("2 protected page redirects to login", self.protected_page_redirects),
                ("3 sign in", self.sign_in),
                ("4 reload after expiry: silent refresh", self.reload_after_expiry),
                ("5 tabs at once after expiry: one refresh", self.tabs_after_expiry),
                ("6 log out", self.log_out),
                (
                    "7 cross-site POST to /logout is refused",
                    lambda: self.cross_site_logout_refused(cross_site),
                ),
            ]
        )

    def public_page_without_session(self) -> None:
        response = self.page.goto(self.base + "/")
        assert response is not None
        assert response.status == 200
        assert "Not signed in" in body_text(self.page)
        assert auth_cookies(self.context) == {}

    def protected_page_redirects(self) -> None:
        response = self.page.goto(self.base + "/protected")
        assert response is not None
        assert response.status == 200
        redirected_to_login(self.page, self.base, "/protected")

    def sign_in(self) -> None:
        before = refreshes(self.emulator)
        response = click_sign_in(self.page, self.base)
        signed_in_at(self.page, self.base)
        # Trading the one-time secret is the one refresh of a sign-in.
        assert refreshes(self.emulator) - before == 1
        self.handed_out(response)

        readable = self.page.evaluate("document.cookie")
        assert f"{JWT_COOKIE}=" in readable, f"the JWT cookie is not readable: {readable!r}"
        assert REFRESH_COOKIE not in readable, "the refresh cookie is readable by script"
        cookies = auth_cookies(self.context)
        assert set(cookies) == {JWT_COOKIE, REFRESH_COOKIE}
        jwt, refresh = cookies[JWT_COOKIE], cookies[REFRESH_COOKIE]
        assert jwt["httpOnly"] is False
        assert refresh["httpOnly"] is True
        assert f"{JWT_COOKIE}={jwt['value']}" in readable
        for cookie in (jwt, refresh):
            assert cookie["sameSite"] == "Lax", cookie["name"]
            assert cookie["path"] == "/", cookie["name"]
            assert cookie["secure"] is False, cookie["name"]
        # The JWT cookie dies with the JWT; the refresh cookie outlives it. (Chromium
        # shifts expiries by the skew of the server's Date header: allow a little.)
        assert jwt["expires"] <= time.time() + JWT_TTL + 3
        assert refresh["expires"] > jwt["expires"] + 60

        self.page.screenshot(path=str(self.screenshot), full_page=True)

    def reload_after_expiry(self) -> None:
        old = cookie_values(self.context)
        wait_until_dropped(self.context, JWT_COOKIE)
        assert set(auth_cookies(self.context)) == {REFRESH_COOKIE}
        before = refreshes(self.emulator)
        response = self.page.reload()
        assert response is not None
        assert response.status == 200
        signed_in_at(self.page, self.base)
        assert refreshes(self.emulator) - before == 1
        new = cookie_values(self.context)
        assert set(new) == {JWT_COOKIE, REFRESH_COOKIE}
        assert new[JWT_COOKIE] != old[JWT_COOKIE]
        assert new[REFRESH_COOKIE] != old[REFRESH_COOKIE]
        self.handed_out(response)

    def tabs_after_expiry(self) -> None:
        old_refresh = cookie_values(self.context)[REFRESH_COOKIE]
        wait_until_dropped(self.context, JWT_COOKIE)
        paths = [("/protected", "/", "/api/me")[i % 3] for i in range(TABS)]
        tabs = [self.context.new_page() for _ in paths]
        before = refreshes(self.emulator)
        try:
            responses = open_at_once(tabs, [self.base + path for path in paths], self.upstream)
            for tab, path, response in zip(tabs, paths, responses, strict=True):
                # Every tab left with the old secret: the refreshes really overlapped.
                sent = response.request.all_headers().get("cookie", "")
                assert f"{REFRESH_COOKIE}={old_refresh}" in sent, (
                    f"tab {path} did not carry the old refresh token: the tabs did not overlap"
                )
                assert response.status == 200, f"tab {path}: {response.status}"
                signed_in_at(tab, self.base, path)
            assert refreshes(self.emulator) - before == 1
            # Each tab got the same new session: no tab holds a token the others lost.
            new = cookie_values(self.context)
            assert new[REFRESH_COOKIE] != old_refresh
            for path, response in zip(paths, responses, strict=True):
                assert cookies_set(response) == new, path
            self.handed_out(responses[0])
        finally:
            for tab in tabs:
                tab.close()

    def log_out(self) -> None:
        before = logouts(self.emulator)
        self.page.goto(self.base + "/protected")
        signed_in_at(self.page, self.base)
        self.page.click("#logout")
        self.page.wait_for_url(self.base + "/")
        assert "Not signed in" in body_text(self.page)
        assert auth_cookies(self.context) == {}
        assert logouts(self.emulator) - before == 1
        self.page.goto(self.base + "/protected")
        redirected_to_login(self.page, self.base, "/protected")

    def cross_site_logout_refused(self, cross_site: CrossSiteServer) -> None:
        self.emulator.configure(jwt_ttl=LAST_JWT_TTL)
        response = sign_in(self.page, self.base)
        signed_in_at(self.page, self.base)
        self.handed_out(response)
        signed_in_cookies = cookie_values(self.context)
        target = self.base + "/logout"
        for host, cookies_sent in CROSS_ORIGINS:
            before = logouts(self.emulator)
            attack = cross_site.form_posting_to(target, host=host)
            with self.page.expect_response(target) as answer:
                self.page.goto(attack)
            response = answer.value
            sent = response.request.all_headers()
            assert sent.get("origin") == f"http://{host}:{cross_site.port}", sent
            # 127.0.0.1 on another port is the same site: SameSite=Lax lets the
            # cookies through and only the middleware's Origin check stops it.
            # localhost is another site: the browser withholds them as well.
            assert (REFRESH_COOKIE in sent.get("cookie", "")) is cookies_sent, (host, sent)
            assert response.status == 403, f"from {host}: {response.status}"
            self.page.wait_for_url(target)
            assert "FORBIDDEN_ORIGIN" in body_text(self.page)
            assert logouts(self.emulator) == before
            assert cookie_values(self.context) == signed_in_cookies, f"from {host}"
            self.page.goto(self.base + "/protected")
            signed_in_at(self.page, self.base)


def navigation_to(url: str) -> Callable[[Response], bool]:
    def matches(response: Response) -> bool:
        return response.url == url and response.request.is_navigation_request()

    return matches


def open_at_once(
    tabs: Sequence[Page], urls: Sequence[str], upstream: UpstreamGate
) -> list[Response]:
    """Start a navigation in every tab before any answers; their main responses.

    Crossmint's refresh answers are held at ``upstream`` until every tab's
    request has left the browser with its cookies: no answer, so no new
    cookie, can reach the browser before then, however slowly it gets to each
    tab. (The caller checks, from the headers as sent, that every request
    carried the old refresh secret.)
    """
    with (
        upstream.holding_refreshes(),
        watching_sent(tabs, urls, upstream.release) as watches,
    ):
        try:
            with contextlib.ExitStack() as stack:
                waiting = [
                    stack.enter_context(tab.expect_response(navigation_to(url)))
                    for tab, url in zip(tabs, urls, strict=True)
                ]
                for tab, url in zip(tabs, urls, strict=True):
                    # Returns at once: the navigation runs after this script.
                    tab.evaluate("url => { setTimeout(() => { location.href = url; }, 0); }", url)
                # Leaving waits for the responses: the last SentWatch releases the
                # held refresh on the way.
        except PlaywrightError as error:
            unsent = [watch.url for watch in watches if not watch.sent]
            raise AssertionError(f"requests never seen leaving the browser: {unsent}") from error
        responses = [info.value for info in waiting]
    for tab in tabs:
        # A response is in before its page commits: wait until the tab has left
        # about:blank and loaded. Where it landed (maybe the login page) is for
        # the caller to judge.
        tab.wait_for_url(left_blank)
    return responses


def left_blank(url: str) -> bool:
    return not url.startswith("about:")


# -- the test ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("app", APPS)
def test_sign_in_refresh_and_logout(
    app: App,
    crossmint_emulator: CrossmintEmulator,
    context: BrowserContext,
    cross_site: CrossSiteServer,
    artifacts: Path,
    request: pytest.FixtureRequest,
) -> None:
    crossmint_emulator.configure(jwt_ttl=JWT_TTL, reuse_window=0)
    screenshot = artifacts / f"{request.node.callspec.id}-signed-in.png"
    screenshot.unlink(missing_ok=True)
    with behind_gate(app, crossmint_emulator, context) as (stage, server):
        scenario = Scenario(stage, screenshot)
        try:
            scenario.run(cross_site)
        finally:
            # Shown by pytest when the test fails.
            print(f"--- server output ---\n{server.output()}")
            if screenshot.exists():
                print(f"screenshot of the signed-in page: {screenshot}")
                # What record_property does, minus its warning (an error here) under
                # --junitxml with the default xunit2 family.
                request.node.user_properties.append(("screenshot", str(screenshot)))
        output = server.output()
    assert screenshot.stat().st_size > 0
    # Two sign-ins and two refreshes: four sessions, eight distinct secrets. Refresh
    # secrets are random. JWTs are not (see LAST_JWT_TTL): each differs from the
    # ones before it because it was issued after they expired (steps 4 and 5) or
    # with another lifetime (step 7).
    assert len(scenario.sessions) == 4
    assert len({value for session in scenario.sessions for value in session.values()}) == 8
    # None of the secrets handed out is in the server's log.
    handed_out = scenario.secrets.union(*(session.values() for session in scenario.sessions))
    leaked = [secret[:8] + "..." for secret in handed_out if secret in output]
    assert not leaked, f"secrets in the server output: {leaked}"
    assert crossmint_emulator.api_key not in output
