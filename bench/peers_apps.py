"""What ``bench/peers.py`` serves: one hello-world app, four ways to put Crossmint in front of it.

- ``bare``: no authentication at all (the baseline);
- ``ours``: :class:`~crossmint_wsgi.CrossmintASGIMiddleware` / ``CrossmintWSGIMiddleware``;
- ``pyjwt``: what a team writes with PyJWT: a ``PyJWKClient`` for the key set,
  ``jwt.decode`` on every request, a refresh call to Crossmint when the JWT
  has expired (pure ASGI middleware for Starlette, ``before_request`` for Flask);
- ``joserfc``: the same with joserfc (``KeySet`` fetched once, ``jwt.decode``
  and a ``JWTClaimsRegistry``).

The hand-written variants are what the Crossmint JS SDK does, in Python: verify
every request, refresh on expiry, no sharing of a refresh between requests.
Every app answers ``GET /`` with ``Hello, world!`` (200) and ``GET /me`` with
the user id (200) or 401 without a session.

The servers load this module by name (``peers_apps:starlette_ours``,
``peers_apps:flask_pyjwt``...) with ``CROSSMINT_EMULATOR_URL`` set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx

REFRESH_PATH = "/api/2024-09-26/session/sdk/auth/refresh"
HELLO = b"Hello, world!"


def _settings() -> tuple[str, str, str]:
    """The emulator's URL, API key and project id (read once, at start-up)."""
    from crossmint_wsgi.testing import connect_emulator

    url = os.environ["CROSSMINT_EMULATOR_URL"].rstrip("/")
    crossmint = connect_emulator(url)
    return url, crossmint.api_key, crossmint.project_id


# -- the hand-written verifiers -------------------------------------------------------------


class Expired(Exception):
    """The JWT's signature is good but it has expired."""


def pyjwt_verifier(url: str, project_id: str) -> Callable[[str], dict[str, Any]]:
    """``verify(token) -> claims`` as PyJWT's documentation shows it."""
    import jwt

    client = jwt.PyJWKClient(f"{url}/.well-known/jwks.json")

    def verify(token: str) -> dict[str, Any]:
        key = client.get_signing_key_from_jwt(token)
        try:
            return jwt.decode(token, key.key, algorithms=["RS256", "ES256"], audience=project_id)
        except jwt.ExpiredSignatureError:
            raise Expired from None

    return verify


def joserfc_verifier(url: str, project_id: str) -> Callable[[str], dict[str, Any]]:
    """``verify(token) -> claims`` with joserfc: key set fetched once, claims registry."""
    from joserfc import jwt
    from joserfc.errors import ExpiredTokenError
    from joserfc.jwk import KeySet

    keys = KeySet.import_key_set(httpx.get(f"{url}/.well-known/jwks.json").json())
    registry = jwt.JWTClaimsRegistry(
        exp={"essential": True}, sub={"essential": True}, aud={"value": project_id}
    )

    def verify(token: str) -> dict[str, Any]:
        decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise Expired from None
        return dict(decoded.claims)

    return verify


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def _refreshed_cookies(answer: dict[str, Any]) -> list[str]:
    return [
        f"crossmint-jwt={answer['jwt']}; Path=/; SameSite=Lax",
        f"crossmint-refresh-token={answer['refresh']['secret']}; Path=/; SameSite=Lax",
    ]


_CLEARED = [
    "crossmint-jwt=; Path=/; Max-Age=0",
    "crossmint-refresh-token=; Path=/; Max-Age=0",
]


def decide(
    verify: Callable[[str], dict[str, Any]],
    refresh: Callable[[str], dict[str, Any] | None],
    cookies: dict[str, str],
) -> tuple[dict[str, Any] | None, list[str]]:
    """The claims of a request's session (or ``None``) and the cookies to set."""
    token = cookies.get("crossmint-jwt")
    secret = cookies.get("crossmint-refresh-token")
    if token:
        try:
            return verify(token), []
        except Expired:
            pass
        except Exception:
            return None, _CLEARED
    if not secret:
        return None, []
    answer = refresh(secret)
    if answer is None:
        return None, _CLEARED
    return json.loads(_b64(answer["jwt"].split(".")[1])), _refreshed_cookies(answer)


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# -- Starlette ------------------------------------------------------------------------------


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return PlainTextResponse(HELLO)

    async def me(request: Request) -> Response:
        state = request.scope.get("state") or {}
        session = state.get("crossmint_session")
        sub = getattr(session, "user_id", None) or (state.get("claims") or {}).get("sub")
        return PlainTextResponse(sub or "no session", status_code=200 if sub else 401)

    return Starlette(routes=[Route("/", hello), Route("/me", me)])


