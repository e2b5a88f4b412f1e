"""Crossmint sessions in Quart views, which take no request argument.

Wrap Quart's ASGI app (``app.asgi_app``) in
:class:`~crossmint_wsgi.CrossmintASGIMiddleware`; then:

.. code-block:: python

    @app.get("/api/me")
    @require_session
    async def me(session: Session):
        return {"user_id": session.user_id}
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import quart
from werkzeug.datastructures import Headers

from ..answers import refusal
from ..asgi import get_asgi_error, get_asgi_session
from ..models import Session

__all__ = ["current_session", "require_session"]

F = TypeVar("F", bound=Callable[..., Any])


def _connection() -> Any:
    if quart.has_request_context():
        return quart.request
    if quart.has_websocket_context():
        return quart.websocket
    raise RuntimeError("no Quart request or websocket is being handled here")


def current_session() -> Session | None:
    """The session of the request (or websocket) being handled, or ``None``.

    :raises RuntimeError: outside a request, or when CrossmintASGIMiddleware
        does not wrap the app.
    """
    return get_asgi_session(_connection())


def require_session(view: F) -> F:
    """Decorate a Quart view so it runs only with a session.

    Without one it answers as the middleware does: 401 JSON, or 503 with
    ``Retry-After`` when Crossmint is unavailable. The session is passed as
    the keyword ``session`` when the view takes it. Sync views run as Quart
    runs them, in a thread.
    """
    accepts_session = "session" in inspect.signature(view).parameters

    @functools.wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        connection = _connection()
        session = get_asgi_session(connection)
        if session is None:
            answer = refusal(get_asgi_error(connection))
            return quart.Response(
                answer.body, status=answer.status, headers=Headers(answer.headers)
            )
        if accepts_session:
            kwargs["session"] = session
        return await quart.current_app.ensure_async(view)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
