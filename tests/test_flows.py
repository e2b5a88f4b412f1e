"""The sans-IO core, stepped by hand: effects out, results and errors in, no I/O."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from stepping import NOW, Signer, b64json, crossmint_of, drive

from crossmint_wsgi import (
    AuthMaterial,
    CrossmintAuthError,
    ErrorCode,
    RefreshToken,
    Session,
    User,
)
from crossmint_wsgi.config import Crossmint
from crossmint_wsgi.cookies import AuthCookies
from crossmint_wsgi.coordination import secret_digest
from crossmint_wsgi.effects import (
    FETCH_KEYS,
    HOST_KEYS,
    FetchKeys,
    Logout,
    ReadBody,
    Refresh,
    SharedKeySet,
)
from crossmint_wsgi.flows import SHARED_KEYS_MAX_AGE, AuthCore
from crossmint_wsgi.limits import FailedRefreshes
from crossmint_wsgi.revocations import token_digest
from crossmint_wsgi.tokens import TokenExpired, TokenInvalid

PROJECT = "project-f"
OLD_SECRET = "old-refresh-secret-0001"
NEW_SECRET = "new-refresh-secret-0002"
EXPIRES_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("k1", project=PROJECT)


@pytest.fixture(scope="module")
def rotated() -> Signer:
    return Signer("k2", project=PROJECT)


@pytest.fixture(scope="module")
def crossmint() -> Crossmint:
    return crossmint_of(PROJECT)


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(crossmint: Crossmint, clock: Clock) -> AuthCore:
    return AuthCore(crossmint, clock=clock, leeway=0)


def upstream(why: str = "HTTP 503") -> CrossmintAuthError:
    return CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, f"Crossmint call failed: {why}")


def rejected() -> CrossmintAuthError:
    return CrossmintAuthError(
        ErrorCode.SESSION_EXPIRED, "Crossmint did not accept the refresh token (HTTP 401)"
    )


def material(signer: Signer, sub: str = "user-1", **claims: Any) -> AuthMaterial:
    return AuthMaterial(
        signer.token(sub, **claims), RefreshToken(NEW_SECRET, EXPIRES_AT), User(sub, email="e@x")
    )


def warmed(core: AuthCore, signer: Signer, *others: Signer) -> AuthCore:
    """The core after its first key fetch."""
    drive(core.verify(signer.token(jti="warm")), signer.jwks(*others))
    return core


# -- effects ----------------------------------------------------------------------------------


def test_effects_hide_secrets() -> None:
    assert OLD_SECRET not in repr(Refresh(OLD_SECRET))
    assert OLD_SECRET not in repr(Logout(OLD_SECRET))
    assert repr(ReadBody(10)) == "ReadBody(limit=10)"
    assert FetchKeys() == FETCH_KEYS


# -- verify -------------------------------------------------------------------------------------


def test_verify_fetches_the_key_set_first(core: AuthCore, signer: Signer) -> None:
    token = signer.token()
    claims, effects = drive(core.verify(token), signer.jwks())
    assert effects == [FETCH_KEYS]
    assert claims["sub"] == "user-1"
    # The next token with a known kid needs no effect at all.
    claims, effects = drive(core.verify(signer.token("user-2")))
    assert (claims["sub"], effects) == ("user-2", [])


def test_seen_token_is_answered_from_the_cache(core: AuthCore, signer: Signer) -> None:
    token = signer.token()
    first, _ = drive(core.verify(token), signer.jwks())
    again, effects = drive(core.verify(token))
    assert again is first
    assert effects == []


def test_verify_without_any_key_set_is_upstream_unavailable(
    core: AuthCore, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(CrossmintAuthError) as caught:
        drive(core.verify(signer.token()), upstream())
    assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "no keys cached" in caplog.text
    # Within the failure backoff the next request fails fast: Crossmint is not
    # asked, only the host, which has no copy either.
    flow = core.verify(signer.token("user-2"))
    assert next(flow) == HOST_KEYS
    with pytest.raises(CrossmintAuthError) as again:
        flow.send(upstream("no worker of this host has it"))
    assert again.value.code is ErrorCode.UPSTREAM_UNAVAILABLE


@pytest.mark.parametrize(
    ("age", "verifies"),
    [
        pytest.param(5.0, True, id="fetched-moments-ago"),
        pytest.param(SHARED_KEYS_MAX_AGE + 1, False, id="older-than-a-day"),
    ],
)
def test_a_worker_without_keys_verifies_with_the_hosts_copy(
    core: AuthCore,
    signer: Signer,
    age: float,
    verifies: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker started during an outage: Crossmint fails, the host's copy serves."""
    copy = SharedKeySet(signer.jwks(), NOW - age, "Crossmint call failed: HTTP 503")
    if verifies:
        claims, effects = drive(core.verify(signer.token()), copy)
        assert claims["sub"] == "user-1"
        assert effects == [FETCH_KEYS]
        assert "verifying with the copy this host fetched 5 s ago" in caplog.text
    else:
        with pytest.raises(CrossmintAuthError) as caught:
            drive(core.verify(signer.token()), copy)
        assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE


