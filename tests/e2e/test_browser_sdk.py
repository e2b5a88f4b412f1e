"""Crossmint's own browser auth client, unchanged, against the examples' routes, in chromium.

What runs: ``@crossmint/client-sdk-auth`` (pinned with esbuild in
``tests/js/browser/package.json`` and its lockfile) is installed with ``npm ci``
into ``.cache/browser-sdk/`` (gitignored) and bundled by esbuild into one IIFE
(``window.CrossmintSDK``). Each page of the app's origin gets the bundle and
``tests/js/browser/harness.js`` as init scripts: ``CrossmintAuth.from(crossmint,
{refreshRoute: "/refresh", logoutRoute: "/logout", callbacks})``, as
``CrossmintAuthProvider`` sets it up. The examples run for real (Flask under
gunicorn with two workers and Redis, the raw ASGI app under uvicorn) against the
emulator in this process.

What is patched, and why: the SDK checks the API key's Ed25519 signature against
Crossmint's signer public keys bundled in it (see ``tests/test_emulator_js_sdk.py``);
the emulator signs its own key. The development/staging constant
(``3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5``) is replaced in the built bundle
by the emulator's signing key, and the build fails unless it is found exactly once.
:func:`test_the_untouched_bundle_refuses_the_emulator_key` checks that the bundle
as built refuses the emulator's key.

Time: the SDK refreshes 120 s before ``exp`` and schedules nothing for a JWT living
120 s or less, so JWTs live 135 s here. Rather than wait 15 s, the browser's clock
(Playwright's clock API: ``Date`` and ``requestAnimationFrame``, which the SDK's
schedule polls) is moved forward to the scheduled moment; the servers and the
emulator keep real time, so every JWT is still valid for them. Every wait is on
an event (a response, a callback of the SDK), never on time.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import httpx
import pytest
from npm import npm_installed, run
from playwright.sync_api import Browser, BrowserContext, Page, Request, Response
from support import ROOT, require_program

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
    is_post,
    is_post_request,
    run_steps,
    watching_sent,
)

pytestmark = pytest.mark.slow

JS_DIR = ROOT / "tests" / "js" / "browser"
SDK_DIR = ROOT / ".cache" / "browser-sdk"
#: Crossmint's public key for development and staging API keys, as the SDK bundles it.
CROSSMINT_DEVELOPMENT_SIGNER = "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5"
#: Above the SDK's 120 s margin, so it schedules a refresh 15 s after each one.
JWT_TTL = 135
TABS = 3
#: Seconds a recovered Crossmint may take to be asked again (a safety net: Redis
#: keeps an outage 1 s for the requests that share it).
RECOVERY = 20.0


@pytest.fixture(scope="module")
def bundle() -> str:
    """The SDK bundled as npm installed it: ``npm ci`` and esbuild, redone when the lock changes."""
    out = SDK_DIR / "crossmint-browser-sdk.js"

    def build() -> None:
        esbuild = str(SDK_DIR / "node_modules" / ".bin" / "esbuild")
        run(
            [
                require_program("node"),
                esbuild,
                "entry.mjs",
                "--bundle",
                "--format=iife",
                "--global-name=CrossmintSDK",
                "--platform=browser",
                "--log-level=warning",
                f"--outfile={out}",
            ],
            SDK_DIR,
        )

    npm_installed(
        JS_DIR,
        SDK_DIR,
        copied=("package.json", "package-lock.json", "entry.mjs"),
        stamped=("package-lock.json", "entry.mjs"),
        stamp="built-from.lock",
        product=out,
        build=build,
    )
    return out.read_text()


def trusting(bundle: str, signing_key: str) -> str:
    """``bundle`` with the emulator's signing key in place of Crossmint's development signer.

    :raises AssertionError: the constant is not in the bundle exactly once
        (an SDK that moved or duplicated it must fail here, not pass by accident).
    """
    found = bundle.count(CROSSMINT_DEVELOPMENT_SIGNER)
    assert found == 1, f"Crossmint's development signer is in the bundle {found} times, not once"
    return bundle.replace(CROSSMINT_DEVELOPMENT_SIGNER, signing_key)


def _key_check(browser: Browser, script: str, api_key: str) -> Any:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content("<!doctype html><title>key check</title>")
        page.add_script_tag(content=script)
        return page.evaluate(
            """apiKey => {
                try { CrossmintSDK.createCrossmint({apiKey}); return "accepted"; }
                catch (error) { return String(error.message); }
            }""",
            api_key,
        )
    finally:
        context.close()


def test_the_untouched_bundle_refuses_the_emulator_key(
    bundle: str, browser: Browser, crossmint_emulator: CrossmintEmulator
) -> None:
    assert crossmint_emulator.signing_key is not None
    untouched = _key_check(browser, bundle, crossmint_emulator.api_key)
    assert "Failed to validate signature" in untouched
    patched = trusting(bundle, crossmint_emulator.signing_key)
    assert _key_check(browser, patched, crossmint_emulator.api_key) == "accepted"


# -- the scenario --------------------------------------------------------------------------


def set_cookie_names(response: Response) -> list[str]:
    names = []
    for header in response.headers_array():
        if header["name"].lower() == "set-cookie":
            names.extend(line.split("=", 1)[0] for line in header["value"].split("\n"))
    return names


class Scenario(BrowserScenario):
    """Issue 13's steps with the real SDK, on one running app, in one fresh context."""

    def __init__(self, stage: Stage, script: str) -> None:
        context, base = stage.context, stage.base
        config = {"origin": base, "apiKey": stage.emulator.api_key}
        context.add_init_script(script=f"window.__crossmintTest = {json.dumps(config)};")
        # Init scripts run in a function scope: publish the bundle's global by hand.
        context.add_init_script(script=script + "\nwindow.CrossmintSDK = CrossmintSDK;\n")
        context.add_init_script(path=str(JS_DIR / "harness.js"))
        context.clock.install()
        #: Every POST to /logout any page made: the SDK logs out on any failed refresh.
        self.logout_posts = 0
        context.on("request", self._count_logouts)
        super().__init__(stage)

    def _count_logouts(self, request: Request) -> None:
        if is_post_request(self.base, "/logout")(request):
            self.logout_posts += 1

    def sdk(self, page: Page | None = None) -> dict[str, Any]:
        state: dict[str, Any] = (page or self.page).evaluate("window.__sdk")
        return state

    def open(self, page: Page, path: str) -> Response:
        """Load ``path``; the SDK's page-load refresh is the answer returned."""
        with page.expect_response(is_post(self.base, "/refresh")) as refresh:
            page.goto(self.base + path)
        page.wait_for_function("window.__sdk.refreshes.length + window.__sdk.errors.length > 0")
        return refresh.value

    def scheduled_refresh(self, pages: list[Page]) -> list[Response]:
        """Move the browser's clock to the moment the SDK scheduled, and catch its refreshes.

        The refresh calls to Crossmint are held at the upstream gate until every
        page's request has left and the browser's clock is back on real time:
        the SDK schedules its next refresh from the answer by ``Date.now()``,
        which must then agree with the servers' clock that issued the JWT.
        """
        exp = max(self.jwt_exp(page) for page in pages)
        counts = [len(self.sdk(page)["refreshes"]) for page in pages]
        with contextlib.ExitStack() as answers:
            waiting = [
                answers.enter_context(page.expect_response(is_post(self.base, "/refresh")))
                for page in pages
            ]
            # Released once every page's fetch has left with its cookies: the
            # request event comes before Chromium reads the cookie jar, and an
            # answer landing in between would change the cookies a fetch carries.
            left = threading.Event()
            urls = [self.base + "/refresh"] * len(pages)
            with (
                self.upstream.holding_refreshes(),
                watching_sent(pages, urls, left.set, "Fetch"),
            ):
                with contextlib.ExitStack() as requested:
                    for page in pages:
                        requested.enter_context(
                            page.expect_request(is_post_request(self.base, "/refresh"))
                        )
                    now_ms = self.page.evaluate("Date.now()")
                    self.context.clock.fast_forward(int(exp * 1000 - 120_000 - now_ms) + 1000)
                # DevTools events are dispatched while Playwright is waited on: pump it.
                deadline = time.monotonic() + 30
                while not left.is_set():
                    assert time.monotonic() < deadline, "a tab's refresh never left"
                    self.page.wait_for_timeout(20)
                self.context.clock.set_system_time(time.time())
                self.upstream.release()
        for page, count in zip(pages, counts, strict=True):
            page.wait_for_function(
                "n => window.__sdk.refreshes.length + window.__sdk.errors.length > n", arg=count
            )
        return [info.value for info in waiting]

    def jwt_exp(self, page: Page) -> int:
        """The ``exp`` of the JWT the SDK last received in ``page``."""
        exp: int = page.evaluate(
            """() => {
                const jwt = window.__sdk.refreshes.at(-1).jwt;
                const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
                return JSON.parse(atob(payload)).exp;
            }"""
        )
        return exp

    def api_me(self, page: Page | None = None) -> int:
        status: int = (page or self.page).evaluate("async () => (await fetch('/api/me')).status")
        return status

    def signed_in(self, page: Page | None = None) -> None:
        page = page or self.page
        state = self.sdk(page)
        assert state["errors"] == [], state["errors"]
        assert state["logouts"] == 0
        assert self.api_me(page) == 200

    # -- steps --------------------------------------------------------------------------

    def run(self) -> None:
        run_steps(
            [
                ("1 signed-out visitor: 401, then the SDK posts /logout", self.signed_out_visit),
                ("2 sign in with a one-time secret", self.sign_in),
                ("3 the SDK's scheduled refresh", self.scheduled),
                ("4 three tabs, their page-load and scheduled refreshes at once", self.tabs),
                ("5 an outage across a scheduled refresh, and recovery", self.outage),
                ("6 logout, revoked upstream", self.logout),
            ]
        )

    def signed_out_visit(self) -> None:
        answer = self.open(self.page, "/")
        assert answer.status == 401
        assert answer.json()["error"] == "MISSING_SESSION"
        self.page.wait_for_function("window.__sdk.logouts > 0")
        assert self.cookies() == {}

    def sign_in(self) -> None:
        before = self.emulator.requests["refresh"]
        secret = self.page.evaluate(
            "async () => (await (await fetch('/demo/one-time-secret', {method: 'POST'})).json())"
            ".secret"
        )
        with self.page.expect_response(is_post(self.base, "/refresh")) as refresh:
            jwt = self.page.evaluate(
                "async s => (await window.__auth.handleRefreshAuthMaterial(s))?.jwt ?? null", secret
            )
        answer = refresh.value
        assert answer.status == 200
        assert jwt is not None
        assert self.emulator.requests["refresh"] - before == 1
        body = answer.json()
        # The refresh cookie is HttpOnly: its secret is not in what scripts can read.
        assert "secret" not in body["refreshToken"]
        assert body["user"]["id"] == DEMO_USER_ID
        cookies = self.cookies()
        assert cookies[JWT_COOKIE] == jwt
        assert REFRESH_COOKIE not in self.page.evaluate("document.cookie")
        self.page.goto(self.base + "/protected")
        assert DEMO_USER_ID in self.page.inner_text("body")
        self.page.wait_for_function("window.__sdk.refreshes.length > 0")
        self.signed_in()

    def scheduled(self) -> None:
        old = self.cookies()
        (answer,) = self.scheduled_refresh([self.page])
        assert answer.status == 200
        new = self.cookies()
        assert new[REFRESH_COOKIE] != old[REFRESH_COOKIE]
        assert answer.json()["jwt"] == new[JWT_COOKIE]
        self.signed_in()
        self.page.reload()
        assert DEMO_USER_ID in self.page.inner_text("body")

    def tabs(self) -> None:
        tabs = [self.context.new_page() for _ in range(TABS)]
        try:
            with contextlib.ExitStack() as stack:
                loads = [
                    stack.enter_context(tab.expect_response(is_post(self.base, "/refresh")))
                    for tab in tabs
                ]
                for tab in tabs:
                    tab.evaluate(
                        "url => { setTimeout(() => { location.href = url; }, 0); }",
                        self.base + "/protected",
                    )
            assert [info.value.status for info in loads] == [200] * TABS
            for tab in tabs:
                tab.wait_for_function("window.__sdk && window.__sdk.refreshes.length > 0")
                self.signed_in(tab)
            answers = self.scheduled_refresh(tabs)
            assert [answer.status for answer in answers] == [200] * TABS
            for tab in tabs:
                self.signed_in(tab)
            assert self.logout_posts == 1  # the signed-out visit's only
        finally:
            for tab in tabs:
                tab.close()

    def outage(self) -> None:
        self.page.reload()
        self.page.wait_for_function("window.__sdk.refreshes.length > 0")
        held = self.cookies()
        before = self.emulator.requests["refresh"]
        self.emulator.fail_next(1, status=503, endpoint="refresh")
        (answer,) = self.scheduled_refresh([self.page])
        # Crossmint failed the refresh: the JWT the page holds is answered as it is.
        assert self.emulator.requests["refresh"] - before == 1
        assert answer.status == 200
        assert answer.json()["jwt"] == held[JWT_COOKIE]
        assert [n for n in set_cookie_names(answer) if n.startswith("crossmint-")] == []
        assert self.cookies() == held
        self.signed_in()
        assert self.logout_posts == 1
        # Crossmint is back: a page load refreshes the session for real. With the
        # Redis coordinator the outage is shared for its unavailable_ttl (1 s):
        # until then a page load is kept through it like the scheduled refresh.
        deadline = time.monotonic() + RECOVERY
        while True:
            answer = self.open(self.page, "/protected")
            assert answer.status == 200
            self.signed_in()
            if self.cookies()[REFRESH_COOKIE] != held[REFRESH_COOKIE]:
                break
            assert answer.json()["jwt"] == held[JWT_COOKIE]
            assert time.monotonic() < deadline, "the session was not refreshed after the outage"
        assert "secret" not in answer.json()["refreshToken"]

    def logout(self) -> None:
        secret = self.cookies()[REFRESH_COOKIE]
        before = self.emulator.requests["logout"]
        with self.page.expect_response(is_post(self.base, "/logout")) as answer:
            self.page.evaluate("() => window.__auth.logout()")
        assert answer.value.status == 200
        assert self.emulator.requests["logout"] - before == 1
        assert self.cookies() == {}
        # Revoked at Crossmint: the secret refreshes nothing any more.
        refused = httpx.post(
            self.base + "/refresh", json={}, cookies={REFRESH_COOKIE: secret}, timeout=10
        )
        assert refused.status_code == 401


