"""Crossmint server-side authentication for any WSGI or ASGI app."""

from __future__ import annotations

from .answers import Answer
from .asgi import CrossmintASGIMiddleware, get_asgi_error, get_asgi_session, require_asgi_session
from .auth import AsyncCrossmintAuth, CrossmintAuth
from .config import Crossmint, Environment, UsageOrigin, create_crossmint
from .coordination import (
    AsyncLocalCoordinator,
    AsyncRefreshCoordinator,
    LocalCoordinator,
    RefreshCoordinator,
)
from .errors import CrossmintAuthError, CrossmintConfigError, CrossmintError, ErrorCode
from .models import AuthMaterial, CookieOptions, RefreshToken, Session, User
from .wsgi import CrossmintWSGIMiddleware, get_session, require_session

__version__ = "0.1.0"

__all__ = [
    "Answer",
    "AsyncCrossmintAuth",
    "AsyncLocalCoordinator",
    "AsyncRefreshCoordinator",
    "AuthMaterial",
    "CookieOptions",
    "Crossmint",
    "CrossmintASGIMiddleware",
    "CrossmintAuth",
    "CrossmintAuthError",
    "CrossmintConfigError",
    "CrossmintError",
    "CrossmintWSGIMiddleware",
    "Environment",
    "ErrorCode",
    "LocalCoordinator",
    "RefreshCoordinator",
    "RefreshToken",
    "Session",
    "UsageOrigin",
    "User",
    "__version__",
    "create_crossmint",
    "get_asgi_error",
    "get_asgi_session",
    "get_session",
    "require_asgi_session",
    "require_session",
]