def starlette_bare() -> Any:
    return _starlette_app()


def starlette_ours() -> Any:
    from crossmint_wsgi import AsyncCrossmintAuth, CrossmintASGIMiddleware
    from crossmint_wsgi.testing import connect_emulator

    auth = AsyncCrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))
    return CrossmintASGIMiddleware(_starlette_app(), auth)


def _hand_written_asgi(make: Callable[[str, str], Callable[[str], dict[str, Any]]]) -> Any:
    url, api_key, project_id = _settings()
    verify = make(url, project_id)
    app = _starlette_app()
    client = httpx.AsyncClient(base_url=url, headers={"x-api-key": api_key})

    async def refresh(secret: str) -> dict[str, Any] | None:
        answer = await client.post(REFRESH_PATH, json={"refresh": secret})
        return answer.json() if answer.status_code == 200 else None

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"cookie"), b"")
        cookies = _cookies(header.decode("latin-1"))
        answer: dict[str, Any] | None = None
        token, secret = cookies.get("crossmint-jwt"), cookies.get("crossmint-refresh-token")
        if token is not None or secret is not None:
            # decide() with an async refresh: written out, as a team would.
            claims, extra = None, []
            expired = token is None
            if token:
                try:
                    claims = verify(token)
                except Expired:
                    expired = True
                except Exception:
                    extra = _CLEARED
            if claims is None and expired and secret:
                answer = await refresh(secret)
                if answer is None:
                    extra = _CLEARED
                else:
                    claims = json.loads(_b64(answer["jwt"].split(".")[1]))
                    extra = _refreshed_cookies(answer)
            scope["state"] = {**(scope.get("state") or {}), "claims": claims}
            if extra:
                headers = [(b"set-cookie", value.encode("latin-1")) for value in extra]

                async def send_with(message: Any) -> None:
                    if message["type"] == "http.response.start":
                        message = {**message, "headers": [*message["headers"], *headers]}
                    await send(message)

                await app(scope, receive, send_with)
                return
        await app(scope, receive, send)

    return middleware


def starlette_pyjwt() -> Any:
    return _hand_written_asgi(pyjwt_verifier)


def starlette_joserfc() -> Any:
    return _hand_written_asgi(joserfc_verifier)


# -- Flask ----------------------------------------------------------------------------------


def _flask_app() -> Any:
    from flask import Flask, g, request

    app = Flask("peers")

    @app.get("/")
    def hello() -> Any:
        return HELLO, 200, {"Content-Type": "text/plain"}

    @app.get("/me")
    def me() -> Any:
        session = request.environ.get("crossmint.session")
        sub = getattr(session, "user_id", None) or (g.get("claims") or {}).get("sub")
        return (sub or "no session"), 200 if sub else 401

    return app


def flask_bare() -> Any:
    return _flask_app()


def flask_ours() -> Any:
    from crossmint_wsgi import CrossmintAuth, CrossmintWSGIMiddleware
    from crossmint_wsgi.testing import connect_emulator

    app = _flask_app()
    auth = CrossmintAuth(connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"]))
    app.wsgi_app = CrossmintWSGIMiddleware(app.wsgi_app, auth)  # type: ignore[method-assign]
    return app


def _hand_written_flask(make: Callable[[str, str], Callable[[str], dict[str, Any]]]) -> Any:
    from flask import g, request

    url, api_key, project_id = _settings()
    verify = make(url, project_id)
    client = httpx.Client(base_url=url, headers={"x-api-key": api_key})
    app = _flask_app()

    def refresh(secret: str) -> dict[str, Any] | None:
        answer = client.post(REFRESH_PATH, json={"refresh": secret})
        return answer.json() if answer.status_code == 200 else None

    @app.before_request
    def load_session() -> None:
        g.claims, g.set_cookies = decide(verify, refresh, dict(request.cookies))

    @app.after_request
    def write_cookies(response: Any) -> Any:
        for value in g.get("set_cookies", ()):
            response.headers.add("Set-Cookie", value)
        return response

    return app


def flask_pyjwt() -> Any:
    return _hand_written_flask(pyjwt_verifier)


def flask_joserfc() -> Any:
    return _hand_written_flask(joserfc_verifier)
