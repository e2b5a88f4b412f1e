"""What both auth drivers share: the settings (listed once), the caches, and the
I/O-free half of the public API.

:class:`~crossmint_wsgi.CrossmintAuth` (``sync_auth``) and
:class:`~crossmint_wsgi.AsyncCrossmintAuth` (``async_auth``) differ only where
bytes move: ``httpx.Client`` and threads, or ``httpx.AsyncClient`` and anyio tasks.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from .answers import Answer, refresh_answer
from .api import (
    refresh_route_url,
)
from .caches import DEFAULT_BUDGET, CacheStats
from .config import Crossmint
from .cookies import AuthCookies, cookie_header_from, read_auth_cookies
from .errors import CrossmintAuthError, ErrorCode
from .flows import (
    AuthCore,
    Effect,
)
from .models import AuthMaterial, CookieOptions, Session
from .settings import coordinator_for, count, instance, key_set, seconds, text
from .tokens import TokenExpired, TokenInvalid, TokenRevoked
from .workers import warn_without_shared_coordinator, workers

__all__ = ["as_bytes", "httpx_timeout", "jwt_error", "tls_context"]

logger = logging.getLogger("crossmint_wsgi")

R = TypeVar("R")
CoordinatorT = TypeVar("CoordinatorT")
TransportT = TypeVar("TransportT")


def as_bytes(body: bytes | str | Mapping[str, Any] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(dict(body)).encode()


def jwt_error(error: TokenExpired | TokenInvalid) -> CrossmintAuthError:
    """What :meth:`verify_crossmint_jwt` raises for a token that failed."""
    if isinstance(error, TokenRevoked):
        return CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "the session was logged out")
    if isinstance(error, TokenExpired):
        return CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "the JWT has expired")
    return CrossmintAuthError(ErrorCode.INVALID_TOKEN, f"the JWT is not valid: {error}")


class _AuthBase(Generic[CoordinatorT, TransportT]):
    """Settings, caches and the I/O-free half of the public API.

    Its constructor lists every setting once, for both drivers. Each driver
    binds the coordinator and transport types it can use, so mypy refuses a
    misspelt setting or a wrong pairing, and so does the constructor at run
    time (:class:`~crossmint_wsgi.CrossmintConfigError` naming the setting).
    """

    #: Whether the driver awaits: its coordinator's methods must be async too.
    _ASYNC: ClassVar[bool]
    #: The httpx transport class the driver sends through, and how to make one.
    _TRANSPORT: ClassVar[tuple[type[Any], str]]

    def __init__(
        self,
        crossmint: Crossmint,
        *,
        cookie_options: CookieOptions | None = None,
        jwks: Mapping[str, Any] | None = None,
        jwks_ttl: float = 600.0,
        kid_refetch_interval: float = 30.0,
        token_cache_size: int = 4096,
        leeway: int = 5,
        issuer: str | None = None,
        timeout: float = 5.0,
        refresh_grace: float = 30.0,
        cache_budget: int = DEFAULT_BUDGET,
        refresh_failure_limit: int = 20,
        refresh_failure_window: float = 60.0,
        max_concurrent_refreshes: int = 64,
        refresh_route: str | None = None,
        coordinator: CoordinatorT | None = None,
        transport: TransportT | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        name = type(self).__name__
        self.crossmint = instance("crossmint", crossmint, Crossmint, "create_crossmint(api_key)")
        self.timeout = seconds("timeout", timeout, positive=True)
        self.refresh_grace = seconds("refresh_grace", refresh_grace)
        #: An app's own refresh route that refreshes are traded at instead of Crossmint.
        self.refresh_route = None if refresh_route is None else refresh_route_url(refresh_route)
        if coordinator is not None:
            coordinator_for(coordinator, asynchronous=self._ASYNC, auth=name)
        if transport is not None:
            transport_type, use = self._TRANSPORT
            instance("transport", transport, transport_type, f"{use} with {name}")
        self.core = AuthCore(
            crossmint,
            cookie_options=instance(
                "cookie_options",
                CookieOptions() if cookie_options is None else cookie_options,
                CookieOptions,
                "crossmint_wsgi.CookieOptions(secure=..., same_site=..., ...)",
            ),
            jwks=key_set("jwks", jwks),
            jwks_ttl=seconds("jwks_ttl", jwks_ttl),
            kid_refetch_interval=seconds("kid_refetch_interval", kid_refetch_interval),
            token_cache_size=count("token_cache_size", token_cache_size),
            leeway=count("leeway", leeway),
            issuer=text("issuer", issuer),
            clock=clock,
            cache_budget=count("cache_budget", cache_budget),
            refresh_failure_limit=count("refresh_failure_limit", refresh_failure_limit),
            refresh_failure_window=seconds("refresh_failure_window", refresh_failure_window),
            max_concurrent_refreshes=count("max_concurrent_refreshes", max_concurrent_refreshes),
        )
        self._listening_pid = -1
        self._init_driver(coordinator, transport)
        if coordinator is None:
            # Workers that each refresh on their own log users out: say so at start-up.
            warn_without_shared_coordinator(workers())

    def _init_driver(self, coordinator: CoordinatorT | None, transport: TransportT | None) -> None:
        """Set up what only this driver has (clients, flights, the coordinator)."""
        raise NotImplementedError

    def _listen(self) -> None:
        """Once in each process: a coordinator that reaches other processes
        (Redis) starts telling this one about their logouts."""
        pid = os.getpid()
        if self._listening_pid != pid:
            self._listening_pid = pid
            listen = getattr(getattr(self, "coordinator", None), "listen", None)
            if callable(listen):
                listen(self.core.revoked)

    @property
    def cookie_options(self) -> CookieOptions:
        return self.core.cookie_options

    def cache_stats(self) -> list[CacheStats]:
        """The figures of this auth's caches in this process: Crossmint's keys,
        verified tokens and, when the coordinator keeps one, refresh results."""
        found = [self.core.keys.stats(), self.core.tokens.stats()]
        stats = getattr(getattr(self, "coordinator", None), "stats", None)
        if callable(stats):
            found.append(stats())
        return found

    def read_cookies(
        self, source: Any = None, *, jwt: str | None = None, refresh_token: str | None = None
    ) -> AuthCookies:
        """The auth cookies of ``source``, with explicit values taking precedence."""
        cookies = cookie_header_from(source)
        found = read_auth_cookies(cookies, self.crossmint.project_id) if cookies else AuthCookies()
        if jwt is None and refresh_token is None:
            return found
        return AuthCookies(jwt or found.jwt, refresh_token or found.refresh, found.names)

    def session_cookies(self, material: AuthMaterial, *, secure: bool | None = None) -> list[str]:
        """``Set-Cookie`` header values that store ``material`` in the browser.

        Send one ``Set-Cookie`` header per value. Use it after
        :meth:`refresh`, or when :attr:`Session.refreshed` is true.

        :param secure: whether the request came over https; when ``None``,
            ``cookie_options.secure`` decides (default off).
        """
        return self.core.session_cookies(material, secure=bool(secure))

    def clear_cookies(self, *, secure: bool | None = None) -> list[str]:
        """``Set-Cookie`` header values that delete both auth cookies."""
        return self.core.clear_cookies(secure=bool(secure))

    def _cached_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before, without driving a flow: the hot path."""
        core = self.core
        try:
            return core.cached_claims(token, core.clock())
        except TokenExpired as error:
            raise jwt_error(error) from None

    @staticmethod
    def _claims_flow(core: AuthCore, token: str) -> Generator[Effect, Any, dict[str, Any]]:
        try:
            return (yield from core.verify(token))
        except (TokenExpired, TokenInvalid) as error:
            raise jwt_error(error) from None

    def _session_flow(self, cookies: AuthCookies) -> Generator[Effect, Any, Session]:
        resolution = yield from self.core.resolve(cookies)
        if resolution.session is None:
            assert resolution.error is not None
            raise resolution.error
        return resolution.session

    def _refresh_answer_flow(
        self,
        source: Any,
        body: bytes | str | Mapping[str, Any] | None,
        secure: bool,
    ) -> Generator[Effect, Any, Answer]:
        return (
            yield from refresh_answer(
                self.core, as_bytes(body), self.read_cookies(source), secure=secure
            )
        )


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes a noticeable fraction of a second: once per
    # process, not once per client (each worker, each event loop).
    return httpx.create_ssl_context()


def httpx_timeout(total: float) -> httpx.Timeout:
    return httpx.Timeout(total, connect=min(total, 2.0))