def test_a_worker_in_its_failure_backoff_takes_the_hosts_copy(
    core: AuthCore, signer: Signer
) -> None:
    with pytest.raises(CrossmintAuthError):
        drive(core.verify(signer.token()), upstream())
    # Another worker fetched the set since: no call to Crossmint, the host's copy.
    copy = SharedKeySet(signer.jwks(), NOW, "not asked")
    claims, effects = drive(core.verify(signer.token("user-2")), copy)
    assert claims["sub"] == "user-2"
    assert effects == [HOST_KEYS]


def test_unusable_key_set_is_upstream_unavailable(
    core: AuthCore, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(CrossmintAuthError) as caught:
        drive(core.verify(signer.token()), {"keys": [{"kty": "oct", "k": "AAAA"}]})
    assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert "key set is unusable" in caplog.text


def test_stale_keys_serve_when_the_refetch_fails(
    core: AuthCore, signer: Signer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    warmed(core, signer)
    clock.now += 601
    token = signer.token(ttl=1200)
    with caplog.at_level(logging.WARNING):
        claims, effects = drive(core.verify(token), upstream("ConnectTimeout"))
    assert effects == [FETCH_KEYS]
    assert claims["sub"] == "user-1"
    assert "serving cached keys" in caplog.text


def test_unknown_kid_refetches_once_then_verifies(
    core: AuthCore, signer: Signer, rotated: Signer
) -> None:
    warmed(core, signer)
    claims, effects = drive(core.verify(rotated.token()), rotated.jwks(signer))
    assert effects == [FETCH_KEYS]
    assert claims["sub"] == "user-1"


def test_unknown_kid_within_the_interval_is_invalid_without_a_fetch(
    core: AuthCore, signer: Signer, rotated: Signer, clock: Clock
) -> None:
    warmed(core, signer)
    # The refetch returns the same old set: the new kid is still unknown.
    with pytest.raises(TokenInvalid, match="not in Crossmint's key set"):
        drive(core.verify(rotated.token()), signer.jwks())
    clock.now += 29
    with pytest.raises(TokenInvalid, match="not in Crossmint's key set"):
        drive(core.verify(rotated.token(jti="again")))
    clock.now += 1
    claims, effects = drive(core.verify(rotated.token(jti="later")), rotated.jwks(signer))
    assert effects == [FETCH_KEYS]
    assert claims["jti"] == "later"


def test_verify_raises_expired_and_invalid(core: AuthCore, signer: Signer) -> None:
    warmed(core, signer)
    with pytest.raises(TokenExpired):
        drive(core.verify(signer.token(ttl=-1)))
    with pytest.raises(TokenInvalid):
        drive(core.verify(signer.token(aud="someone-else")))


def test_closed_verify_flow_leaves_no_fetch_in_flight(
    core: AuthCore, signer: Signer, clock: Clock
) -> None:
    warmed(core, signer)
    clock.now += 601  # the set is stale: the next verification refetches
    flow = core.verify(signer.token(ttl=1200))
    assert next(flow) == FETCH_KEYS
    flow.close()  # the driver gave up: its request was cancelled
    # Nothing is in flight any more: a stale set is refetched by the next request...
    _, effects = drive(core.verify(signer.token(ttl=1200, jti="next")), signer.jwks())
    assert effects == [FETCH_KEYS]


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_yields_the_secret_and_returns_the_material(core: AuthCore, signer: Signer) -> None:
    new = material(signer)
    result, effects = drive(core.refresh(OLD_SECRET), new)
    assert effects == [Refresh(OLD_SECRET)]
    assert effects[0].secret == OLD_SECRET
    assert result is new


@pytest.mark.parametrize(
    "error", [pytest.param(rejected(), id="rejected"), pytest.param(upstream(), id="upstream")]
)
def test_refresh_raises_the_error_sent_in(core: AuthCore, error: CrossmintAuthError) -> None:
    with pytest.raises(CrossmintAuthError) as caught:
        drive(core.refresh(OLD_SECRET), error)
    assert caught.value is error


# -- resolve: every branch ---------------------------------------------------------------------


def test_missing(core: AuthCore) -> None:
    resolution, effects = drive(core.resolve(AuthCookies()))
    assert effects == []
    assert resolution.session is None
    assert resolution.error is not None
    assert resolution.error.code is ErrorCode.MISSING_SESSION


@pytest.mark.parametrize(
    ("refresh_cookie", "refresh_token"),
    [
        pytest.param(OLD_SECRET, RefreshToken(OLD_SECRET), id="with-refresh-cookie"),
        pytest.param(None, None, id="jwt-only"),
    ],
)
def test_valid(
    core: AuthCore, signer: Signer, refresh_cookie: str | None, refresh_token: RefreshToken | None
) -> None:
    warmed(core, signer)
    token = signer.token(email="a@example.com")
    cookies = AuthCookies(token, refresh_cookie, ("crossmint-jwt",))
    resolution, effects = drive(core.resolve(cookies))
    assert effects == []
    assert resolution.error is None
    assert resolution.cookies is cookies
    session = resolution.session
    assert isinstance(session, Session)
    assert (session.jwt, session.user_id, session.refreshed) == (token, "user-1", False)
    assert session.refresh_token == refresh_token
    assert session.claims["email"] == "a@example.com"


@pytest.mark.parametrize(
    "jwt_state",
    [
        pytest.param("expired", id="expired"),
        pytest.param("invalid", id="invalid"),
        pytest.param("absent", id="absent"),
    ],
)
def test_refresh_rescues(core: AuthCore, signer: Signer, jwt_state: str) -> None:
    warmed(core, signer)
    jwt = {
        "expired": signer.token(ttl=-10),
        "invalid": signer.token(aud="another-project"),
        "absent": None,
    }[jwt_state]
    new = material(signer, "user-1", ttl=900)
    resolution, effects = drive(core.resolve(AuthCookies(jwt, OLD_SECRET)), new)
    # An authentic JWT, merely expired, vouches for its user; an invalid one for nobody.
    assert effects == [Refresh(OLD_SECRET, user="user-1" if jwt_state == "expired" else None)]
    session = resolution.session
    assert resolution.error is None
    assert isinstance(session, Session)
    assert session.refreshed
    assert session.jwt == new.jwt
    assert session.refresh_token == new.refresh_token
    assert session.user == new.user
    assert session.user_id == "user-1"
    assert session.claims["exp"] == NOW + 900


@pytest.mark.parametrize(
    ("jwt_state", "refresh_result", "code", "message"),
    [
        pytest.param(
            "expired",
            None,
            ErrorCode.SESSION_EXPIRED,
            "has expired and there is no refresh token",
            id="expired-no-refresh",
        ),
        pytest.param(
            "expired",
            rejected(),
            ErrorCode.SESSION_EXPIRED,
            "did not accept",
            id="expired-refresh-rejected",
        ),
        pytest.param(
            "absent",
            rejected(),
            ErrorCode.SESSION_EXPIRED,
            "did not accept",
            id="no-jwt-refresh-rejected",
        ),
        pytest.param(
            "expired",
            upstream(),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "HTTP 503",
            id="expired-refresh-upstream",
        ),
        pytest.param(
            "invalid",
            None,
            ErrorCode.INVALID_TOKEN,
            "not valid: .*and there is no refresh token",
            id="invalid-no-refresh",
        ),
        pytest.param(
            "invalid",
            rejected(),
            ErrorCode.INVALID_TOKEN,
            "not valid: .*and Crossmint did not accept",
            id="invalid-refresh-rejected",
        ),
        pytest.param(
            "invalid",
            upstream(),
            ErrorCode.UPSTREAM_UNAVAILABLE,
            "HTTP 503",
            id="invalid-refresh-upstream",
        ),
    ],
)
def test_no_session(
    core: AuthCore,
    signer: Signer,
    jwt_state: str,
    refresh_result: CrossmintAuthError | None,
    code: ErrorCode,
    message: str,
) -> None:
    warmed(core, signer)
    jwt = {
        "expired": signer.token(ttl=-10),
        "invalid": signer.token(aud="another-project"),
        "absent": None,
    }[jwt_state]
    refresh = OLD_SECRET if refresh_result is not None else None
    cookies = AuthCookies(jwt, refresh)
    results = (refresh_result,) if refresh_result is not None else ()
    resolution, effects = drive(core.resolve(cookies), *results)
    user = "user-1" if jwt_state == "expired" else None
    assert effects == ([Refresh(OLD_SECRET, user=user)] if refresh else [])
    assert resolution.session is None
    assert resolution.cookies is cookies
    assert resolution.error is not None
    assert resolution.error.code is code
    assert re.search(message, resolution.error.message), resolution.error.message
    assert OLD_SECRET not in resolution.error.message


def test_key_fetch_failure_is_upstream_unavailable_and_does_not_refresh(
    core: AuthCore, signer: Signer
) -> None:
    cookies = AuthCookies(signer.token(), OLD_SECRET)
    resolution, effects = drive(core.resolve(cookies), upstream("ConnectError"))
    assert effects == [FETCH_KEYS]
    assert resolution.session is None
    assert resolution.error is not None
    assert resolution.error.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert not resolution.error.clears_cookies


@pytest.mark.parametrize(
    "new_jwt",
    [
        pytest.param("no-sub", id="without-sub"),
        pytest.param("no-exp", id="without-exp"),
        pytest.param("garbage", id="not-a-jwt"),
    ],
)
def test_refreshed_jwt_without_sub_is_upstream_unavailable(
    core: AuthCore, signer: Signer, new_jwt: str
) -> None:
    jwt = {
        "no-sub": f"{b64json({'alg': 'RS256'})}.{b64json({'exp': NOW + 60})}.c2ln",
        "no-exp": f"{b64json({'alg': 'RS256'})}.{b64json({'sub': 'u'})}.c2ln",
        "garbage": "garbage",
    }[new_jwt]
    bad = AuthMaterial(jwt, RefreshToken(NEW_SECRET, EXPIRES_AT))
    resolution, effects = drive(core.resolve(AuthCookies(None, OLD_SECRET)), bad)
    assert effects == [Refresh(OLD_SECRET)]
    assert resolution.session is None
    assert resolution.error is not None
    assert resolution.error.code is ErrorCode.UPSTREAM_UNAVAILABLE


def test_failed_refresh_is_logged_by_digest(
    core: AuthCore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="crossmint_wsgi"):
        drive(core.resolve(AuthCookies(None, OLD_SECRET)), rejected())
    assert secret_digest(OLD_SECRET)[:12] in caplog.text
    assert "SESSION_EXPIRED" in caplog.text
    assert OLD_SECRET not in caplog.text


# -- cookies for material -------------------------------------------------------------------


def test_session_cookies_expire_with_the_jwt(core: AuthCore, signer: Signer) -> None:
    new = material(signer, ttl=300)
    jwt_cookie, refresh_cookie = core.session_cookies(new, secure=True)
    assert jwt_cookie.startswith(f"crossmint-jwt={new.jwt};")
    expires = datetime.fromtimestamp(NOW + 300, timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert f"Expires={expires}" in jwt_cookie
    assert "Secure" in jwt_cookie
    assert "HttpOnly" not in jwt_cookie
    assert refresh_cookie.startswith(f"crossmint-refresh-token={NEW_SECRET};")
    assert "Expires=Tue, 01 Jan 2030 00:00:00 GMT" in refresh_cookie
    assert "HttpOnly" in refresh_cookie


def test_session_cookies_for_an_unreadable_jwt_have_no_jwt_expiry(core: AuthCore) -> None:
    jwt_cookie, _ = core.session_cookies(
        AuthMaterial("opaque", RefreshToken(NEW_SECRET, EXPIRES_AT)), secure=False
    )
    assert jwt_cookie.startswith("crossmint-jwt=opaque;")
    assert "Expires" not in jwt_cookie


def test_clear_cookies(core: AuthCore) -> None:
    headers = core.clear_cookies(secure=False, names=("crossmint-jwt-project-f",))
    assert [header.split("=", 1)[0] for header in headers] == [
        "crossmint-jwt",
        "crossmint-refresh-token",
        "crossmint-jwt-project-f",
    ]
    assert all("Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header for header in headers)


# -- whose refresh it is: a user's (authentic JWT) or a stranger's ----------------------------

OFFICE = "93.184.216.34"  # a public address real users and a flood share


@pytest.mark.parametrize(
    ("jwt_state", "user"),
    [
        pytest.param("expired", "user-1", id="authentic-expired"),
        pytest.param("forged", None, id="forged-signature"),
        pytest.param("other-audience", None, id="other-audience"),
        pytest.param("other-key", None, id="unknown-kid"),
        pytest.param("revoked", None, id="logged-out"),
        pytest.param("absent", None, id="no-jwt"),
    ],
)
def test_a_blocked_address_still_lets_its_users_refresh(
    core: AuthCore, signer: Signer, rotated: Signer, clock: Clock, jwt_state: str, user: str | None
) -> None:
    warmed(core, signer)
    core.failed_refreshes = FailedRefreshes(limit=1, window=60)
    core.failed_refreshes.failed(OFFICE, "made-up", clock.now)  # the flood
    expired = signer.token(ttl=-10)
    jwt = {
        "expired": expired,
        "forged": expired[: expired.rindex(".") + 1] + signer.token(ttl=-20).rsplit(".", 1)[1],
        "other-audience": signer.token(ttl=-10, aud="another-project"),
        "other-key": rotated.token(ttl=-10),
        "revoked": expired,
        "absent": None,
    }[jwt_state]
    if jwt_state == "revoked":
        core.revoked.add(token_digest(expired), NOW + 60, clock.now)
    flow = core.resolve(AuthCookies(jwt, OLD_SECRET), OFFICE)
    effect = next(flow)
    if isinstance(effect, FetchKeys):
        effect = flow.send(signer.jwks())  # an unknown kid: refetched once
    assert isinstance(effect, Refresh)
    assert effect.user == user
    # A user is never refused for the address; a stranger there is, without a call.
    assert (effect.refused is None) is (user is not None)
    if effect.refused is not None:
        assert "from this address" in effect.refused.message
    flow.close()


def test_a_users_refused_secrets_count_against_the_user_not_the_address(
    core: AuthCore, signer: Signer, clock: Clock
) -> None:
    warmed(core, signer)
    core.failed_refreshes = FailedRefreshes(limit=2, window=60)
    jwt = signer.token("user-9", ttl=-10)
    for index in range(2):
        drive(core.resolve(AuthCookies(jwt, f"made-up-{index}"), OFFICE), rejected())
    # That user is now bounded, wherever they come from...
    for address in (OFFICE, "151.101.1.69"):
        flow = core.resolve(AuthCookies(jwt, "made-up-2"), address)
        effect = next(flow)
        assert effect.refused is not None
        assert "for this user" in effect.refused.message
        flow.close()
    # ...while the address, and strangers there, are not.
    assert core.failed_refreshes.refusal(OFFICE, clock.now) is None
    _, effects = drive(core.resolve(AuthCookies(None, "a-login-secret"), OFFICE), rejected())
    assert effects == [Refresh("a-login-secret")]


def test_strangers_secrets_in_flight_count_against_the_address(
    core: AuthCore, clock: Clock
) -> None:
    core.failed_refreshes = FailedRefreshes(limit=2, window=60)
    flows = [core.resolve(AuthCookies(None, f"made-up-{index}"), OFFICE) for index in range(3)]
    effects = [next(flow) for flow in flows]
    # Two calls in flight: the third is refused before its call, not after.
    assert [effect.refused is None for effect in effects] == [True, True, False]
    # The same secret again (a page's parallel requests) joins, adding no call.
    joining = core.resolve(AuthCookies(None, "made-up-0"), OFFICE)
    assert next(joining).refused is None
    for flow in (*flows[:2], joining):
        with pytest.raises(StopIteration):
            flow.send(rejected())
    # Landed as refusals: the address stays blocked, now for the window.
    assert core.failed_refreshes.blocked_for(OFFICE, clock.now) == 60
    assert not core.failed_refreshes._pending


@pytest.mark.parametrize(
    ("strangers", "vouched", "allowed"),
    [
        pytest.param(2, False, True, id="stranger-under-its-share"),
        pytest.param(3, False, False, id="stranger-past-its-share"),
        pytest.param(3, True, True, id="user-takes-the-reserve"),
        pytest.param(4, True, False, id="all-full"),
    ],
)
def test_upstream_calls_keep_slots_for_users(
    crossmint: Crossmint, strangers: int, vouched: bool, allowed: bool
) -> None:
    core = AuthCore(crossmint, max_concurrent_refreshes=4)  # a quarter kept: 1
    user = "user-1" if vouched else None
    with contextlib.ExitStack() as stack:
        for index in range(strangers):
            # Whoever holds them: users may hold the strangers' share too.
            holder = "user-2" if index == 3 else None
            stack.enter_context(core.upstream_call(Refresh(f"s{index}", user=holder)))
        if allowed:
            with core.upstream_call(Refresh(OLD_SECRET, user=user)):
                pass
        else:
            with pytest.raises(CrossmintAuthError) as caught:
                stack.enter_context(core.upstream_call(Refresh(OLD_SECRET, user=user)))
            assert caught.value.code is ErrorCode.UPSTREAM_UNAVAILABLE
    assert core.upstream_slots.in_flight == 0


# -- logouts: strangers bounded, users never ---------------------------------------------

PUBLIC = "93.184.216.34"  # a public address (documentation ranges are not)


def _logout_effects(core: AuthCore, secret: str, jwt: str | None, client: str) -> list[Any]:
    """The effects a logout yields, answered: no successors, Crossmint fine."""
    flow = core.logout(secret, jwt, client)
    effects: list[Any] = []
    try:
        effect = next(flow)
        while True:
            effects.append(type(effect).__name__)
            effect = flow.send([] if type(effect).__name__ == "Revoke" else None)
    except StopIteration:
        return effects


@pytest.mark.parametrize(
    ("jwt", "bounded"),
    [
        pytest.param(None, True, id="no-jwt"),
        pytest.param("not.a.jwt", True, id="forged-jwt"),
        pytest.param("expired", False, id="authentic-expired-jwt"),
        pytest.param("live", False, id="authentic-live-jwt"),
    ],
)
def test_a_flood_of_logouts_from_one_address_is_bounded_unless_a_user_sends_it(
    crossmint: Crossmint, clock: Clock, signer: Signer, jwt: str | None, bounded: bool
) -> None:
    core = AuthCore(crossmint, clock=clock, leeway=0, jwks=signer.jwks(), refresh_failure_limit=3)
    calls = 0
    for n in range(10):
        token = jwt
        if jwt == "expired":
            token = signer.token(f"user-{n}", ttl=-60)
        elif jwt == "live":
            token = signer.token(f"user-{n}")
        effects = _logout_effects(core, f"made-up-secret-{n:04d}", token, PUBLIC)
        calls += effects.count("Logout")
    # Past the bound a stranger's logout costs nothing: no coordinator state, no upstream call.
    assert calls == (3 if bounded else 10)
