"""What both auth drivers share: the settings (listed once), the caches, and the
I/O-free half of the public API.

:class:`~crossmint_wsgi.CrossmintAuth` (``sync_auth``) and
:class:`~crossmint_wsgi.AsyncCrossmintAuth` (``async_auth``) differ only where
bytes move: ``httpx.Client`` and threads, or ``httpx.AsyncClient`` and anyio tasks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import ssl
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import httpx

from .answers import Answer, refresh_answer
from .api import (
    ApiRequest,
    check_key_set_answer,
    jwks_request,
    logout_request,
    parse_jwks_answer,
    parse_logout_answer,
    parse_user_answer,
    refresh_call,
    refresh_route_url,
    user_request,
)
from .caches import CacheStats
from .config import Crossmint
from .cookies import AuthCookies, cookie_header_from, read_auth_cookies
from .effects import (
    Effect,
    FetchKeys,
    Logout,
    ReadBody,
    Refresh,
    Revoke,
    RevokeToken,
)
from .errors import CrossmintAuthError, ErrorCode
from .flows import AuthCore
from .host_coordination import AsyncHostCoordinator, HostCoordinator, HostSettings
from .host_store import open_host_store
from .models import AuthMaterial, CookieOptions, Session, User
from .settings import coordinator_for, instance, seconds
from .tokens import TokenExpired, TokenInvalid, TokenRevoked
from .workers import warn_without_shared_coordinator, workers

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    class CoreOptions(TypedDict, total=False):
        """:class:`~crossmint_wsgi.flows.AuthCore`'s settings (its signature has the
        defaults and checks), as the auth classes take them."""

        cookie_options: CookieOptions | None
        jwks: Mapping[str, Any] | None
        jwks_ttl: float
        kid_refetch_interval: float
        token_cache_size: int | None
        leeway: int
        issuer: str | None
        clock: Callable[[], float]
        cache_budget: int
        refresh_failure_limit: int
        refresh_failure_window: float
        max_concurrent_refreshes: int


__all__ = ["Call", "as_bytes", "httpx_timeout", "jwt_error", "merged", "tls_context"]

logger = logging.getLogger("crossmint_wsgi")

R = TypeVar("R")
CoordinatorT = TypeVar("CoordinatorT")
TransportT = TypeVar("TransportT")


@dataclasses.dataclass(frozen=True)
class Call(Generic[R]):
    """One call to Crossmint (or an app's refresh route), with no I/O: the
    request to send and how to read the answer (status, body, ``Set-Cookie`` values)."""

    request: ApiRequest
    read: Callable[[int, bytes, list[str]], R]


def merged(first: list[str] | None, second: list[str] | None) -> list[str] | None:
    """Two coordinators' successor secrets, each once, in order (``None`` when neither had any)."""
    if first is None and second is None:
        return None
    return list(dict.fromkeys([*(first or []), *(second or [])]))


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
    #: The host coordinator the driver can use.
    _HOST: ClassVar[type[HostCoordinator] | type[AsyncHostCoordinator]]

    def __init__(
        self,
        crossmint: Crossmint,
        *,
        timeout: float = 5.0,
        refresh_grace: float = 30.0,
        refresh_route: str | None = None,
        coordinator: CoordinatorT | None = None,
        transport: TransportT | None = None,
        host_store: str | os.PathLike[str] | bool = True,
        **settings: Unpack[CoreOptions],
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
        # The core's settings are its own: it checks them, and its signature has the defaults.
        self.core = AuthCore(crossmint, **settings)
        # A route of the app's is not Crossmint: what it returns is verified like a cookie.
        self.core.verify_refreshed = self.refresh_route is not None
        self._listening_pid = -1
        store = open_host_store(self.crossmint, host_store, self.refresh_route or "")
        #: What the worker processes of this host share (refreshes, logouts,
        #: the key set), or ``None`` when ``host_store=False`` or it cannot be created.
        self.host: Any = None
        if store is not None:
            self.host = self._HOST(
                store,
                HostSettings.for_timeout(self.timeout, self.refresh_grace),
                budget=self.core.refresh_budget,
            )
        self._init_driver(coordinator if coordinator is not None else self.host, transport)
        if coordinator is None and self.host is None:
            # Workers that each refresh on their own log users out: say so at start-up.
            warn_without_shared_coordinator(workers())

    def _init_driver(self, coordinator: CoordinatorT | None, transport: TransportT | None) -> None:
        """Set up what only this driver has (clients, flights, the coordinator)."""
        raise NotImplementedError

    @property
    def coordinator(self) -> CoordinatorT:
        """Who trades refresh secrets: the ``coordinator`` given, or this process's own."""
        raise NotImplementedError

    # -- what the driver sends: blocking, or awaited ----------------------------------------

    def _call(self, call: Call[Any]) -> Any:
        """Make ``call`` and read its answer."""
        raise NotImplementedError

    def _fetch_keys(self, host_only: bool) -> Any:
        """Fetch Crossmint's key set, one fetch at a time in this process (see
        :class:`~crossmint_wsgi.effects.FetchKeys`)."""
        raise NotImplementedError

    def _refresh_upstream(self, effect: Refresh) -> Any:
        """Make the refresh call of ``effect``, if :meth:`AuthCore.upstream_call` allows it."""
        raise NotImplementedError

    # -- the calls and the effects, written once for both drivers ---------------------------

    def _keys_call(self) -> Call[dict[str, Any]]:
        request = jwks_request(self.crossmint)
        return Call(
            request, lambda status, body, _: parse_jwks_answer(status, body, url=request.url)
        )

    def _check_call(self) -> Call[dict[str, Any]]:
        request = jwks_request(self.crossmint)
        return Call(request, lambda status, body, _: check_key_set_answer(request, status, body))

    def _refresh_call(self, secret: str) -> Call[AuthMaterial]:
        return Call(*refresh_call(self.crossmint, secret, self.refresh_route))

    def _logout_call(self, secret: str) -> Call[None]:
        # A dead secret is done too; anything else says the secret may still be alive.
        return Call(
            logout_request(self.crossmint, secret),
            lambda status, body, _: parse_logout_answer(status, body),
        )

    def _user_call(self, user_id: str) -> Call[User]:
        return Call(
            user_request(self.crossmint, user_id),
            lambda status, body, _: parse_user_answer(status, body),
        )

    def _performer(self, effect: Effect, read_body: Callable[[int], Any]) -> Callable[[], Any]:
        """What performs ``effect``: the blocking driver calls it, the async one
        awaits the call. A failure is a :class:`CrossmintAuthError` raised."""
        if isinstance(effect, FetchKeys):
            return functools.partial(self._fetch_keys, effect.host_only)
        if isinstance(effect, ReadBody):
            return functools.partial(read_body, effect.limit)

        if isinstance(effect, Logout):
            return functools.partial(self._call, self._logout_call(effect.secret))
        coordinator: Any = self.coordinator
        # A coordinator of its own (Redis) reaches other hosts; the host store
        # stays beneath it, for this host's workers when Redis does not answer.
        host: Any = None if self.host is coordinator else self.host
        if isinstance(effect, Refresh):
            perform: Callable[[], Any] = functools.partial(self._refresh_upstream, effect)
            if host is not None:
                # The trade itself, once per host: what Redis falls back to is this.
                perform = functools.partial(host.trade, effect.secret, perform)
            return functools.partial(coordinator.refresh, effect.secret, perform)
        if isinstance(effect, Revoke):
            if host is None:
                return functools.partial(coordinator.revoke, effect.secret)
            return self._in_turn(host.revoke, coordinator.revoke, effect.secret)
        if isinstance(effect, RevokeToken):
            if host is None:
                return functools.partial(coordinator.revoke_token, effect.digest, effect.exp)
            return self._in_turn(
                host.revoke_token, coordinator.revoke_token, effect.digest, effect.exp
            )
        raise TypeError(f"unknown effect {effect!r}")

    def _in_turn(
        self, first: Callable[..., Any], second: Callable[..., Any], *args: Any
    ) -> Callable[[], Any]:
        """Call ``first(*args)``, then ``second(*args)``; their lists of successor
        secrets merged, each once (``None`` when they return none)."""
        raise NotImplementedError

    def _listen(self) -> None:
        """Once in each process: a coordinator that reaches other processes
        (Redis) starts telling this one about their logouts."""
        pid = os.getpid()
        if self._listening_pid != pid:
            self._listening_pid = pid
            coordinator = getattr(self, "coordinator", None)
            for each in dict.fromkeys([coordinator, self.host]):
                listen = getattr(each, "listen", None)
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
        return found.given(jwt, refresh_token)

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
