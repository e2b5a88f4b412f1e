"""What the browser tests share: the example apps and their servers, named steps,
the auth cookies, and watching requests leave the browser.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Cookie, Page, Request, Response
from redis_server import redis_server
from support import Server, require_program, serve

from crossmint_wsgi.testing import CrossmintEmulator

from .upstream_gate import UpstreamGate

JWT_COOKIE = "crossmint-jwt"
REFRESH_COOKIE = "crossmint-refresh-token"


# -- the example apps and their servers ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class App:
    """An example app and the server command that runs it.

    :param command: the server's argv for a port.
    :param redis: whether the app runs with the Redis refresh coordinator:
        several worker processes must share refresh results (see the Flask case).
    """

    command: Callable[[int], list[str]]
    redis: bool = False


def _gunicorn_flask(port: int) -> list[str]:
    gunicorn = require_program("gunicorn")
    return [gunicorn, "--chdir", "examples", "-w", "2", "-b", f"127.0.0.1:{port}", "flask_app:app"]


def _uvicorn_raw_asgi(port: int) -> list[str]:
    uvicorn = require_program("uvicorn")
    where = ["--host", "127.0.0.1", "--port", str(port)]
    return [uvicorn, "--app-dir", "examples", "raw_asgi:app", *where]


APPS = [
    # Two gunicorn workers, each with its own in-process coordinator: when two
    # tabs carrying the same expired session land in different workers, both
    # would refresh the same single-use secret and the loser logs the user out.
    # The Redis coordinator lets the workers share one refresh.
    pytest.param(App(_gunicorn_flask, redis=True), id="flask-gunicorn"),
    pytest.param(App(_uvicorn_raw_asgi), id="raw-asgi-uvicorn"),
]


@contextlib.contextmanager
def app_server(app: App, env: Mapping[str, str]) -> Iterator[Server]:
    """The example app on a free port, with Redis when it needs one.

    A port is free when picked, not necessarily when the server binds it:
    :func:`support.serve` and :class:`redis_server.RedisServer` start again on
    another port when another process took it meanwhile.
    """
    with contextlib.ExitStack() as stack:
        full_env = dict(env)
        if app.redis:
            full_env["CROSSMINT_REDIS_URL"] = stack.enter_context(redis_server()).url
        yield stack.enter_context(serve(app.command, env=full_env))


@dataclasses.dataclass(frozen=True)
class Stage:
    """Where a scenario plays: a fresh browser context, the app at ``base``,
    which talks to ``emulator`` through ``upstream``."""

    context: BrowserContext
    base: str
    emulator: CrossmintEmulator
    upstream: UpstreamGate


@contextlib.contextmanager
def behind_gate(
    app: App, emulator: CrossmintEmulator, context: BrowserContext
) -> Iterator[tuple[Stage, Server]]:
    """The example app on a free port, talking to ``emulator`` through an :class:`UpstreamGate`."""
    with (
        UpstreamGate(emulator.url) as upstream,
        app_server(app, {"CROSSMINT_EMULATOR_URL": upstream.url}) as server,
    ):
        yield Stage(context, server.url, emulator, upstream), server


# -- the scenario's parts ------------------------------------------------------------------


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the scenario step in any failure raised inside it."""
    try:
        yield
    except AssertionError as error:
        raise AssertionError(f"step {name!r}: {error}") from error
    except Exception as error:
        # Playwright timeouts and the like: keep the type out, the step in.
        raise AssertionError(f"step {name!r}: {type(error).__name__}: {error}") from error


def run_steps(steps: Sequence[tuple[str, Callable[[], None]]]) -> None:
    """Run each ``(name, action)`` in turn, as a named :func:`step`."""
    for name, action in steps:
        with step(name):
            action()


def is_post(base: str, path: str) -> Callable[[Response], bool]:
    """Whether a response answers a ``POST`` to ``base + path``."""

    def matches(response: Response) -> bool:
        return response.url == base + path and response.request.method == "POST"

    return matches


