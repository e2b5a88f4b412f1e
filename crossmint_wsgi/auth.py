"""CrossmintAuth and AsyncCrossmintAuth: the drivers of the sans-IO flows.

Everything both share (settings, caches, cookie values, the flows they run)
lives in :class:`_AuthBase`. The two classes differ only where bytes move:
``httpx.Client`` and threads, or ``httpx.AsyncClient`` and anyio tasks.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import anyio
import anyio.lowlevel
import httpx

from .answers import Answer, refresh_answer
from .api import (
    ApiRequest,
    check_key_set_answer,
    jwks_request,
    logout_request,
    parse_jwks_answer,
    parse_user_answer,
    refresh_call,
    refresh_route_url,
    unreachable,
    user_request,
)
from .caches import DEFAULT_BUDGET, CacheStats
from .config import Crossmint
from .cookies import AuthCookies, cookie_header_from, read_auth_cookies
from .coordination import (
    AsyncLocalCoordinator,
    AsyncRefreshCoordinator,
    AsyncSingleFlight,
    LocalCoordinator,
    RefreshCoordinator,
    SingleFlight,
)
from .errors import CrossmintAuthError, ErrorCode
from .flows import (
    AuthCore,
    Effect,
    FetchKeys,
    Logout,
    ReadBody,
    Refresh,
    Revoke,
    RevokeToken,
    ano_body,
    no_body,
)
from .models import AuthMaterial, CookieOptions, Session, User
from .settings import coordinator_for, count, instance, key_set, seconds, text
from .tokens import TokenExpired, TokenInvalid, TokenRevoked
from .workers import warn_without_shared_coordinator, workers

__all__ = ["AsyncCrossmintAuth", "CrossmintAuth"]

logger = logging.getLogger("crossmint_wsgi")

R = TypeVar("R")
CoordinatorT = TypeVar("CoordinatorT")
TransportT = TypeVar("TransportT")


def _as_bytes(body: bytes | str | Mapping[str, Any] | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(dict(body)).encode()


def _jwt_error(error: TokenExpired | TokenInvalid) -> CrossmintAuthError:
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
        max_concurrent_refreshes: int = 16,
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
            raise _jwt_error(error) from None

    @staticmethod
    def _claims_flow(core: AuthCore, token: str) -> Generator[Effect, Any, dict[str, Any]]:
        try:
            return (yield from core.verify(token))
        except (TokenExpired, TokenInvalid) as error:
            raise _jwt_error(error) from None

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
                self.core, _as_bytes(body), self.read_cookies(source), secure=secure
            )
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes a noticeable fraction of a second: once per
    # process, not once per client (each worker, each event loop).
    return httpx.create_ssl_context()


def _httpx_timeout(total: float) -> httpx.Timeout:
    return httpx.Timeout(total, connect=min(total, 2.0))


class CrossmintAuth(_AuthBase[RefreshCoordinator, httpx.BaseTransport]):
    """Crossmint sessions for blocking code: WSGI apps, scripts, threads.

    One instance serves a whole process and may be created before a server
    forks: its HTTP connections are opened lazily, per process.

    :param crossmint: the config from :func:`~crossmint_wsgi.create_crossmint`.
    :param cookie_options: how the auth cookies are written.
    :param jwks: a JWK Set to verify with instead of fetching Crossmint's.
    :param jwks_ttl: seconds the fetched key set is kept (default 10 minutes).
    :param kid_refetch_interval: an unknown ``kid`` refetches the key set at
        most once per this many seconds.
    :param token_cache_size: how many verified JWTs to remember.
    :param leeway: seconds of clock skew allowed on ``exp``, ``nbf``, ``iat``.
    :param issuer: the required ``iss``; unchecked when ``None``.
    :param timeout: seconds a Crossmint call may take in total.
    :param refresh_grace: seconds a refresh result is served to requests
        still carrying the old refresh secret.
    :param coordinator: decides who refreshes a secret; by default
        in-process single-flight plus a grace cache
        (:class:`~crossmint_wsgi.coordination.LocalCoordinator`).
    :param cache_budget: the bytes this auth's caches may hold together
        (default 16 MiB: a quarter verified tokens, a quarter refresh
        results, half the middlewares' recent sessions).
    :param refresh_failure_limit: distinct refresh secrets from one client
        address that Crossmint may refuse within ``refresh_failure_window``
        seconds; past that the address's unknown secrets are answered
        ``UPSTREAM_UNAVAILABLE`` without calling Crossmint until the window
        has passed. ``0`` turns the bound off.
    :param refresh_failure_window: seconds, see ``refresh_failure_limit``.
    :param max_concurrent_refreshes: refresh calls to Crossmint in flight at
        once in this process; beyond it a request is answered
        ``UPSTREAM_UNAVAILABLE`` at once. ``0`` means no bound.
    :param refresh_route: the absolute URL of an app's own refresh route (the
        JS SDK's ``refreshRoute``, e.g. one service holding the server key for
        several apps): refreshes POST ``{"refresh": secret}`` there instead of
        calling Crossmint, with the same coordination, caching and outcomes
        (a 401 is ``SESSION_EXPIRED``, anything else that is no new session
        ``UPSTREAM_UNAVAILABLE``). The API key is never sent there.
    :param transport: an ``httpx`` transport, for tests.
    :param clock: the current time in seconds, for tests.
    :raises CrossmintConfigError: a setting is wrong (its ``setting``
        attribute names it), or the coordinator or transport is the async
        kind (the message names the class to use).
    """

    _ASYNC = False
    _TRANSPORT = (httpx.BaseTransport, "httpx.HTTPTransport(...) or httpx.MockTransport(...)")

    def _init_driver(
        self, coordinator: RefreshCoordinator | None, transport: httpx.BaseTransport | None
    ) -> None:
        self._coordinator = coordinator
        self._transport = transport
        self._pid = -1
        self._client: httpx.Client | None = None
        self._keys_flight: SingleFlight[dict[str, Any]] = SingleFlight()
        self._local: LocalCoordinator | None = None

    @property
    def coordinator(self) -> RefreshCoordinator:
        self._own_process()
        if self._coordinator is not None:
            return self._coordinator
        assert self._local is not None
        return self._local

    def _own_process(self) -> httpx.Client:
        # After a fork, nothing of the parent's connections or locks is reused.
        if self._pid != os.getpid() or self._client is None:
            self._pid = os.getpid()
            self._client = httpx.Client(
                timeout=_httpx_timeout(self.timeout),
                transport=self._transport,
                verify=_tls_context(),
            )
            self._keys_flight = SingleFlight()
            self._local = LocalCoordinator(self.refresh_grace, budget=self.core.cache_budget // 4)
        return self._client

    def close(self) -> None:
        """Close this process's HTTP connections, and the coordinator's (its
        Redis connections and logout listener), if it has a ``close()``."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
        close = getattr(self._coordinator, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> CrossmintAuth:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check(self) -> None:
        """Fetch Crossmint's key set once, so a wrong ``base_url`` stops start-up.

        Call it once before serving (the gunicorn factory does). It tells a
        configuration error from an outage; per request both remain a 503.

        :raises CrossmintConfigError: ``setting == "base_url"``: the URL
            answers, but not as Crossmint (a 404, a redirect, HTML, JSON that
            is not a key set); the message names the URL, never the key.
        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE``: nothing answers
            there (refused, timed out) or Crossmint is failing (5xx).
        """
        request = jwks_request(self.crossmint)
        try:
            answer = self._send(request)
        except CrossmintAuthError as error:
            raise unreachable(request, error) from None
        check_key_set_answer(request, *answer)

    # -- I/O ----------------------------------------------------------------------------

    def _send(self, request: ApiRequest, set_cookies: list[str] | None = None) -> tuple[int, bytes]:
        """Send a request; the answer's ``Set-Cookie`` values go to ``set_cookies``."""
        client = self._own_process()
        try:
            response = client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
            if set_cookies is not None:
                set_cookies.extend(response.headers.get_list("set-cookie"))
            return response.status_code, response.content
        except (httpx.HTTPError, OSError) as error:
            raise unreachable(request, error) from None

    def _perform(self, effect: Effect, read_body: Callable[[int], bytes | None]) -> Any:
        """Perform one effect; a failure is returned as a value, the flow decides."""
        try:
            if isinstance(effect, FetchKeys):
                keys = jwks_request(self.crossmint)
                return self._keys_flight.do(
                    "jwks", lambda: parse_jwks_answer(*self._send(keys), url=keys.url)
                )
            if isinstance(effect, Refresh):
                refresh = effect

                def perform() -> AuthMaterial:
                    with self.core.upstream_call(refresh):
                        request, parse = refresh_call(
                            self.crossmint, refresh.secret, self.refresh_route
                        )
                        set_cookies: list[str] = []
                        return parse(*self._send(request, set_cookies), set_cookies)

                return self.coordinator.refresh(refresh.secret, perform)
            if isinstance(effect, Revoke):
                return self.coordinator.revoke(effect.secret)
            if isinstance(effect, RevokeToken):
                return self.coordinator.revoke_token(effect.digest, effect.exp)
            if isinstance(effect, Logout):
                # Crossmint's answer to a logout carries nothing we use.
                self._send(logout_request(self.crossmint, effect.secret))
                return None
            if isinstance(effect, ReadBody):
                return read_body(effect.limit)
        except CrossmintAuthError as error:
            return error
        raise TypeError(f"unknown effect {effect!r}")

    def run(
        self,
        flow: Generator[Effect, Any, R],
        read_body: Callable[[int], bytes | None] = no_body,
    ) -> R:
        """Drive a flow to its end, performing each effect it yields."""
        self._listen()
        try:
            effect = next(flow)
            while True:
                effect = flow.send(self._perform(effect, read_body))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            # An exception from an effect (a client gone, a signal) leaves the
            # flow suspended: close it so it can undo what it began.
            flow.close()

    # -- the public API -----------------------------------------------------------------

    def get_session(
        self, source: Any = None, *, jwt: str | None = None, refresh_token: str | None = None
    ) -> Session:
        """The verified session of a request, refreshed through Crossmint if needed.

        :param source: a WSGI environ, a request object with a ``.cookies``
            mapping (Flask, Bottle, Starlette, Quart), or a cookie mapping.
        :param jwt: the JWT, instead of the ``crossmint-jwt`` cookie.
        :param refresh_token: the refresh secret, instead of the cookie.
        :returns: a :class:`Session`; when ``session.refreshed`` is true, send
            :meth:`session_cookies` of ``session.material`` with the answer.
        :raises CrossmintAuthError: with a ``code`` saying why there is none.
        """
        return self.run(
            self._session_flow(self.read_cookies(source, jwt=jwt, refresh_token=refresh_token))
        )

    def verify_crossmint_jwt(self, token: str) -> dict[str, Any]:
        """Verify a Crossmint JWT and return its claims.

        :raises CrossmintAuthError: ``SESSION_EXPIRED`` for an expired token,
            ``INVALID_TOKEN`` for any other failure, ``UPSTREAM_UNAVAILABLE``
            when the key set cannot be fetched.
        """
        claims = self._cached_claims(token)
        if claims is not None:
            return claims
        return self.run(self._claims_flow(self.core, token))

    def refresh(self, secret: str) -> AuthMaterial:
        """Trade a refresh secret, or a login's one-time secret, for new material.

        Concurrent calls with the same secret share one Crossmint call.

        :raises CrossmintAuthError: ``SESSION_EXPIRED`` or ``UPSTREAM_UNAVAILABLE``.
        """
        return self.run(self.core.refresh(secret))

    def logout(
        self,
        source: Any = None,
        *,
        refresh_token: str | None = None,
        jwt: str | None = None,
    ) -> list[str]:
        """End the session (best effort): its JWT is refused from now on, in
        every process that shares this auth's coordinator, and its refresh
        chain is revoked here and at Crossmint.

        :param source: the request (for its cookies), as for :meth:`get_session`.
        :param refresh_token: the refresh secret, instead of the cookie.
        :param jwt: the JWT, instead of the cookie.
        :returns: the ``Set-Cookie`` values that clear both cookies.
        """
        cookies = self.read_cookies(source, jwt=jwt, refresh_token=refresh_token)
        if cookies.refresh or cookies.jwt:
            self.run(self.core.logout(cookies.refresh, cookies.jwt))
        return self.clear_cookies(secure=self.cookie_options.secure)

    def get_user(self, user_id: str) -> User:
        """Fetch a Crossmint user by id.

        :raises CrossmintAuthError: ``INVALID_REQUEST`` when Crossmint has no
            such user, ``UPSTREAM_UNAVAILABLE`` when it did not answer.
        """
        return parse_user_answer(*self._send(user_request(self.crossmint, user_id)))

    def handle_custom_refresh(
        self,
        source: Any = None,
        *,
        body: bytes | str | Mapping[str, Any] | None = None,
        secure: bool = False,
    ) -> Answer:
        """Answer the browser SDK's refresh call from a route of your own.

        :param source: the request (for the refresh cookie), as for :meth:`get_session`.
        :param body: the request body: ``{"refresh": secret}`` or empty.
        :param secure: whether the request came over https.
        :returns: an answer with ``status``, ``headers`` (Set-Cookie included)
            and a JSON ``body``, errors included.
        """
        return self.run(self._refresh_answer_flow(source, body, secure))


class AsyncCrossmintAuth(_AuthBase[AsyncRefreshCoordinator, httpx.AsyncBaseTransport]):
    """Crossmint sessions for async code (ASGI apps), on asyncio or trio.

    Takes the same parameters as :class:`CrossmintAuth`; ``coordinator`` is an
    :class:`~crossmint_wsgi.coordination.AsyncRefreshCoordinator` and
    ``transport`` an async ``httpx`` transport.
    """

    _ASYNC = True
    _TRANSPORT = (
        httpx.AsyncBaseTransport,
        "httpx.AsyncHTTPTransport(...) or httpx.MockTransport(...)",
    )

    def _init_driver(
        self,
        coordinator: AsyncRefreshCoordinator | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._transport = transport
        self.coordinator: AsyncRefreshCoordinator = coordinator or AsyncLocalCoordinator(
            self.refresh_grace, budget=self.core.cache_budget // 4
        )
        self._keys_flight: AsyncSingleFlight[dict[str, Any]] = AsyncSingleFlight()
        self._loop: object = None
        self._client: httpx.AsyncClient | None = None

    def _current_client(self) -> httpx.AsyncClient:
        # Connections belong to one event loop; a new loop (a test, a trio run) gets its own.
        loop = anyio.lowlevel.current_token().native_token
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(
                timeout=_httpx_timeout(self.timeout),
                transport=self._transport,
                verify=_tls_context(),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections of the current event loop, and the
        coordinator's, if it has an ``aclose()``."""
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        aclose = getattr(self.coordinator, "aclose", None)
        if callable(aclose):
            await aclose()

    async def __aenter__(self) -> AsyncCrossmintAuth:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def check(self) -> None:
        """As :meth:`CrossmintAuth.check`, awaited: call it from the app's start-up (lifespan)."""
        request = jwks_request(self.crossmint)
        try:
            answer = await self._send(request)
        except CrossmintAuthError as error:
            raise unreachable(request, error) from None
        check_key_set_answer(request, *answer)

    # -- I/O ----------------------------------------------------------------------------

    async def _send(
        self, request: ApiRequest, set_cookies: list[str] | None = None
    ) -> tuple[int, bytes]:
        """As :meth:`CrossmintAuth._send`, awaited."""
        client = self._current_client()
        try:
            with anyio.fail_after(self.timeout):
                response = await client.request(
                    request.method, request.url, headers=request.headers, content=request.body
                )
            if set_cookies is not None:
                set_cookies.extend(response.headers.get_list("set-cookie"))
            return response.status_code, response.content
        except (httpx.HTTPError, OSError, TimeoutError) as error:
            raise unreachable(request, error) from None

    async def _perform(
        self, effect: Effect, read_body: Callable[[int], Awaitable[bytes | None]]
    ) -> Any:
        """As :meth:`CrossmintAuth._perform`, awaited."""
        try:
            if isinstance(effect, FetchKeys):

                async def fetch() -> dict[str, Any]:
                    keys = jwks_request(self.crossmint)
                    return parse_jwks_answer(*await self._send(keys), url=keys.url)

                return await self._keys_flight.do("jwks", fetch)
            if isinstance(effect, Refresh):
                refresh = effect

                async def perform() -> AuthMaterial:
                    with self.core.upstream_call(refresh):
                        request, parse = refresh_call(
                            self.crossmint, refresh.secret, self.refresh_route
                        )
                        set_cookies: list[str] = []
                        return parse(*await self._send(request, set_cookies), set_cookies)

                return await self.coordinator.refresh(refresh.secret, perform)
            if isinstance(effect, Revoke):
                return await self.coordinator.revoke(effect.secret)
            if isinstance(effect, RevokeToken):
                return await self.coordinator.revoke_token(effect.digest, effect.exp)
            if isinstance(effect, Logout):
                await self._send(logout_request(self.crossmint, effect.secret))
                return None
            if isinstance(effect, ReadBody):
                return await read_body(effect.limit)
        except CrossmintAuthError as error:
            return error
        raise TypeError(f"unknown effect {effect!r}")

    async def run(
        self,
        flow: Generator[Effect, Any, R],
        read_body: Callable[[int], Awaitable[bytes | None]] = ano_body,
    ) -> R:
        """Drive a flow to its end, performing each effect it yields."""
        self._listen()
        try:
            effect = next(flow)
            while True:
                effect = flow.send(await self._perform(effect, read_body))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            # Cancellation leaves the flow suspended: close it so it can undo
            # what it began.
            flow.close()

    # -- the public API: as CrossmintAuth, awaited -----------------------------------------

    async def get_session(
        self, source: Any = None, *, jwt: str | None = None, refresh_token: str | None = None
    ) -> Session:
        """As :meth:`CrossmintAuth.get_session`; ``source`` may also be an ASGI scope."""
        return await self.run(
            self._session_flow(self.read_cookies(source, jwt=jwt, refresh_token=refresh_token))
        )

    async def verify_crossmint_jwt(self, token: str) -> dict[str, Any]:
        """As :meth:`CrossmintAuth.verify_crossmint_jwt`."""
        claims = self._cached_claims(token)
        if claims is not None:
            return claims
        return await self.run(self._claims_flow(self.core, token))

    async def refresh(self, secret: str) -> AuthMaterial:
        """As :meth:`CrossmintAuth.refresh`."""
        return await self.run(self.core.refresh(secret))

    async def logout(
        self,
        source: Any = None,
        *,
        refresh_token: str | None = None,
        jwt: str | None = None,
    ) -> list[str]:
        """As :meth:`CrossmintAuth.logout`."""
        cookies = self.read_cookies(source, jwt=jwt, refresh_token=refresh_token)
        if cookies.refresh or cookies.jwt:
            await self.run(self.core.logout(cookies.refresh, cookies.jwt))
        return self.clear_cookies(secure=self.cookie_options.secure)

    async def get_user(self, user_id: str) -> User:
        """As :meth:`CrossmintAuth.get_user`."""
        return parse_user_answer(*await self._send(user_request(self.crossmint, user_id)))

    async def handle_custom_refresh(
        self,
        source: Any = None,
        *,
        body: bytes | str | Mapping[str, Any] | None = None,
        secure: bool = False,
    ) -> Answer:
        """As :meth:`CrossmintAuth.handle_custom_refresh`."""
        return await self.run(self._refresh_answer_flow(source, body, secure))
