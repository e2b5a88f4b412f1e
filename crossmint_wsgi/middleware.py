"""GatedMiddleware: what the WSGI and ASGI middlewares (and framework ones) are made of.

The options every middleware takes are :class:`~crossmint_wsgi.routes.Gate`'s;
this is where an app, an auth and those options become one middleware, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .caches import CacheStats
from .errors import CrossmintConfigError
from .routes import Gate

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    from .auth_base import _AuthBase

    class GateOptions(TypedDict, total=False):
        """:class:`~crossmint_wsgi.routes.Gate`'s options, as the middlewares take them."""

        refresh_path: str | None
        logout_path: str | None
        protect: str | Iterable[str] | Callable[[str], bool]
        login_url: str | None
        allowed_origins: Iterable[str]
        max_body: int
        retry_after: int
        client_ip_header: str | None


__all__ = ["GatedMiddleware"]

AppT = TypeVar("AppT")
AuthT = TypeVar("AuthT", bound="_AuthBase[Any, Any]")


class GatedMiddleware(Generic[AppT, AuthT]):
    """What both middlewares are made of: the app, the auth, and the :class:`Gate`.

    The WSGI and ASGI middlewares take the same options (:class:`Gate`'s);
    this is where they are turned into decisions, once.
    """

    #: The auth class this middleware drives.
    AUTH: ClassVar[type[Any]]

    def __init__(self, app: AppT, auth: AuthT, **options: Unpack[GateOptions]) -> None:
        if not isinstance(auth, self.AUTH):
            wanted = self.AUTH.__name__
            raise CrossmintConfigError(
                f"auth: {type(self).__name__} needs a {wanted}, not {type(auth).__name__}: "
                f"use {wanted}(create_crossmint(api_key))",
                setting="auth",
            )
        self.app = app
        self.auth = auth
        self.gate = Gate(auth.core, **options)

    def cache_stats(self) -> list[CacheStats]:
        """The figures of every cache behind this middleware: the auth's and its sessions'."""
        return [*self.auth.cache_stats(), self.gate.recent.stats()]