@pytest.mark.parametrize("app", APPS)
def test_the_real_browser_sdk_against_the_examples(
    app: App, bundle: str, crossmint_emulator: CrossmintEmulator, context: BrowserContext
) -> None:
    assert crossmint_emulator.signing_key is not None
    crossmint_emulator.configure(jwt_ttl=JWT_TTL, reuse_window=0)
    script = trusting(bundle, crossmint_emulator.signing_key)
    with behind_gate(app, crossmint_emulator, context) as (stage, server):
        try:
            Scenario(stage, script).run()
        finally:
            print(f"--- server output ---\n{server.output()}")


def test_same_site_strict_bounces_a_cross_site_arrival_to_login(
    bundle: str, crossmint_emulator: CrossmintEmulator, context: BrowserContext
) -> None:
    """What ``CookieOptions(same_site="Strict")`` does to the login redirect, in chromium.

    The auth cookies are held as ``SameSite=Strict`` (what the server writes with
    that option). A signed-in user arriving from another site (here
    ``localhost``, another site than ``127.0.0.1``) carries no cookie: the
    protected page redirects to the login page. There the SDK's page-load
    refresh, a same-origin ``fetch``, does carry them, and the next same-site
    navigation is signed in.
    """
    assert crossmint_emulator.signing_key is not None
    crossmint_emulator.configure(jwt_ttl=JWT_TTL)
    script = trusting(bundle, crossmint_emulator.signing_key)
    app = next(param.values[0] for param in APPS if param.id == "raw-asgi-uvicorn")
    with behind_gate(app, crossmint_emulator, context) as (stage, server):
        scenario = Scenario(stage, script)
        scenario.signed_out_visit()
        scenario.sign_in()
        strict = [{**cookie, "sameSite": "Strict"} for cookie in auth_cookies(context).values()]
        context.clear_cookies()
        context.add_cookies(strict)  # type: ignore[arg-type]
        page = scenario.page
        other_site = server.url.replace("127.0.0.1", "localhost") + "/"
        page.goto(other_site)
        with page.expect_response(is_post(server.url, "/refresh")) as refresh:
            page.evaluate("url => { location.href = url; }", server.url + "/protected")
            page.wait_for_url(lambda url: url.startswith(server.url + "/login"))
        assert "next=/protected" in page.url
        # The SDK's refresh from the login page is same-site: the session is there.
        assert refresh.value.status == 200
        page.evaluate("() => { location.href = '/protected'; }")
        page.wait_for_url(server.url + "/protected")
        assert DEMO_USER_ID in page.inner_text("body")
