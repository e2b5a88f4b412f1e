"""Crossmint sessions as FastAPI dependencies.

The session comes from :class:`~crossmint_wsgi.CrossmintASGIMiddleware`
wrapping the app; these dependencies read it, refuse a request without one
exactly as the middleware does, and document the cookie in OpenAPI:

.. code-block:: python

    app = FastAPI()
    app.add_middleware(CrossmintASGIMiddleware, auth=auth)
    add_exception_handler(app)

    @app.get("/api/me")
    async def me(session: CrossmintSession) -> dict[str, str]:
        return {"user_id": session.user_id}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyCookie
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ..answers import Answer, refusal
from ..asgi import get_asgi_error, get_asgi_session
from ..cookies import JWT_COOKIE
from ..errors import CrossmintAuthError
from ..models import Session

__all__ = [
    "CrossmintRefusal",
    "CrossmintSession",
    "OptionalCrossmintSession",
    "add_exception_handler",
    "cookie_scheme",
    "optional_session",
    "refusal_handler",
    "require_session",
]


class _SessionCookie(APIKeyCookie):
    """The session cookie in the OpenAPI schema; as a dependency, the verified JWT.

    It never reads the cookie itself: a request may carry ``crossmint-jwt``
    twice, and Starlette keeps another of the values than a verifier would.
    What it gives is the JWT of the session the middleware verified and
    published, or ``None`` without one.
    """

    async def __call__(self, request: HTTPConnection) -> str | None:
        session = get_asgi_session(request)
        return session.jwt if session is not None else None


#: The OpenAPI security scheme: the session cookie. As a dependency it gives
#: the JWT of the session the middleware verified (``None`` without one),
#: never the cookie as Starlette reads it.
cookie_scheme = _SessionCookie(
    name=JWT_COOKIE,
    scheme_name="CrossmintSession",
    description="The Crossmint session JWT, set by Crossmint's browser SDK or the refresh route.",
    auto_error=False,
)

# Headers of the middleware's answer that still hold when FastAPI renders the body itself.
_KEPT_HEADERS = frozenset({"retry-after", "cache-control"})


class CrossmintRefusal(HTTPException):
    """Raised by :func:`require_session`: the middleware's 401 or 503, as an exception.

    With :func:`add_exception_handler` installed it is answered exactly as
    the middleware answers (``{"error", "message"}`` JSON, ``Retry-After``
    on a 503); without it FastAPI's own handler answers the same status and
    headers with the JSON under ``"detail"``.

    :param error: why the request has no session; ``None``: it carries none.
    :param retry_after: the ``Retry-After`` seconds of a 503.
    """

    def __init__(self, error: CrossmintAuthError | None, *, retry_after: int = 5) -> None:
        self.error = error
        self.answer: Answer = refusal(error, retry_after=retry_after)
        super().__init__(
            status_code=self.answer.status,
            detail=self.answer.json(),
            headers={k: v for k, v in self.answer.headers if k.lower() in _KEPT_HEADERS},
        )


async def refusal_handler(request: Request, exc: Exception) -> Response:
    """The exception handler that answers a :class:`CrossmintRefusal` as the middleware does."""
    if not isinstance(exc, CrossmintRefusal):  # registered for CrossmintRefusal only
        raise exc
    answer = exc.answer
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


def add_exception_handler(app: Starlette) -> None:
    """Register :func:`refusal_handler` for :class:`CrossmintRefusal` on ``app``.

    Call it when building the app (before it serves): Starlette fixes its
    exception handlers on the first request.
    """
    app.add_exception_handler(CrossmintRefusal, refusal_handler)


def optional_session(
    conn: HTTPConnection,
    _cookie: Annotated[str | None, Depends(cookie_scheme)] = None,
) -> Session | None:
    """Dependency: the request's session, or ``None`` for an anonymous visitor.

    :raises RuntimeError: when CrossmintASGIMiddleware does not wrap the app.
    """
    return get_asgi_session(conn)


def require_session(
    conn: HTTPConnection,
    _cookie: Annotated[str | None, Depends(cookie_scheme)] = None,
) -> Session:
    """Dependency: the request's session; without one, raise :class:`CrossmintRefusal`.

    That is 401 (``MISSING_SESSION``, ``SESSION_EXPIRED``, ``INVALID_TOKEN``)
    or 503 with ``Retry-After`` (``UPSTREAM_UNAVAILABLE``).

    :raises RuntimeError: when CrossmintASGIMiddleware does not wrap the app.
    """
    session = get_asgi_session(conn)
    if session is None:
        raise CrossmintRefusal(get_asgi_error(conn))
    return session


#: A route parameter typed ``CrossmintSession`` gets the session, or the route answers 401/503.
CrossmintSession = Annotated[Session, Depends(require_session)]
#: A route parameter typed ``OptionalCrossmintSession`` gets the session or ``None``.
OptionalCrossmintSession = Annotated[Session | None, Depends(optional_session)]
