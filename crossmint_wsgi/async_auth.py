"""AsyncCrossmintAuth: the async driver of the sans-IO flows (ASGI apps), on asyncio or trio."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from .answers import Answer
from .api import unreachable
from .auth_base import Call, R, _AuthBase, httpx_timeout, merged, tls_context
from .coordination import AsyncLocalCoordinator, AsyncRefreshCoordinator, AsyncSingleFlight
from .effects import Effect, Refresh, SharedKeySet, ano_body, no_host_keys
from .errors import CrossmintAuthError
from .host_coordination import AsyncHostCoordinator
from .models import AuthMaterial, Session, User

__all__ = ["AsyncCrossmintAuth"]

logger = logging.getLogger("crossmint_wsgi")


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
    _HOST = AsyncHostCoordinator

    def _init_driver(
        self,
        coordinator: AsyncRefreshCoordinator | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._transport = transport
        self._coordinator = coordinator or AsyncLocalCoordinator(
            self.refresh_grace, budget=self.core.refresh_budget
        )
        self._keys_flight: AsyncSingleFlight[dict[str, Any] | SharedKeySet] = AsyncSingleFlight()
        self._loop: object = None
        self._client: httpx.AsyncClient | None = None

    @property
    def coordinator(self) -> AsyncRefreshCoordinator:
        return self._coordinator

    def _current_client(self) -> httpx.AsyncClient:
        # Connections belong to one event loop; a new loop (a test, a trio run) gets its own.
        loop = anyio.lowlevel.current_token().native_token
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx_timeout(self.timeout),
                transport=self._transport,
                verify=tls_context(),
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
        await self._call(self._check_call())

    # -- I/O ----------------------------------------------------------------------------

    async def _call(self, call: Call[R]) -> R:
        request = call.request
        client = self._current_client()
        try:
            with anyio.fail_after(self.timeout):
                response = await client.request(
                    request.method, request.url, headers=request.headers, content=request.body
                )
        except (httpx.HTTPError, OSError, TimeoutError) as error:
            raise unreachable(request, error) from None
        return call.read(
            response.status_code, response.content, response.headers.get_list("set-cookie")
        )

    async def _fetch_keys(self, host_only: bool) -> dict[str, Any] | SharedKeySet:
        fetch = functools.partial(self._call, self._keys_call())
        host: AsyncHostCoordinator | None = self.host
        if host is None:
            if host_only:
                no_host_keys()
            return await self._keys_flight.do("jwks", fetch)
        if host_only:
            return await host.keys(None)
        return await self._keys_flight.do("jwks", functools.partial(host.keys, fetch))

    def _in_turn(
        self, first: Callable[..., Any], second: Callable[..., Any], *args: Any
    ) -> Callable[[], Any]:
        async def both() -> Any:
            return merged(await first(*args), await second(*args))

        return both

    async def _refresh_upstream(self, effect: Refresh) -> AuthMaterial:
        with self.core.upstream_call(effect):
            return await self._call(self._refresh_call(effect.secret))

    async def _perform(
        self, effect: Effect, read_body: Callable[[int], Awaitable[bytes | None]]
    ) -> Any:
        """As :meth:`CrossmintAuth._perform`, awaited."""
        try:
            return await self._performer(effect, read_body)()
        except CrossmintAuthError as error:
            return error

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
        return await self._call(self._user_call(user_id))

    async def handle_custom_refresh(
        self,
        source: Any = None,
        *,
        body: bytes | str | Mapping[str, Any] | None = None,
        secure: bool = False,
    ) -> Answer:
        """As :meth:`CrossmintAuth.handle_custom_refresh`."""
        return await self.run(self._refresh_answer_flow(source, body, secure))
