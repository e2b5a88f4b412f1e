"""The Django middleware's configuration, read from the Django settings.

:func:`auth_for` finds or builds the auth object for the mode Django runs the
middleware in (``CROSSMINT_AUTH``, ``CROSSMINT_ASYNC_AUTH``, or one built from
``CROSSMINT_API_KEY``); :func:`middleware_options` reads the middleware's
options (:data:`MIDDLEWARE_SETTINGS`). See :mod:`crossmint_wsgi.contrib.django`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..auth import AsyncCrossmintAuth, CrossmintAuth
from ..config import create_crossmint
from ..errors import CrossmintConfigError

__all__ = ["MIDDLEWARE_SETTINGS", "auth_for", "middleware_options"]

#: Django setting -> the middleware keyword it sets; unset settings keep the middleware's default.
MIDDLEWARE_SETTINGS = {
    "CROSSMINT_PROTECT": "protect",
    "CROSSMINT_LOGIN_URL": "login_url",
    "CROSSMINT_REFRESH_PATH": "refresh_path",
    "CROSSMINT_LOGOUT_PATH": "logout_path",
    "CROSSMINT_ALLOWED_ORIGINS": "allowed_origins",
    "CROSSMINT_MAX_BODY": "max_body",
    "CROSSMINT_RETRY_AFTER": "retry_after",
}


def _configured_auth(name: str, kind: type[Any]) -> Any:
    """The auth object setting ``name`` holds (or names by dotted path), or ``None``."""
    value = getattr(settings, name, None)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as error:
            raise ImproperlyConfigured(f"{name}: {error}") from error
    if not isinstance(value, kind):
        found = type(value).__name__
        message = f"{name} must be a {kind.__name__} (or its dotted path), not {found}"
        if isinstance(value, (CrossmintAuth, AsyncCrossmintAuth)):
            other = "CROSSMINT_ASYNC_AUTH" if kind is CrossmintAuth else "CROSSMINT_AUTH"
            message += f"; a {found} goes in {other}"
        raise ImproperlyConfigured(message)
    return value


def _auth_from_key(kind: type[CrossmintAuth] | type[AsyncCrossmintAuth]) -> Any:
    api_key = getattr(settings, "CROSSMINT_API_KEY", None)
    if not api_key:
        return None
    try:
        crossmint = create_crossmint(
            api_key,
            base_url=getattr(settings, "CROSSMINT_BASE_URL", None),
            app_id=getattr(settings, "CROSSMINT_APP_ID", None),
        )
    except CrossmintConfigError as error:
        # The error names the failing step, never the key.
        raise ImproperlyConfigured(f"CROSSMINT_API_KEY: {error}") from error
    options = getattr(settings, "CROSSMINT_AUTH_OPTIONS", None) or {}
    try:
        return kind(crossmint, **options)
    except (TypeError, CrossmintConfigError) as error:
        raise ImproperlyConfigured(f"CROSSMINT_AUTH_OPTIONS: {error}") from error


def auth_for(is_async: bool) -> CrossmintAuth | AsyncCrossmintAuth:
    """The auth object for the mode Django runs the middleware in, from the settings."""
    if is_async:
        found = _configured_auth("CROSSMINT_ASYNC_AUTH", AsyncCrossmintAuth) or _auth_from_key(
            AsyncCrossmintAuth
        )
        # A blocking auth works under ASGI too, driven in a worker thread.
        found = found or _configured_auth("CROSSMINT_AUTH", CrossmintAuth)
    else:
        found = _configured_auth("CROSSMINT_AUTH", CrossmintAuth) or _auth_from_key(CrossmintAuth)
        if found is None and getattr(settings, "CROSSMINT_ASYNC_AUTH", None) is not None:
            raise ImproperlyConfigured(
                "Django runs CrossmintMiddleware synchronously here (WSGI, or the test"
                " Client): set CROSSMINT_AUTH to a CrossmintAuth, or CROSSMINT_API_KEY"
            )
    if found is None:
        raise ImproperlyConfigured(
            "CrossmintMiddleware needs CROSSMINT_API_KEY, or CROSSMINT_AUTH (a CrossmintAuth)"
            " and, for ASGI, CROSSMINT_ASYNC_AUTH (an AsyncCrossmintAuth), in the settings"
        )
    return found  # type: ignore[no-any-return]


def middleware_options() -> dict[str, Any]:
    """The middleware keywords the settings give; the others keep their defaults."""
    return {
        keyword: getattr(settings, name)
        for name, keyword in MIDDLEWARE_SETTINGS.items()
        if hasattr(settings, name)
    }
