"""The sans-IO core: every decision about a session, written once.

Each flow is a generator. It yields an *effect* (:mod:`~crossmint_wsgi.effects`:
the I/O it needs, the key set, a refresh, a logout, the request body) and
receives the effect's result, or an :class:`~crossmint_wsgi.errors.CrossmintAuthError`
standing for its failure. The blocking and async drivers in
:mod:`crossmint_wsgi.auth`, and the WSGI and ASGI layers, only perform effects;
they decide nothing. Unit tests step the generators by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

from .caches import DEFAULT_BUDGET
from .config import Crossmint
from .cookies import AuthCookies, ambiguity, clear_cookie_headers, session_cookie_headers
from .coordination import LOGGED_OUT, DoubtedRefusal, LoggedOutDuringRefresh, secret_digest
from .effects import (
    FETCH_KEYS,
    HOST_KEYS,
    Logout,
    Refresh,
    Revoke,
    RevokeToken,
    SharedKeySet,
)
from .effects import Effect as Effect  # re-exported: routes, answers and tests import it from here
from .effects import FetchKeys as FetchKeys  # re-exported, as Effect
from .effects import ReadBody as ReadBody  # re-exported, as Effect
from .errors import CrossmintAuthError, ErrorCode
from .keys import KeySetCache
from .limits import FailedRefreshes, UpstreamSlots
from .models import AuthMaterial, CookieOptions, RefreshToken, Session
from .revocations import RevokedTokens, token_digest
from .settings import count, instance, key_set, seconds, text
from .tokens import (
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    VerifiedTokenCache,
    read_header,
    trusted_claims,
    verify_signed_token,
)

__all__ = ["SHARED_KEYS_MAX_AGE", "AuthCore", "Resolution"]

logger = logging.getLogger("crossmint_wsgi")

#: The oldest key set another worker of this host fetched that verifies
#: tokens while Crossmint is down: Crossmint rotates its keys rarely.
SHARED_KEYS_MAX_AGE = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What a request's cookies amount to: a session, or the reason there is none."""

    session: Session | None
    error: CrossmintAuthError | None
    cookies: AuthCookies


def _expired_message(had_jwt: bool, why: str) -> str:
    start = "the session JWT has expired" if had_jwt else "the request has no session JWT"
    return f"{start} and {why}"


