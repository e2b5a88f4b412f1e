"""Crossmint server-side authentication for any WSGI or ASGI app."""

from __future__ import annotations

from .config import Crossmint, Environment, UsageOrigin, create_crossmint
from .errors import CrossmintAuthError, CrossmintConfigError, CrossmintError, ErrorCode
from .models import AuthMaterial, CookieOptions, RefreshToken, Session, User

__version__ = "0.1.0"

__all__ = [
    "AuthMaterial",
    "CookieOptions",
    "Crossmint",
    "CrossmintAuthError",
    "CrossmintConfigError",
    "CrossmintError",
    "Environment",
    "ErrorCode",
    "RefreshToken",
    "Session",
    "UsageOrigin",
    "User",
    "create_crossmint",
]
