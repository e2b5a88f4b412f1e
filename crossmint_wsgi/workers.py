"""How many worker processes serve this app: a warning when they cannot share refreshes.

Refresh tokens rotate, so the processes serving one site must share each
refresh (the host store by default, :class:`~crossmint_wsgi.redis.RedisCoordinator`
across hosts); with neither, two workers refreshing one session at once log
its user out. Nothing here is needed to serve: it only finds the worker count,
where a server makes it knowable.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from types import FrameType
from typing import Any

__all__ = ["Workers", "gunicorn_process", "warn_without_shared_coordinator", "workers"]

logger = logging.getLogger("crossmint_wsgi")


@dataclasses.dataclass(frozen=True)
class Workers:
    """A server's worker count, and whether this process is the one to report it."""

    server: str
    count: int
    reporter: bool


def gunicorn_process() -> Any | None:
    """The gunicorn worker or arbiter loading this app, when gunicorn is.

    gunicorn hands its effective configuration (command line, config file,
    ``GUNICORN_CMD_ARGS``, ``WEB_CONCURRENCY``) to no public place an app can
    read, only to the ``Worker`` booting it (or, with ``--preload``, the
    ``Arbiter``): the one on the call stack is the source of truth.
    """
    if "gunicorn" not in sys.modules:
        return None
    try:
        from gunicorn.arbiter import Arbiter
        from gunicorn.workers.base import Worker
    except ImportError:
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, (Worker, Arbiter)):
            return candidate
        frame = frame.f_back
    return None


def _uvicorn_workers(argv: list[str], environ: os._Environ[str] | dict[str, str]) -> int | None:
    program = argv[0] if argv else ""
    if "uvicorn" not in os.path.basename(program) and not program.endswith(
        os.path.join("uvicorn", "__main__.py")
    ):
        return None
    # uvicorn's own rule: --workers, else $WEB_CONCURRENCY, else one. Its
    # spawned workers carry the supervisor's command line.
    for index, arg in enumerate(argv):
        value = None
        if arg == "--workers" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        if value is not None:
            return int(value) if value.isdigit() else None
    value = environ.get("WEB_CONCURRENCY", "")
    return int(value) if value.isdigit() else 1


def workers(
    argv: list[str] | None = None, environ: os._Environ[str] | dict[str, str] | None = None
) -> Workers | None:
    """How many workers the server running this process starts, when it can be told.

    :param argv: the command line (``sys.argv``); for tests.
    :param environ: the environment (``os.environ``); for tests.
    :returns: ``None`` when no known server (gunicorn, uvicorn) runs this process.
    """
    process = gunicorn_process()
    if process is not None:
        # Workers are numbered by age from 1; with --preload the arbiter loads the app once.
        reporter = getattr(process, "age", 1) == 1
        return Workers("gunicorn", int(process.cfg.workers), reporter)
    count = _uvicorn_workers(
        sys.argv if argv is None else argv, os.environ if environ is None else environ
    )
    if count is None:
        return None
    return Workers("uvicorn", count, reporter=True)


def warn_without_shared_coordinator(found: Workers | None) -> bool:
    """Log one line when several workers each refresh on their own; whether it did."""
    if found is None or found.count < 2 or not found.reporter:
        return False
    logger.warning(
        "%s runs %d workers with no host store (turned off, or it could not be created), each"
        " refreshing on its own: two workers refreshing one session at once log its user out."
        " Give host_store= (or CROSSMINT_HOST_STORE) a writable directory, or share refreshes"
        " through Redis: set CROSSMINT_REDIS_URL (crossmint_wsgi.gunicorn) or pass"
        " coordinator=RedisCoordinator.from_url(...) from crossmint_wsgi.redis",
        found.server,
        found.count,
    )
    return True
