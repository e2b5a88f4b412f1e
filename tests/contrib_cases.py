"""What the ASGI framework helpers' tests share (FastAPI, Quart, Starlette).

A helper's refusal must read exactly as the middleware's own refusal of a
protected path (:data:`GUARDED`): :func:`ours_and_reference` fetches both, and
the ``refusal`` fixture's :meth:`Refusal.check` compares them. The fixtures
(``refusal``, ``outage_visitor``) are imported by name into the test modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_asgi import auth_cookies_set, client, cookie_header, cookies_for
from test_readme import _snippet as snippet

from crossmint_wsgi import AsyncCrossmintAuth
from crossmint_wsgi.testing import CrossmintEmulator

#: The path each test app has the middleware itself protect: the reference answer.
GUARDED = "/guarded"


@dataclasses.dataclass(frozen=True)
class Case:
    """A visitor a required session refuses.

    :param kind: the kind of visitor (see ``test_asgi.cookies_for``).
    :param down: whether Crossmint is down when the visitor comes.
    :param status: the refusal's status.
    :param error: the refusal's ``error``.
    :param cookies: what the refusal does to the auth cookies.
    """

    kind: str
    down: bool
    status: int
    error: str
    cookies: str


def refusals(invalid: str = "bad-signature") -> list[Any]:
    """The cases of the ``refusal`` fixture, for ``parametrize(..., indirect=True)``.

    :param invalid: the kind of visitor whose JWT is invalid.
    """
    return [
        pytest.param(Case("none", False, 401, "MISSING_SESSION", "none"), id="anonymous"),
        pytest.param(
            Case("expired+rejected-refresh", False, 401, "SESSION_EXPIRED", "cleared"),
            id="expired",
        ),
        pytest.param(Case(invalid, False, 401, "INVALID_TOKEN", "cleared"), id="invalid"),
        pytest.param(
            Case("expired+good-refresh", True, 503, "UPSTREAM_UNAVAILABLE", "none"), id="down"
        ),
    ]


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A :class:`Case` set up: its visitor's request headers, Crossmint down if it says so."""

    case: Case
    headers: dict[str, str]

    def check(self, ours: httpx.Response, reference: httpx.Response) -> None:
        """``ours`` is the refusal ``reference`` is, and the one the case expects."""
        assert_same_refusal(ours, reference, self.case.status, self.case.error, self.case.cookies)


@pytest.fixture
def refusal(
    request: pytest.FixtureRequest,
    crossmint_emulator: CrossmintEmulator,
    take_down: Callable[[], None],
) -> Refusal:
    """The :class:`Case` ``request.param`` set up (see :func:`refusals`)."""
    case: Case = request.param
    headers = visitor(case.kind, crossmint_emulator)
    if case.down:
        take_down()
    return Refusal(case, headers)


@pytest.fixture
def outage_visitor(
    crossmint_emulator: CrossmintEmulator, take_down: Callable[[], None]
) -> dict[str, str]:
    """The headers of a visitor whose JWT expired, with Crossmint down: no refresh."""
    headers = visitor("expired+good-refresh", crossmint_emulator)
    take_down()
    return headers


def visitor(kind: str, emulator: CrossmintEmulator) -> dict[str, str]:
    """The request headers of a visitor of ``kind``, with cookies the emulator minted."""
    return cookie_header(cookies_for(kind, emulator))


async def fetch(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """``GET path`` from ``app``, in process."""
    async with client(app) as http:
        return await http.get(path, headers=headers)


async def ours_and_reference(
    app: Any, path: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """``GET path`` (the helper's answer) and ``GET`` :data:`GUARDED` (the middleware's)."""
    async with client(app) as http:
        return await http.get(path, headers=headers), await http.get(GUARDED, headers=headers)


def assert_same_refusal(
    ours: httpx.Response, reference: httpx.Response, status: int, error: str, cookies: str
) -> None:
    """``ours`` is the refusal ``reference`` is: status, JSON, headers and cookies."""
    assert ours.status_code == reference.status_code == status
    assert ours.json() == reference.json()
    assert set(ours.json()) == {"error", "message"}
    assert ours.json()["error"] == error
    for name in ("content-type", "cache-control", "retry-after"):
        assert ours.headers.get(name) == reference.headers.get(name), name
    assert ("retry-after" in ours.headers) is (status == 503)
    assert auth_cookies_set(ours) == auth_cookies_set(reference) == cookies


async def readme_visits(
    marker: str, path: str, auth: AsyncCrossmintAuth, emulator: CrossmintEmulator
) -> tuple[httpx.Response, httpx.Response]:
    """A signed-in and an anonymous ``GET path`` from the README snippet that contains ``marker``.

    The snippets after the FastAPI one continue it: ``auth`` comes from there.
    """
    namespace = {"__name__": "readme_example", "auth": auth}
    exec(compile(snippet(marker), "README.md", "exec"), namespace)
    headers = visitor("valid", emulator)
    async with client(namespace["app"]) as http:
        return await http.get(path, headers=headers), await http.get(path)
