"""An emulator in another process: its ``/_emulator/config`` and :func:`connect_emulator`."""

from __future__ import annotations

from typing import TypedDict

import httpx

from ..config import Crossmint, build_crossmint
from ..errors import CrossmintConfigError

__all__ = ["EmulatorConfig", "connect_emulator"]


class EmulatorConfig(TypedDict):
    """What ``GET /_emulator/config`` answers."""

    url: str
    api_key: str
    project_id: str
    signing_key: str | None


def _unreachable(error: Exception, timeout: float) -> str:
    """Why a request to an emulator got no answer, in a few words."""
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "not an http:// URL"
    if isinstance(error, httpx.TimeoutException):
        return f"no answer within {timeout:g} s"
    if isinstance(error, httpx.ConnectError):
        return "connection refused"
    return type(error).__name__


#: How to get a URL that works, ending every connect_emulator error.
_HINT = (
    "start one with `python -m crossmint_wsgi.testing` and pass the URL it prints"
    " (also what CROSSMINT_EMULATOR_URL takes)"
)


def connect_emulator(url: str, *, app_id: str | None = None, timeout: float = 10.0) -> Crossmint:
    """The :class:`~crossmint_wsgi.Crossmint` configuration for an emulator in another process.

    Reads ``GET {url}/_emulator/config`` and validates the emulator's API key
    against the signing key it publishes.

    .. code-block:: python

        crossmint = connect_emulator(os.environ["CROSSMINT_EMULATOR_URL"])
        auth = CrossmintAuth(crossmint)

    :param url: the emulator's URL, as printed by ``python -m crossmint_wsgi.testing``.
    :param app_id: sent as ``x-app-identifier``.
    :param timeout: seconds to wait for the answer.
    :raises CrossmintConfigError: nothing answers at ``url`` (refused, timed
        out, not an http URL), or what answers is not a Crossmint emulator;
        the message names the URL and how to start an emulator.
    """
    base = url.rstrip("/")
    try:
        response = httpx.get(f"{base}/_emulator/config", timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # from None: the transport's traceback says less than the message.
        raise CrossmintConfigError(
            f"no Crossmint emulator answers at {base!r} ({_unreachable(error, timeout)}): {_HINT}",
            setting="url",
        ) from None
    if response.status_code != 200:
        reason = f"GET /_emulator/config answered {response.status_code}"
    else:
        try:
            config = response.json()
            return build_crossmint(
                config["api_key"],
                base_url=base,
                app_id=app_id,
                signing_key=config["signing_key"],
            )
        except (ValueError, KeyError, TypeError) as error:
            if isinstance(error, CrossmintConfigError):
                raise  # the emulator's own key failed its check: that message says why
            reason = "GET /_emulator/config did not answer the emulator's JSON"
    raise CrossmintConfigError(
        f"{base!r} is not a Crossmint emulator ({reason}): {_HINT}", setting="url"
    )
