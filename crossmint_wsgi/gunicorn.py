"""Put an existing WSGI app behind Crossmint auth from a gunicorn command line or config.

.. code-block:: sh

    SERVER_CROSSMINT_API_KEY=sk_production_... \\
    CROSSMINT_PROTECT="/dashboard/:path*,/api/:path*" CROSSMINT_LOGIN_URL=/login \\
    CROSSMINT_REDIS_URL=redis://127.0.0.1:6379/0 \\
    gunicorn --workers 4 "crossmint_wsgi.gunicorn:wrap('myapp:app')"

or, in a gunicorn config file, ``wsgi_app = "crossmint_wsgi.gunicorn:wrap('myapp:app')"``.

Every setting comes from the environment (see :func:`settings_from_env`;
:data:`VARIABLES` maps each setting to its variable). A missing or bad
setting, or a base URL that answers but is not Crossmint, stops the server
while it boots, with one line on stderr naming the variable, never at the
first request. Crossmint not answering at all is logged and serving goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .auth import CrossmintAuth
from .config import Crossmint, create_crossmint
from .errors import CrossmintAuthError, CrossmintConfigError
from .models import CookieOptions
from .paths import compile_pattern
from .workers import gunicorn_process
from .wsgi import CrossmintWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from .coordination import RefreshCoordinator

__all__ = ["WrapSettings", "build", "settings_from_env", "wrap"]

logger = logging.getLogger("crossmint_wsgi")

#: gunicorn's exit status for "App failed to load": the arbiter halts on it
#: instead of respawning the worker forever.
APP_LOAD_ERROR = 4

_MARKER = "crossmint-wsgi-"

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


def build(
    app: WSGIApplication, environ: Mapping[str, str] | None = None
) -> CrossmintWSGIMiddleware:
    """Wrap ``app`` in :class:`~crossmint_wsgi.CrossmintWSGIMiddleware` configured from ``environ``.

    :param app: the WSGI app.
    :param environ: the variables (see :func:`settings_from_env`); ``os.environ`` when ``None``.
    :raises CrossmintConfigError: a setting is missing or malformed.
    """
    return _build(app, settings_from_env(environ))


def _build(
    app: WSGIApplication, settings: WrapSettings, crossmint: Crossmint | None = None
) -> CrossmintWSGIMiddleware:
    crossmint = crossmint or settings.crossmint()
    auth = CrossmintAuth(
        crossmint,
        cookie_options=settings.cookie_options,
        coordinator=settings.coordinator(),
        refresh_route=settings.refresh_route,
    )
    _check(auth, "emulator_url" if settings.emulator_url else "base_url")
    logger.info(
        "Crossmint auth for project %s at %s (protecting %s)",
        crossmint.project_id,
        crossmint.base_url,
        ", ".join(settings.protect) or "nothing",
    )
    return CrossmintWSGIMiddleware(
        app,
        auth,
        refresh_path=settings.refresh_path,
        logout_path=settings.logout_path,
        protect=settings.protect,
        login_url=settings.login_url,
        allowed_origins=settings.allowed_origins,
        client_ip_header=settings.client_ip_header,
    )


def _check(auth: CrossmintAuth, setting: str) -> None:
    """Fetch the key set once: stop on a URL that is not Crossmint, go on through an outage.

    :raises CrossmintConfigError: the URL answers, but not as Crossmint.
    """
    try:
        auth.check()
    except CrossmintConfigError as error:
        # The URL came from this variable, whatever the library calls it.
        raise CrossmintConfigError(
            f"{VARIABLES[setting]}: {error.message}", setting=setting
        ) from None
    except CrossmintAuthError as error:
        # Nothing answers, or Crossmint fails: an outage looks the same as a
        # wrong port, so say which URL and serve (503s) until it answers.
        logger.warning("%s: %s", VARIABLES[setting], error.message)


def _import_app(target: str) -> WSGIApplication:
    # gunicorn's own loader: the same 'module:name' and 'module:factory(...)' forms.
    from gunicorn.util import import_app

    app: WSGIApplication = import_app(target)
    return app


def _first_to_report() -> bool:
    """Whether this process is the first of its gunicorn master's workers to fail.

    Every worker loads the app, so every worker meets the same bad setting.
    The first reports it; the others leave quietly. The marker names the
    master and its listening socket, so it is never mistaken for an old one.
    """
    worker = gunicorn_process()
    if worker is None or not hasattr(worker, "ppid"):
        # Not gunicorn, or its arbiter loading the app (--preload): one process.
        return True
    try:
        inode = os.fstat(worker.sockets[0].fileno()).st_ino if worker.sockets else 0
    except (OSError, AttributeError):
        inode = 0
    folder = tempfile.gettempdir()
    marker = os.path.join(folder, f"{_MARKER}{worker.ppid}-{inode}.failed")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True
    _forget_old_markers(folder, worker.ppid)
    return True


def _forget_old_markers(folder: str, master: int) -> None:
    # Markers of masters that are gone are litter: remove them.
    for name in os.listdir(folder):
        if not name.startswith(_MARKER):
            continue
        try:
            pid = int(name[len(_MARKER) :].partition("-")[0])
            if pid != master:
                os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except OSError:
            continue


def _stop(message: str) -> NoReturn:
    if _first_to_report():
        # One line, no traceback. Status 4 is gunicorn's "App failed to load.":
        # the arbiter halts instead of respawning workers that cannot work.
        print(f"crossmint_wsgi: cannot start: {message}", file=sys.stderr, flush=True)
        raise SystemExit(APP_LOAD_ERROR)
    # A second status 4 reaped while the arbiter halts makes gunicorn crash
    # with a traceback of its own; status 0 lets it halt on the first one.
    raise SystemExit(0)


def wrap(
    app: str | Callable[..., Any], environ: Mapping[str, str] | None = None
) -> CrossmintWSGIMiddleware:
    """The gunicorn factory: ``gunicorn "crossmint_wsgi.gunicorn:wrap('myapp:app')"``.

    :param app: the app's import string (``"myapp:app"`` or
        ``"myapp:create_app()"``, as gunicorn takes it), or the app itself.
    :param environ: the variables; ``os.environ`` when ``None``.
    :raises SystemExit: status 4 after printing one line to stderr, when a
        setting is missing or malformed. Use :func:`build` to get a
        :class:`~crossmint_wsgi.CrossmintConfigError` instead.
    """
    try:
        settings = settings_from_env(environ)
        # The key is checked before the app is imported: a bad key must not
        # hide behind the app's own import time or errors.
        crossmint = settings.crossmint()
    except CrossmintConfigError as error:
        _stop(str(error))
    wsgi_app = _import_app(app) if isinstance(app, str) else app
    try:
        return _build(wsgi_app, settings, crossmint)
    except CrossmintConfigError as error:
        _stop(str(error))