def is_post_request(base: str, path: str) -> Callable[[Request], bool]:
    """Whether a request is a ``POST`` to ``base + path``."""

    def matches(request: Request) -> bool:
        return request.url == base + path and request.method == "POST"

    return matches


def auth_cookies(context: BrowserContext) -> dict[str, Cookie]:
    """The auth cookies the browser holds (expired ones are already gone)."""
    return {
        cookie["name"]: cookie
        for cookie in context.cookies()
        if cookie["name"] in (JWT_COOKIE, REFRESH_COOKIE)
    }


def cookie_values(context: BrowserContext) -> dict[str, str]:
    return {name: cookie["value"] for name, cookie in auth_cookies(context).items()}


class SentWatch:
    """Calls ``on_sent`` once ``tab``'s navigation to ``url`` has left the browser.

    "Left" means with its final headers, the Cookie header included. Playwright's
    ``request`` event is Chromium's ``Network.requestWillBeSent``, which comes
    before the network service has read the cookie jar for the request: a
    response landing in between still changes the cookies the request carries
    (seen under load). ``Network.requestWillBeSentExtraInfo`` carries the
    headers as sent (what ``Request.all_headers()`` reports), so once it is in,
    the request's cookies are settled. The two events come in either order.

    The tab's HTTP cache is off ("Disable cache" in DevTools): Chromium's cache
    lets one request per URL go to the network at a time, and a tab opening a
    URL another tab is already loading would wait for that tab's answer (and
    for the refresh this tab is meant to overlap). The tests drive Chromium
    only, so its DevTools protocol is at hand.
    """

    def __init__(
        self, tab: Page, url: str, on_sent: Callable[[], None], kind: str = "Document"
    ) -> None:
        self.url = url
        #: The resource type (DevTools ``Network.ResourceType``): ``Document`` for a
        #: navigation, ``Fetch`` for a script's ``fetch()``.
        self.kind = kind
        self.sent = False
        self._on_sent = on_sent
        self._navigations: set[str] = set()
        self._with_headers: set[str] = set()
        self._session = tab.context.new_cdp_session(tab)
        self._session.on("Network.requestWillBeSent", self._will_be_sent)
        self._session.on("Network.requestWillBeSentExtraInfo", self._headers_sent)
        self._session.send("Network.enable")
        self._session.send("Network.setCacheDisabled", {"cacheDisabled": True})

    def _will_be_sent(self, event: dict[str, Any]) -> None:
        if event["request"]["url"] == self.url and event.get("type") == self.kind:
            self._navigations.add(event["requestId"])
            self._check()

    def _headers_sent(self, event: dict[str, Any]) -> None:
        self._with_headers.add(event["requestId"])
        self._check()

    def _check(self) -> None:
        if not self.sent and self._navigations & self._with_headers:
            self.sent = True
            self._on_sent()

    def close(self) -> None:
        self._session.detach()


@contextlib.contextmanager
def watching_sent(
    pages: Sequence[Page], urls: Sequence[str], all_sent: Callable[[], None], kind: str = "Document"
) -> Iterator[list[SentWatch]]:
    """A :class:`SentWatch` per page and URL; ``all_sent`` is called once every request has left."""
    pending = set(range(len(pages)))

    def sent(index: int) -> None:
        pending.discard(index)
        if not pending:
            all_sent()

    with contextlib.ExitStack() as watching:
        watches = []
        for index, (page, url) in enumerate(zip(pages, urls, strict=True)):
            watch = SentWatch(page, url, functools.partial(sent, index), kind)
            watching.callback(watch.close)
            watches.append(watch)
        yield watches


class BrowserScenario:
    """A scenario on a :class:`Stage`, in a page of its own. Subclasses set the
    context up (listeners, init scripts) before this opens the page."""

    def __init__(self, stage: Stage) -> None:
        self.context = stage.context
        self.base = stage.base
        self.emulator = stage.emulator
        self.upstream = stage.upstream
        self.page = stage.context.new_page()

    def cookies(self) -> dict[str, str]:
        """The auth cookies the browser holds, by name."""
        return cookie_values(self.context)
