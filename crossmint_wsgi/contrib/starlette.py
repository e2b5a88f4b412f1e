"""Crossmint sessions as Starlette authentication: ``request.user``, ``@requires``.

:class:`CrossmintBackend` turns the session that
:class:`~crossmint_wsgi.CrossmintASGIMiddleware` published into Starlette's
user and credentials. Put our middleware outside Starlette's
``AuthenticationMiddleware``:

.. code-block:: python

    app = Starlette(routes=..., middleware=[
        Middleware(CrossmintASGIMiddleware, auth=auth),
        Middleware(AuthenticationMiddleware, backend=CrossmintBackend()),
    ])
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection

from ..asgi import get_asgi_session
from ..models import Session

__all__ = ["CrossmintBackend", "CrossmintUser"]


class CrossmintUser(BaseUser):
    """A signed-in Crossmint user, as Starlette's ``request.user``.

    :param session: the request's :class:`~crossmint_wsgi.Session`.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def __repr__(self) -> str:
        return f"<CrossmintUser {self.session.user_id!r}>"

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        """The user id: the JWT carries nothing else (a refresh brings ``session.user``)."""
        return self.session.user_id

    @property
    def identity(self) -> str:
        """The Crossmint user id."""
        return self.session.user_id


class CrossmintBackend(AuthenticationBackend):
    """Starlette authentication from the session our ASGI middleware published.

    A request without a session is anonymous (Starlette's
    ``UnauthenticatedUser``), whatever the reason: a public page still
    renders while Crossmint is down. ``@requires("authenticated")`` then
    answers Starlette's 403 (or redirects); protect paths with the
    middleware's ``protect`` to answer 401 or 503 JSON instead.

    :param scopes: the scopes a signed-in user gets in ``request.auth``.
    :raises RuntimeError: (per request) when CrossmintASGIMiddleware does not
        wrap Starlette's ``AuthenticationMiddleware``.
    """

    def __init__(self, scopes: Iterable[str] = ("authenticated",)) -> None:
        self.scopes = list(scopes)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        session = get_asgi_session(conn)
        if session is None:
            return None
        return AuthCredentials(self.scopes), CrossmintUser(session)
