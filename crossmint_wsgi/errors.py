"""Errors raised by crossmint-wsgi: one root, a machine ``code`` and a human message."""

from __future__ import annotations

import enum

__all__ = ["CrossmintAuthError", "CrossmintConfigError", "CrossmintError", "ErrorCode"]


class ErrorCode(str, enum.Enum):
    """Why a request has no session, or why a route refused it.

    The values are stable strings: they appear in JSON answers as ``error``
    and are safe to branch on.
    """

    #: No JWT cookie and no refresh cookie: an anonymous visitor.
    MISSING_SESSION = "MISSING_SESSION"
    #: The JWT is expired or absent and the refresh token is missing, expired or rejected.
    SESSION_EXPIRED = "SESSION_EXPIRED"
    #: The JWT failed verification for a reason other than expiry and no refresh rescued it.
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - a code name, not a secret
    #: Crossmint did not answer usably (timeout, connection error, 5xx, malformed JSON).
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    #: A malformed request to the refresh or logout route.
    INVALID_REQUEST = "INVALID_REQUEST"
    #: A cross-site POST to the refresh or logout route.
    FORBIDDEN_ORIGIN = "FORBIDDEN_ORIGIN"

    def __str__(self) -> str:
        return self.value


class CrossmintError(Exception):
    """Root of every error this package raises."""


class CrossmintConfigError(CrossmintError, ValueError):
    """The configuration is unusable: raised at construction or start-up, never per request.

    The message names the step that failed; it never contains the API key.

    :param message: what is wrong and how to fix it.
    :param setting: the name of the setting at fault, as the constructor or
        function that was given it spells it (``"leeway"``, ``"base_url"``),
        or ``None`` when no single setting is.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.setting = setting

    def __repr__(self) -> str:
        return f"CrossmintConfigError({self.message!r}, setting={self.setting!r})"


class CrossmintAuthError(CrossmintError):
    """A request could not be given a session, or a Crossmint call failed.

    :param code: the :class:`ErrorCode` naming the outcome.
    :param message: a human description, free of secrets.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"CrossmintAuthError({self.code.value!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    @property
    def clears_cookies(self) -> bool:
        """Whether the cookies that led here are worthless and should be cleared."""
        return self.code in (ErrorCode.SESSION_EXPIRED, ErrorCode.INVALID_TOKEN)
