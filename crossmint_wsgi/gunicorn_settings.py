"""The gunicorn factory's settings: one environment variable for each, read before any I/O.

:data:`VARIABLES` maps each setting to its variable, so an error names the
variable to fix; :func:`settings_from_env` reads them all into a
:class:`WrapSettings`, which builds the Crossmint config and the coordinator.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .config import Crossmint, create_crossmint
from .errors import CrossmintConfigError
from .models import CookieOptions
from .patterns import compile_pattern

if TYPE_CHECKING:
    from .coordination import RefreshCoordinator

__all__ = ["VARIABLES", "WrapSettings", "settings_from_env"]

#: The environment variable that carries each setting, by the setting's name
#: (as :class:`WrapSettings`, :class:`~crossmint_wsgi.CookieOptions` and the
#: library's errors spell it): an error names the variable to fix.
VARIABLES: dict[str, str] = {
    "api_key": "SERVER_CROSSMINT_API_KEY",
    "emulator_url": "CROSSMINT_EMULATOR_URL",
    "base_url": "CROSSMINT_BASE_URL",
    "app_id": "CROSSMINT_APP_ID",
    "protect": "CROSSMINT_PROTECT",
    "login_url": "CROSSMINT_LOGIN_URL",
    "refresh_path": "CROSSMINT_REFRESH_PATH",
    "logout_path": "CROSSMINT_LOGOUT_PATH",
    "allowed_origins": "CROSSMINT_ALLOWED_ORIGINS",
    "client_ip_header": "CROSSMINT_CLIENT_IP_HEADER",
    "secure": "CROSSMINT_COOKIE_SECURE",
    "same_site": "CROSSMINT_COOKIE_SAMESITE",
    "domain": "CROSSMINT_COOKIE_DOMAIN",
    "http_only": "CROSSMINT_COOKIE_HTTPONLY",
    "max_age": "CROSSMINT_COOKIE_MAX_AGE",
    "names": "CROSSMINT_COOKIE_NAMES",
    "expose_refresh_secret": "CROSSMINT_EXPOSE_REFRESH_SECRET",
    "refresh_route": "CROSSMINT_REFRESH_ROUTE",
    "redis_url": "CROSSMINT_REDIS_URL",
}


def _blame(error: CrossmintConfigError, setting: str) -> CrossmintConfigError:
    """The error again, led by the variable of ``setting`` (or of the setting it names)."""
    named = error.setting if error.setting in VARIABLES else setting
    return CrossmintConfigError(f"{VARIABLES[named]}: {error.message}", setting=named)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_OFF = frozenset({"", "none", "off"})


@dataclasses.dataclass(frozen=True)
class WrapSettings:
    """The middleware settings read from the environment, before any I/O.

    :param api_key: ``SERVER_CROSSMINT_API_KEY``; never shown in ``repr``.
    :param emulator_url: ``CROSSMINT_EMULATOR_URL``: use that emulator instead.
    :param base_url: ``CROSSMINT_BASE_URL``.
    :param app_id: ``CROSSMINT_APP_ID``.
    :param protect: ``CROSSMINT_PROTECT``, comma-separated path patterns.
    :param login_url: ``CROSSMINT_LOGIN_URL``.
    :param refresh_path: ``CROSSMINT_REFRESH_PATH``; ``off`` or empty turns the route off.
    :param logout_path: ``CROSSMINT_LOGOUT_PATH``; ``off`` or empty turns the route off.
    :param allowed_origins: ``CROSSMINT_ALLOWED_ORIGINS``, comma-separated.
    :param client_ip_header: ``CROSSMINT_CLIENT_IP_HEADER``: the header a trusted
        proxy writes the client's address into (``X-Forwarded-For``).
    :param cookie_options: ``CROSSMINT_COOKIE_SECURE`` (``true``, ``false`` or
        ``auto``), ``_SAMESITE``, ``_DOMAIN``, ``_HTTPONLY``, ``_MAX_AGE``
        (seconds), ``_NAMES`` (``unscoped``, ``scoped`` or ``both``), and
        ``CROSSMINT_EXPOSE_REFRESH_SECRET``.
    :param refresh_route: ``CROSSMINT_REFRESH_ROUTE``: refresh through this
        URL (an app's own refresh route) instead of Crossmint.
    :param redis_url: ``CROSSMINT_REDIS_URL``: share refreshes between
        processes through Redis.
    """

    api_key: str | None = dataclasses.field(default=None, repr=False)
    emulator_url: str | None = None
    base_url: str | None = None
    app_id: str | None = None
    protect: tuple[str, ...] = ()
    login_url: str | None = None
    refresh_path: str | None = "/refresh"
    logout_path: str | None = "/logout"
    allowed_origins: tuple[str, ...] = ()
    client_ip_header: str | None = None
    cookie_options: CookieOptions = dataclasses.field(default_factory=CookieOptions)
    refresh_route: str | None = None
    redis_url: str | None = dataclasses.field(default=None, repr=False)

    def crossmint(self) -> Crossmint:
        """The validated Crossmint config (contacts the emulator when one is named).

        :raises CrossmintConfigError: no usable key, or an unreachable emulator.
        """
        if self.emulator_url:
            # Imported here: the emulator is a test tool, not part of serving.
            import httpx

            from .testing import connect_emulator

            try:
                return connect_emulator(self.emulator_url, app_id=self.app_id)
            except CrossmintConfigError as error:
                # It says what is wrong and what to do; only the variable is added.
                raise CrossmintConfigError(
                    f"{VARIABLES['emulator_url']}: {error.message}", setting="emulator_url"
                ) from None
            except (httpx.HTTPError, ValueError, KeyError) as error:
                raise CrossmintConfigError(
                    f"{VARIABLES['emulator_url']}: no Crossmint emulator answers at"
                    f" {self.emulator_url} ({type(error).__name__})",
                    setting="emulator_url",
                ) from None
        if not self.api_key:
            raise CrossmintConfigError(
                f"{VARIABLES['api_key']} is not set: create a server key in the Crossmint"
                f" console and export it (or set {VARIABLES['emulator_url']} for a local"
                " emulator)",
                setting="api_key",
            )
        try:
            return create_crossmint(self.api_key, base_url=self.base_url, app_id=self.app_id)
        except CrossmintConfigError as error:
            raise _blame(error, "api_key") from None

    def coordinator(self) -> RefreshCoordinator | None:
        """The Redis coordinator when ``CROSSMINT_REDIS_URL`` is set."""
        if not self.redis_url:
            return None
        try:
            # Only deployments that share refreshes through Redis need the redis package.
            from .redis import RedisCoordinator
        except ImportError as error:
            raise CrossmintConfigError(
                f"{VARIABLES['redis_url']} needs the redis package ({error}):"
                " pip install 'crossmint-wsgi[redis]'",
                setting="redis_url",
            ) from None
        try:
            return RedisCoordinator.from_url(self.redis_url)
        except CrossmintConfigError as error:
            raise _blame(error, "redis_url") from None


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _flag(environ: Mapping[str, str], name: str, default: bool | None) -> bool | None:
    value = environ.get(name, "").strip().lower()
    if not value or value == "auto":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CrossmintConfigError(f"must be true or false, not {value!r}", setting=name)


def _whole(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise CrossmintConfigError(
            f"must be a whole number of seconds, not {value!r}", setting=name
        )
    return int(value)


def _items(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in environ.get(name, "").split(",") if item.strip())


def _route(environ: Mapping[str, str], name: str, default: str) -> str | None:
    if name not in environ:
        return default
    value = environ[name].strip()
    if value.lower() in _OFF:
        return None
    if not value.startswith("/"):
        raise CrossmintConfigError(f"must be a path starting with '/', not {value!r}", setting=name)
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> WrapSettings:
    """Read the middleware settings from environment variables.

    :param environ: the variables; ``os.environ`` when ``None``.
    :raises CrossmintConfigError: a value is malformed; the message names
        the variable and never contains the API key.
    """
    env = {
        setting: environ_value
        for setting, variable in VARIABLES.items()
        if (environ_value := (os.environ if environ is None else environ).get(variable)) is not None
    }
    protect = _items(env, "protect")
    for pattern in protect:
        try:
            compile_pattern(pattern)
        except ValueError as error:  # CrossmintConfigError is one too
            raise CrossmintConfigError(
                f"{VARIABLES['protect']}: {error}", setting="protect"
            ) from None
    try:
        cookie_options = CookieOptions(
            secure=_flag(env, "secure", None),
            http_only=bool(_flag(env, "http_only", True)),
            same_site=_text(env, "same_site") or "Lax",
            domain=_text(env, "domain"),
            max_age=_whole(env, "max_age"),
            names=_text(env, "names") or "unscoped",
            expose_refresh_secret=bool(_flag(env, "expose_refresh_secret", False)),
        )
        return WrapSettings(
            api_key=_text(env, "api_key"),
            emulator_url=_text(env, "emulator_url"),
            base_url=_text(env, "base_url"),
            app_id=_text(env, "app_id"),
            protect=protect,
            login_url=_text(env, "login_url"),
            refresh_path=_route(env, "refresh_path", "/refresh"),
            logout_path=_route(env, "logout_path", "/logout"),
            allowed_origins=_items(env, "allowed_origins"),
            client_ip_header=_text(env, "client_ip_header"),
            cookie_options=cookie_options,
            refresh_route=_text(env, "refresh_route"),
            redis_url=_text(env, "redis_url"),
        )
    except CrossmintConfigError as error:
        # Each check names its setting; CookieOptions names its field.
        raise _blame(error, "same_site") from None
