"""CrossmintAuth: the blocking driver of the sans-IO flows (WSGI apps, scripts, threads)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any

import httpx

from .answers import Answer
from .api import unreachable
from .auth_base import Call, R, _AuthBase, httpx_timeout, merged, tls_context
from .coordination import LocalCoordinator, RefreshCoordinator, SingleFlight
from .effects import Effect, Refresh, SharedKeySet, no_body, no_host_keys
from .errors import CrossmintAuthError
from .host_coordination import HostCoordinator
from .models import AuthMaterial, Session, User

__all__ = ["CrossmintAuth"]

logger = logging.getLogger("crossmint_wsgi")


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
    :param token_cache_size: how many verified JWTs to remember; by default
        as many as an eighth of ``cache_budget`` holds.
    :param leeway: seconds of clock skew allowed on ``exp``, ``nbf``, ``iat``.
    :param issuer: the required ``iss``; unchecked when ``None``.
    :param timeout: seconds a Crossmint call may take in total.
    :param refresh_grace: seconds a refresh result is served to requests
        still carrying the old refresh secret.
    :param coordinator: decides who refreshes a secret; by default the
        host store's (:class:`~crossmint_wsgi.host_coordination.HostCoordinator`:
        single flight and a grace cache shared by the worker processes of
        this host), or in-process only when there is no host store
        (:class:`~crossmint_wsgi.coordination.LocalCoordinator`). Another
        coordinator (Redis) keeps the host store beneath it.
    :param host_store: where the worker processes of this host share
        refreshes, Crossmint's key set and logouts: ``True`` for the default
        directory (``$CROSSMINT_HOST_STORE``, else ``$XDG_RUNTIME_DIR``, else
        the temp directory), a directory, or ``False`` for none (see
        :mod:`~crossmint_wsgi.host_store`).
    :param cache_budget: the bytes this auth's caches may hold together
        (default 64 MiB: three quarters the middlewares' recent sessions,
        about 15,000 of them with 770-byte ``Cookie`` headers; an eighth
        verified tokens; an eighth refresh results).
    :param refresh_failure_limit: distinct refresh secrets that Crossmint
        may refuse (or that are in flight) within ``refresh_failure_window``
        seconds from one client address, or from one user when the request
        carries an authentic JWT (expired or not: counted by its ``sub``,
        never against the address); past that the address's (user's)
        unknown secrets are answered ``UPSTREAM_UNAVAILABLE`` without
        calling Crossmint until the window has passed. ``0`` turns the bound off.
    :param refresh_failure_window: seconds, see ``refresh_failure_limit``.
    :param max_concurrent_refreshes: refresh calls to Crossmint in flight at
        once in this process, a quarter of them kept for requests with an
        authentic JWT; beyond it a request is answered
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
    _HOST = HostCoordinator

    def _init_driver(
        self, coordinator: RefreshCoordinator | None, transport: httpx.BaseTransport | None
    ) -> None:
        self._coordinator = coordinator
        self._transport = transport
        self._pid = -1
        self._client: httpx.Client | None = None
        self._keys_flight: SingleFlight[dict[str, Any] | SharedKeySet] = SingleFlight()
        self._local: LocalCoordinator | None = None
        self._process_lock = threading.Lock()

    @property
    def coordinator(self) -> RefreshCoordinator:
        self._own_process()
        if self._coordinator is not None:
            return self._coordinator
        assert self._local is not None
        return self._local

    def _own_process(self) -> httpx.Client:
        # After a fork, nothing of the parent's connections or locks is reused.
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._process_lock:
            if self._client is None or self._pid != os.getpid():
                # The client last: once it is set, threads that skip the lock
                # above find everything else of this process in place.
                self._keys_flight = SingleFlight[dict[str, Any] | SharedKeySet]()
                self._local = LocalCoordinator(self.refresh_grace, budget=self.core.refresh_budget)
                self._pid = os.getpid()
                self._client = httpx.Client(
                    timeout=httpx_timeout(self.timeout),
                    transport=self._transport,
                    verify=tls_context(),
                )
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
        self._call(self._check_call())

    # -- I/O ----------------------------------------------------------------------------

    def _call(self, call: Call[R]) -> R:
        request = call.request
        client = self._own_process()
        try:
            response = client.request(
                request.method, request.url, headers=request.headers, content=request.body
            )
        except (httpx.HTTPError, OSError) as error:
            raise unreachable(request, error) from None
        return call.read(
            response.status_code, response.content, response.headers.get_list("set-cookie")
        )

    def _fetch_keys(self, host_only: bool) -> dict[str, Any] | SharedKeySet:
        def fetch() -> dict[str, Any]:
            return self._call(self._keys_call())

        host: HostCoordinator | None = self.host
        if host is None:
            if host_only:
                no_host_keys()
            return self._keys_flight.do("jwks", fetch)
        if host_only:
            return host.keys(None)
        return self._keys_flight.do("jwks", lambda: host.keys(fetch))

    def _in_turn(
        self, first: Callable[..., Any], second: Callable[..., Any], *args: Any
    ) -> Callable[[], Any]:
        return lambda: merged(first(*args), second(*args))

    def _refresh_upstream(self, effect: Refresh) -> AuthMaterial:
        with self.core.upstream_call(effect):
            return self._call(self._refresh_call(effect.secret))

    def _perform(self, effect: Effect, read_body: Callable[[int], bytes | None]) -> Any:
        """Perform one effect; a failure is returned as a value, the flow decides."""
        try:
            return self._performer(effect, read_body)()
        except CrossmintAuthError as error:
            return error

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
        return self._call(self._user_call(user_id))

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