class AuthCore:
    """Settings and in-memory state shared by every flow of one auth object.

    Built by :class:`~crossmint_wsgi.CrossmintAuth` and
    :class:`~crossmint_wsgi.AsyncCrossmintAuth`; see them for the parameters.
    """

    def __init__(
        self,
        crossmint: Crossmint,
        *,
        cookie_options: CookieOptions | None = None,
        jwks: Mapping[str, Any] | None = None,
        jwks_ttl: float = 600.0,
        kid_refetch_interval: float = 30.0,
        token_cache_size: int | None = None,
        leeway: int = 5,
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
        cache_budget: int = DEFAULT_BUDGET,
        refresh_failure_limit: int = 20,
        refresh_failure_window: float = 60.0,
        max_concurrent_refreshes: int = 64,
    ) -> None:
        # Each setting is checked where it is used: a wrong one fails here, naming itself.
        self.crossmint = crossmint
        self.cookie_options = instance(
            "cookie_options",
            CookieOptions() if cookie_options is None else cookie_options,
            CookieOptions,
            "crossmint_wsgi.CookieOptions(secure=..., same_site=..., ...)",
        )
        self.keys = KeySetCache(
            ttl=seconds("jwks_ttl", jwks_ttl),
            refetch_interval=seconds("kid_refetch_interval", kid_refetch_interval),
            static=key_set("jwks", jwks),
        )
        #: Bytes all caches for this auth may hold, shared out below.
        self.cache_budget = count("cache_budget", cache_budget)
        #: The middlewares' recent sessions: most requests end there.
        self.session_budget = self.cache_budget * 3 // 4
        #: Verified tokens: what a new header of a known session, and the
        #: framework helpers, look up.
        self.token_budget = self.cache_budget // 8
        #: Refresh results kept for ``refresh_grace``: a few seconds' refreshes.
        self.refresh_budget = self.cache_budget // 8
        # No count given: as many tokens as their share of the budget holds.
        self.tokens = VerifiedTokenCache(
            None if token_cache_size is None else count("token_cache_size", token_cache_size),
            self.token_budget,
        )
        self.leeway = count("leeway", leeway)
        self.issuer = text("issuer", issuer)
        self.clock = clock
        self.failed_refreshes = FailedRefreshes(
            count("refresh_failure_limit", refresh_failure_limit),
            seconds("refresh_failure_window", refresh_failure_window),
        )
        self.upstream_slots = UpstreamSlots(
            count("max_concurrent_refreshes", max_concurrent_refreshes)
        )
        #: JWTs logged out before their ``exp``, here or (with Redis) anywhere.
        self.revoked = RevokedTokens()
        #: Whether a refresh's JWT is verified before it is published: set by
        #: the auth when refreshes go to an app's ``refresh_route``, which,
        #: unlike Crossmint's own answer over TLS, may be anything.
        self.verify_refreshed = False

    def cached_claims(self, token: str, now: float) -> dict[str, Any] | None:
        """The claims of a token verified before, with no I/O: the hot path.

        :raises TokenExpired: expired since, or (:class:`TokenRevoked`) logged out.
        """
        revoked = self.revoked.digests
        if revoked and token_digest(token) in revoked:
            raise TokenRevoked("the session was logged out")
        return self.tokens.get(token, now, self.leeway)

    # -- verification -------------------------------------------------------------------

    def verify(self, token: str) -> Generator[Effect, Any, dict[str, Any]]:
        """Verify a JWT; fetch the key set first when the cache policy says so.

        :raises TokenExpired: genuine but expired.
        :raises TokenInvalid: fails verification otherwise.
        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` when no key set
            could be had at all.
        """
        now = self.clock()
        cached = self.cached_claims(token, now)
        if cached is not None:
            return cached
        header = read_header(token)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid("token kid is not a string")
        if self.keys.wants_fetch(kid, now):
            self.keys.begin(now)
            try:
                result = yield FETCH_KEYS
            except BaseException:
                # Cancelled or closed mid-fetch: end our part of it, or the
                # in-flight count would stay up for good.
                self.keys.abandon()
                raise
            if isinstance(result, SharedKeySet):
                # The fetch failed: the host's copy serves (when newer) as stale keys do.
                self._adopt_host_keys(result)
                self.keys.fail(self.clock(), result.why)
            elif isinstance(result, CrossmintAuthError):
                self.keys.fail(self.clock(), result.message)
            else:
                try:
                    self.keys.store(result, self.clock())
                except ValueError as error:
                    logger.error("Crossmint key set is unusable: %s", error)
        elif self.keys.empty and not self.keys.static:
            # No keys, and Crossmint is being left alone after a failure: another
            # worker of this host may have fetched them since.
            shared = yield HOST_KEYS
            if isinstance(shared, SharedKeySet):
                self._adopt_host_keys(shared)
        key = self.keys.get(kid)
        if key is None:
            if self.keys.empty:
                raise CrossmintAuthError(
                    ErrorCode.UPSTREAM_UNAVAILABLE, "Crossmint's key set could not be fetched"
                )
            raise TokenInvalid("token kid is not in Crossmint's key set")
        claims = verify_signed_token(
            token,
            header,
            key,
            audience=self.crossmint.project_id,
            issuer=self.issuer,
            leeway=self.leeway,
            now=now,
        )
        self.tokens.put(token, claims, now)
        return claims

    def _adopt_host_keys(self, shared: SharedKeySet) -> None:
        """Take the key set another worker of this host fetched, if it is newer
        than this process's and no older than :data:`SHARED_KEYS_MAX_AGE`."""
        age = self.clock() - shared.fetched_at
        if age > SHARED_KEYS_MAX_AGE:
            return
        try:
            adopted = self.keys.adopt(shared.jwks, shared.fetched_at)
        except ValueError as error:
            logger.error("the key set this host shares is unusable: %s", error)
            return
        if adopted:
            logger.warning(
                "Crossmint key set fetch failed (%s): verifying with the copy this host fetched"
                " %.0f s ago",
                shared.why,
                max(age, 0.0),
            )

    # -- sessions -------------------------------------------------------------------------

    def logout(
        self, secret: str | None, jwt: str | None = None, client: str | None = None
    ) -> Generator[Effect, Any, None]:
        """End a session, best effort: its JWT and every refresh secret of its chain.

        The JWT, if it verifies, is refused from now on in this process and,
        through the coordinator, in every process that shares it, until its
        ``exp``. Every secret of the chain that this deployment has seen stops
        yielding material (the coordinator's part), and each still-valid one
        is revoked at Crossmint. Nothing can fail the logout: the cookies are
        cleared whatever Crossmint says.

        :param client: the request's address. A logout whose JWT is not
            authentic (absent, forged) may be anyone's: it counts against the
            address as a refused refresh does, and past the bound it costs
            nothing (no coordinator state, no call to Crossmint).
        """
        vouched = (yield from self._revoke_token(jwt)) if jwt else False
        if not secret:
            return
        if not vouched:
            now = self.clock()
            if self.failed_refreshes.refusal(client, now) is not None:
                logger.info("logout from an address past the flood bound: cookies cleared only")
                return
            self.failed_refreshes.failed(client, secret_digest(secret), now)
        successors = yield Revoke(secret)
        if isinstance(successors, CrossmintAuthError):
            logger.warning("logout could not reach the coordinator: %s", successors.message)
            successors = []
        for each in successors:
            # A JWT minted by a refresh of this session, maybe in the browser already.
            jwt = getattr(each, "jwt", None)
            if jwt:
                yield from self._revoke_token(jwt)
        for each in (secret, *successors):
            result = yield Logout(each)
            if isinstance(result, CrossmintAuthError):
                logger.warning("%s (best effort: the cookies are cleared anyway)", result.message)

    def _revoke_token(self, jwt: str) -> Generator[Effect, Any, bool]:
        """Revoke a genuine, live JWT; whether it was authentic (live or merely expired)."""
        # Anything else needs no revoking, and a forged one must not fill the set.
        try:
            claims = yield from self.verify(jwt)
        except TokenRevoked:
            return False
        except TokenExpired:
            # Raised only once the signature held: a user's, with nothing to revoke.
            return True
        except (TokenInvalid, CrossmintAuthError):
            return False
        digest, exp = token_digest(jwt), float(claims["exp"]) + self.leeway
        self.revoked.add(digest, exp, self.clock())
        self.tokens.discard(jwt)
        result = yield RevokeToken(digest, exp)
        if isinstance(result, CrossmintAuthError):
            logger.warning("logout could not tell the other processes: %s", result.message)
        return True

    def refresh(
        self, secret: str, client: str | None = None, *, user: str | None = None
    ) -> Generator[Effect, Any, AuthMaterial]:
        """Trade a refresh secret for new material.

        :param client: the address the secret came from, when a request
            brought it: an address whose secrets Crossmint keeps refusing
            gets no more calls for a while (see :mod:`~crossmint_wsgi.limits`).
        :param user: the ``sub`` of an authentic JWT (expired or not) the
            request carried: the refresh is that user's, counted against
            them and never against ``client``, and may use the slots kept for users.
        :raises CrossmintAuthError: ``SESSION_EXPIRED`` when Crossmint does
            not accept the secret, ``UPSTREAM_UNAVAILABLE`` when it did not
            answer usably or was not asked.
        """
        digest = secret_digest(secret)
        with self.failed_refreshes.attempt(client, digest, self.clock(), user) as refused:
            result = yield Refresh(secret, refused, user)
        if isinstance(result, LoggedOutDuringRefresh):
            yield from self._end_orphan(result)
            raise LOGGED_OUT
        if isinstance(result, DoubtedRefusal):
            # Counted as the refusal it may be; only a user's session is kept.
            self.failed_refreshes.failed(client, digest, self.clock(), user)
            raise result if user is not None else result.refusal
        if isinstance(result, CrossmintAuthError):
            if result.code is ErrorCode.SESSION_EXPIRED:
                self.failed_refreshes.failed(client, digest, self.clock(), user)
            raise result
        assert isinstance(result, AuthMaterial)
        if self.verify_refreshed:
            try:
                yield from self.verify(result.jwt)
            except (TokenInvalid, TokenExpired) as error:
                # Never published: not the session, and no reason to end it either.
                raise CrossmintAuthError(
                    ErrorCode.UPSTREAM_UNAVAILABLE,
                    f"the refresh route answered a JWT that does not verify ({error})",
                ) from None
        return result

    def _end_orphan(self, error: LoggedOutDuringRefresh) -> Generator[Effect, Any, None]:
        """Revoke the pair a refresh minted after its session was logged out:
        its JWT everywhere, its secret in the coordinator and at Crossmint.
        Only the first of the requests that shared the refresh does it."""
        orphan = error.take()
        if orphan is None:
            return
        yield from self._revoke_token(orphan.jwt)
        secret = orphan.refresh_token.secret
        for effect in (Revoke(secret), Logout(secret)):
            result = yield effect
            if isinstance(result, CrossmintAuthError):
                logger.warning("logout during a refresh: %s (best effort)", result.message)

    @contextlib.contextmanager
    def upstream_call(self, effect: Refresh) -> Iterator[None]:
        """Around a driver's refresh call to Crossmint: whether it may be made.

        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE``, the effect's
            refusal, or when too many calls are in flight already.
        """
        if effect.refused is not None:
            raise effect.refused
        with self.upstream_slots.hold(vouched=effect.user is not None):
            yield

    def resolve(
        self, cookies: AuthCookies, client: str | None = None
    ) -> Generator[Effect, Any, Resolution]:
        """Turn a request's auth cookies into a session, refreshing when needed.

        :param client: the request's address, see :meth:`refresh`.
        """
        if not cookies:
            return Resolution(
                None,
                CrossmintAuthError(ErrorCode.MISSING_SESSION, "the request carries no session"),
                cookies,
            )
        unsure = ambiguity(cookies)
        if unsure is not None:
            # The app's framework may read another of the values than any we
            # would verify: vouch for none of them (the cookies are cleared).
            return Resolution(None, CrossmintAuthError(ErrorCode.INVALID_TOKEN, unsure), cookies)
        problem = ErrorCode.SESSION_EXPIRED
        why = "the JWT has expired"
        user: str | None = None
        if cookies.jwt:
            try:
                claims = yield from self.verify(cookies.jwt)
            except TokenRevoked:
                pass
            except TokenExpired:
                # Raised only once the signature and every other claim held: a
                # user's refresh, never counted against the address (limits.py).
                user = trusted_claims(cookies.jwt)["sub"]
            except TokenInvalid as error:
                problem, why = ErrorCode.INVALID_TOKEN, str(error)
            except CrossmintAuthError as error:
                # Without keys nothing can be decided: keep the cookies, say why.
                return Resolution(None, error, cookies)
            else:
                refresh = RefreshToken(cookies.refresh) if cookies.refresh else None
                return Resolution(
                    Session(cookies.jwt, refresh, claims["sub"], claims), None, cookies
                )
        if not cookies.refresh:
            if problem is ErrorCode.INVALID_TOKEN:
                message = f"the session JWT is not valid: {why}, and there is no refresh token"
            else:
                message = _expired_message(bool(cookies.jwt), "there is no refresh token")
            return Resolution(None, CrossmintAuthError(problem, message), cookies)
        try:
            material = yield from self.refresh(cookies.refresh, client, user=user)
        except CrossmintAuthError as error:
            if error.code is ErrorCode.SESSION_EXPIRED and problem is ErrorCode.INVALID_TOKEN:
                error = CrossmintAuthError(
                    ErrorCode.INVALID_TOKEN,
                    f"the session JWT is not valid: {why}, and {error.message}",
                )
            logger.info(
                "refresh of session %s failed: %s",
                secret_digest(cookies.refresh)[:12],
                error.code.value,
            )
            return Resolution(None, error, cookies)
        try:
            return Resolution(self.session_from(material), None, cookies)
        except CrossmintAuthError as error:
            return Resolution(None, error, cookies)

    def session_from(self, material: AuthMaterial) -> Session:
        """A refreshed :class:`Session` from the material Crossmint just returned.

        :raises CrossmintAuthError: ``UPSTREAM_UNAVAILABLE`` when that JWT
            lacks ``sub`` or ``exp``.
        """
        try:
            claims = trusted_claims(material.jwt)
        except TokenInvalid as error:
            raise CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, str(error)) from None
        return Session(
            material.jwt,
            material.refresh_token,
            claims["sub"],
            claims,
            refreshed=True,
            user=material.user,
        )

    # -- cookies --------------------------------------------------------------------------

    def session_cookies(
        self, material: AuthMaterial, *, secure: bool, names: tuple[str, ...] = ()
    ) -> list[str]:
        """``Set-Cookie`` values for new material; the JWT cookie expires with the JWT.

        :param names: the auth-cookie names the request carried: each is written
            again (or cleared), so no used secret stays behind under another name.
        """
        try:
            exp: int | None = int(trusted_claims(material.jwt)["exp"])
        except TokenInvalid:
            exp = None
        return session_cookie_headers(
            material,
            exp,
            self.cookie_options,
            secure=secure,
            project_id=self.crossmint.project_id,
            names=names,
            now=self.clock(),
        )

    def clear_cookies(self, *, secure: bool, names: tuple[str, ...] = ()) -> list[str]:
        """``Set-Cookie`` values that delete the auth cookies."""
        return clear_cookie_headers(self.cookie_options, secure=secure, names=names)
