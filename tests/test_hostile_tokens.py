"""Hostile JWTs: forged, broken, misdirected. None may ever yield a session.

Every token of :data:`reliability_cases.HOSTILE_TOKENS` goes through
``get_session`` (blocking and async) and through both middlewares, on a
protected and on a public path. Each must earn its code: ``INVALID_TOKEN``,
except a genuine but expired token, ``SESSION_EXPIRED``; and the cookies that
carried it are cleared.

With a *genuine refresh cookie* alongside, a hostile JWT is simply replaced:
the middleware refreshes with the refresh secret and the request gets the
refresh token owner's session, with new cookies. That is the correct
behaviour (the refresh secret is the real credential; the JWT is a cache of
it): the tests check the session belongs to the refresh cookie's owner and
never to the user the hostile token names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from reliability_cases import (
    ATTACKER,
    CLEARED,
    HOSTILE_TOKENS,
    NEW_SESSION,
    OWNER,
    PROTECTED,
    PUBLIC,
    VICTIM,
    Expect,
    Hostile,
    Req,
    all_ids,
    asgi_stack,
    call_httpx,
    call_wsgi,
    claims_of,
    cookie_header,
    header_of,
    make_async_auth,
    make_auth,
    no_cookie_client,
    problems_with,
    wsgi_stack,
)

from crossmint_wsgi import AsyncCrossmintAuth, CrossmintAuth, CrossmintAuthError
from crossmint_wsgi.testing import CrossmintEmulator


@pytest.fixture
def auth(crossmint_emulator: CrossmintEmulator) -> Iterator[CrossmintAuth]:
    """Fresh caches for every test, without rebuilding an SSL context each time."""
    with make_auth(crossmint_emulator.crossmint(), leeway=0) as instance:
        yield instance


@pytest.fixture
async def async_auth(crossmint_emulator: CrossmintEmulator) -> AsyncIterator[AsyncCrossmintAuth]:
    async with make_async_auth(crossmint_emulator.crossmint(), leeway=0) as instance:
        yield instance


HOSTILE = [pytest.param(hostile, id=hostile.id) for hostile in HOSTILE_TOKENS]
PATHS = [pytest.param(PROTECTED, id="protected"), pytest.param(PUBLIC, id="public")]


def refused(hostile: Hostile, path: str) -> Expect:
    """A protected path answers 401; a public one runs the app without a session."""
    if path == PROTECTED:
        return Expect(401, hostile.code, app=False, cookies=CLEARED)
    return Expect(200, hostile.code, app=True, user=False, cookies=CLEARED)


#: With a genuine refresh cookie: the owner's refreshed session, new cookies.
RESCUED = Expect(200, None, app=True, user=True, cookies=NEW_SESSION)


def test_the_table_covers_the_issue() -> None:
    ids = set(all_ids(HOSTILE_TOKENS))
    for required in (
        "alg-none",
        "hs256-public-key-pem-as-secret",
        "unknown-kid",
        "right-kid-other-key",
        "tampered-payload",
        "expired",
        "nbf-in-the-future",
        "wrong-aud",
        "missing-sub",
        "100-kb-token",
        "jwe-instead-of-jws",
    ):
        assert required in ids
    assert [h.id for h in HOSTILE_TOKENS if h.code != "INVALID_TOKEN"] == ["expired"]


def test_the_forgeries_are_well_formed(crossmint_emulator: CrossmintEmulator) -> None:
    """The hostile tokens are what they claim: a failing test must not be a broken fixture."""
    tokens = {h.id: h.make(crossmint_emulator) for h in HOSTILE_TOKENS}
    assert tokens["jwe-instead-of-jws"].count(".") == 4
    assert len(tokens["100-kb-token"]) > 100_000
    assert claims_of(tokens["tampered-payload"])["sub"] == "admin"
    assert tokens["alg-none"].endswith(".")
    assert header_of(tokens["right-kid-other-key"])["kid"] == crossmint_emulator.kid
    assert header_of(tokens["hs256-public-key-pem-as-secret"])["alg"] == "HS256"
    assert header_of(tokens["alg-none"])["alg"] == "none"
    # The same claims signed by Crossmint's key verify: only the forgery differs.
    genuine = crossmint_emulator.issue_jwt(VICTIM)
    with make_auth(crossmint_emulator.crossmint(), leeway=0) as auth:
        assert auth.get_session(jwt=genuine).user_id == VICTIM


@pytest.mark.parametrize("hostile", HOSTILE)
def test_get_session_refuses(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile
) -> None:
    token = hostile.make(crossmint_emulator)
    with pytest.raises(CrossmintAuthError) as info:
        auth.get_session(jwt=token)
    assert info.value.code.value == hostile.code
    with pytest.raises(CrossmintAuthError) as info:
        auth.verify_crossmint_jwt(token)
    assert info.value.code.value == hostile.code
    # The error says why without repeating the token.
    assert token not in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", HOSTILE)
async def test_async_get_session_refuses(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile
) -> None:
    token = hostile.make(crossmint_emulator)
    with pytest.raises(CrossmintAuthError) as info:
        await async_auth.get_session(jwt=token)
    assert info.value.code.value == hostile.code


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_wsgi_middleware_refuses(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile, path: str
) -> None:
    token = hostile.make(crossmint_emulator)
    reply = call_wsgi(wsgi_stack(auth), Req(path=path, cookie=cookie_header(token)))
    assert problems_with(reply, refused(hostile, path)) == []


@pytest.mark.anyio
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hostile", HOSTILE)
async def test_asgi_middleware_refuses(
    async_auth: AsyncCrossmintAuth,
    crossmint_emulator: CrossmintEmulator,
    hostile: Hostile,
    path: str,
) -> None:
    token = hostile.make(crossmint_emulator)
    async with no_cookie_client(asgi_stack(async_auth)) as client:
        reply = await call_httpx(client, Req(path=path, cookie=cookie_header(token)))
    assert problems_with(reply, refused(hostile, path)) == []


@pytest.mark.parametrize("hostile", HOSTILE)
def test_get_session_with_genuine_refresh_gives_the_owner(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile
) -> None:
    owner = crossmint_emulator.create_session(OWNER)
    session = auth.get_session(
        jwt=hostile.make(crossmint_emulator), refresh_token=owner.refresh_token.secret
    )
    assert session.user_id == OWNER
    assert session.refreshed
    assert claims_of(session.jwt)["sub"] == OWNER
    assert crossmint_emulator.requests["refresh"] == 1


@pytest.mark.parametrize("hostile", HOSTILE)
def test_wsgi_hostile_jwt_is_replaced_by_the_refresh_owners_session(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile
) -> None:
    owner = crossmint_emulator.create_session(OWNER)
    cookie = cookie_header(hostile.make(crossmint_emulator), owner.refresh_token.secret)
    reply = call_wsgi(wsgi_stack(auth), Req(path=PROTECTED, cookie=cookie))
    assert problems_with(reply, RESCUED, OWNER) == []
    assert ATTACKER.encode() not in reply.body
    assert b"admin" not in reply.body


@pytest.mark.anyio
@pytest.mark.parametrize("hostile", HOSTILE)
async def test_asgi_hostile_jwt_is_replaced_by_the_refresh_owners_session(
    async_auth: AsyncCrossmintAuth, crossmint_emulator: CrossmintEmulator, hostile: Hostile
) -> None:
    owner = crossmint_emulator.create_session(OWNER)
    cookie = cookie_header(hostile.make(crossmint_emulator), owner.refresh_token.secret)
    async with no_cookie_client(asgi_stack(async_auth)) as client:
        reply = await call_httpx(client, Req(path=PROTECTED, cookie=cookie))
    assert problems_with(reply, RESCUED, OWNER) == []
    assert ATTACKER.encode() not in reply.body


def test_hostile_jwt_with_a_rejected_refresh_keeps_its_code(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    """A forged JWT with a worthless refresh secret is INVALID_TOKEN, not SESSION_EXPIRED."""
    forged = next(h for h in HOSTILE_TOKENS if h.id == "right-kid-other-key")
    cookie = cookie_header(forged.make(crossmint_emulator), "not-a-refresh-secret")
    reply = call_wsgi(wsgi_stack(auth), Req(path=PROTECTED, cookie=cookie))
    assert problems_with(reply, Expect(401, "INVALID_TOKEN", app=False, cookies=CLEARED)) == []


def test_a_forged_refresh_answer_is_never_needed_to_reject(
    auth: CrossmintAuth, crossmint_emulator: CrossmintEmulator
) -> None:
    """Hostile tokens are refused locally: no refresh call is made without a refresh cookie."""
    app = wsgi_stack(auth)
    for hostile in HOSTILE_TOKENS:
        call_wsgi(app, Req(path=PROTECTED, cookie=cookie_header(hostile.make(crossmint_emulator))))
    assert crossmint_emulator.requests["refresh"] == 0
    # One fetch at start, at most one more for the unknown kids (rate limited).
    assert crossmint_emulator.requests["jwks"] <= 2
