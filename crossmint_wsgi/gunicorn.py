"""Put an existing WSGI app behind Crossmint auth from a gunicorn command line or config.

.. code-block:: sh

    SERVER_CROSSMINT_API_KEY=sk_production_... \\
    CROSSMINT_PROTECT="/dashboard/:path*,/api/:path*" CROSSMINT_LOGIN_URL=/login \\
    CROSSMINT_REDIS_URL=redis://127.0.0.1:6379/0 \\
    gunicorn --workers 4 "crossmint_wsgi.gunicorn:wrap('myapp:app')"

or, in a gunicorn config file, ``wsgi_app = "crossmint_wsgi.gunicorn:wrap('myapp:app')"``.

Every setting comes from the environment
(:func:`~crossmint_wsgi.gunicorn_settings.settings_from_env`;
:data:`~crossmint_wsgi.gunicorn_settings.VARIABLES` maps each setting to its
variable). A missing or bad setting, or a base URL that answers but is not
Crossmint, stops the server while it boots, with one line on stderr naming
the variable, never at the first request. Crossmint not answering at all
is logged and serving goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

from .auth import CrossmintAuth
from .config import Crossmint
from .errors import CrossmintAuthError, CrossmintConfigError
from .gunicorn_settings import VARIABLES, WrapSettings, settings_from_env
from .workers import gunicorn_process
from .wsgi import CrossmintWSGIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["WrapSettings", "build", "settings_from_env", "wrap"]

logger = logging.getLogger("crossmint_wsgi")

#: gunicorn's exit status for "App failed to load": the arbiter halts on it
#: instead of respawning the worker forever.
APP_LOAD_ERROR = 4

_MARKER = "crossmint-wsgi-"


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
