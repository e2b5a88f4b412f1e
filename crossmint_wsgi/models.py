"""Values that cross the public API: sessions, tokens, users, cookie options."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import CrossmintConfigError

__all__ = ["AuthMaterial", "CookieOptions", "RefreshToken", "Session", "User"]

logger = logging.getLogger("crossmint_wsgi")


@dataclasses.dataclass(frozen=True)
class User:
    """A Crossmint user as the API describes it; unknown fields are kept in ``raw``.

    :param id: the Crossmint user id (the JWT's ``sub``).
    :param email: the user's email, when Crossmint has one.
    :param phone_number: the user's phone number, when Crossmint has one.
    :param twitter: ``{"username", "id"}`` when the user linked Twitter.
    :param raw: the JSON object exactly as Crossmint sent it.
    """

    id: str
    email: str | None = None
    phone_number: str | None = None
    twitter: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> User:
        """Build a user from Crossmint's JSON.

        :raises ValueError: ``id`` is missing or not a string.
        """
        user_id = data.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user JSON has no string 'id'")
        email = data.get("email")
        phone = data.get("phoneNumber")
        twitter = data.get("twitter")
        return cls(
            id=user_id,
            email=email if isinstance(email, str) else None,
            phone_number=phone if isinstance(phone, str) else None,
            twitter=twitter if isinstance(twitter, Mapping) else None,
            raw=dict(data),
        )

    def to_json(self) -> dict[str, Any]:
        """The user as JSON, unknown fields included."""
        data = dict(self.raw)
        data["id"] = self.id
        for key, value in (
            ("email", self.email),
            ("phoneNumber", self.phone_number),
            ("twitter", self.twitter),
        ):
            if value is not None:
                data[key] = dict(value) if isinstance(value, Mapping) else value
        return data


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive ones are taken as UTC.

    :raises ValueError: not ISO-8601.
    """
    # fromisoformat before 3.11 does not take a trailing Z.
    parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def format_timestamp(moment: datetime) -> str:
    """Format as Crossmint does: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    """A refresh secret and when it stops working.

    :param secret: the opaque secret; never shown in ``repr``.
    :param expires_at: an aware UTC datetime, or ``None`` when unknown
        (a secret read back from a cookie carries no expiry).
    """

    secret: str = dataclasses.field(repr=False)
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"secret", "expiresAt"}`` as the browser SDK expects it."""
        return {
            "secret": self.secret,
            "expiresAt": format_timestamp(self.expires_at) if self.expires_at else None,
        }


@dataclasses.dataclass(frozen=True)
class AuthMaterial:
    """What a successful refresh returns: a new JWT, a new refresh token, the user.

    :param jwt: the new JWT; never shown in ``repr``.
    :param refresh_token: the new :class:`RefreshToken`.
    :param user: the user, when Crossmint sent one.
    """

    jwt: str = dataclasses.field(repr=False)
    refresh_token: RefreshToken
    user: User | None = None

    def to_json(self) -> dict[str, Any]:
        """The refresh route's answer, in the browser SDK's shape."""
        return {
            "jwt": self.jwt,
            "refreshToken": self.refresh_token.to_json(),
            "user": self.user.to_json() if self.user else None,
        }


@dataclasses.dataclass(frozen=True)
class Session:
    """A verified Crossmint session.

    :param jwt: the verified JWT; never shown in ``repr``.
    :param refresh_token: the refresh token that goes with it, if any.
    :param user_id: the JWT's ``sub``.
    :param claims: every verified claim of the JWT.
    :param refreshed: ``True`` when the JWT was obtained by a refresh during
        this request, so new cookies must be sent.
    :param user: the user, when a refresh returned one.
    """

    jwt: str = dataclasses.field(repr=False)
    refresh_token: RefreshToken | None
    user_id: str
    claims: Mapping[str, Any] = dataclasses.field(repr=False)
    refreshed: bool = False
    user: User | None = None

    @property
    def expires_at(self) -> datetime:
        """When the JWT expires."""
        return datetime.fromtimestamp(int(self.claims["exp"]), timezone.utc)

    @property
    def material(self) -> AuthMaterial | None:
        """The session as :class:`AuthMaterial`, when it has a refresh token."""
        if self.refresh_token is None:
            return None
        return AuthMaterial(self.jwt, self.refresh_token, self.user)


_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_NAMES = ("unscoped", "scoped", "both")


@dataclasses.dataclass(frozen=True)
class CookieOptions:
    """How the two auth cookies are written.

    :param secure: ``True`` or ``False`` forces the ``Secure`` attribute;
        ``None`` (the default) lets the middleware set it when the request
        came over https.
    :param http_only: whether the refresh cookie is ``HttpOnly``. The JWT
        cookie never is: the browser SDK reads it. With ``False`` a logout
        from Crossmint's browser SDK is not revoked at Crossmint (the SDK
        deletes the readable cookie before it calls the logout route), so
        constructing it logs a warning.
    :param same_site: ``"Lax"`` (default), ``"Strict"`` or ``"None"``
        (which browsers accept only with ``Secure``).
    :param domain: the cookies' ``Domain``, or ``None`` for host-only cookies.
    :param path: the cookies' ``Path``.
    :param max_age: seconds an auth cookie may live at most (``Max-Age``),
        never beyond its token's own expiry; ``None``: until the token
        expires.
    :param names: which names new cookies are written under:
        ``"unscoped"`` (default, ``crossmint-jwt`` and
        ``crossmint-refresh-token``), ``"scoped"`` (the browser SDK's
        ``crossmint-jwt-<projectId>`` and ``crossmint-refresh-token-<projectId>``)
        or ``"both"``. A refresh always writes back under the names the
        request used as well, so the browser SDK's own cookies stay in step.
    :param expose_refresh_secret: whether the refresh route's JSON answer
        carries the new refresh secret even though the refresh cookie is
        ``HttpOnly`` (for an ``onTokenRefresh`` that needs it). By default it
        is left out: any script of the page could read it there.
    :raises CrossmintConfigError: a value of the wrong type, an unknown
        ``same_site`` or ``names``, ``same_site="None"`` without ``secure``,
        a ``path`` not starting with ``/``, or a negative ``max_age``;
        ``setting`` names the field.
    """

    secure: bool | None = None
    http_only: bool = True
    same_site: str = "Lax"
    domain: str | None = None
    path: str = "/"
    max_age: int | None = None
    names: str = "unscoped"
    expose_refresh_secret: bool = False

    def __post_init__(self) -> None:
        for name, kinds in (
            ("secure", (bool, type(None))),
            ("http_only", (bool,)),
            ("same_site", (str,)),
            ("domain", (str, type(None))),
            ("path", (str,)),
            ("max_age", (int, type(None))),
            ("names", (str,)),
            ("expose_refresh_secret", (bool,)),
        ):
            value = getattr(self, name)
            if not isinstance(value, kinds) or (name == "max_age" and isinstance(value, bool)):
                allowed = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
                raise CrossmintConfigError(
                    f"{name} must be {allowed}, not {type(value).__name__}", setting=name
                )
        normalized = _SAME_SITE.get(self.same_site.lower())
        if normalized is None:
            raise CrossmintConfigError(
                f"same_site must be 'Lax', 'Strict' or 'None', not {self.same_site!r}",
                setting="same_site",
            )
        if normalized == "None" and self.secure is False:
            raise CrossmintConfigError("same_site='None' needs secure cookies", setting="same_site")
        object.__setattr__(self, "same_site", normalized)
        if not self.path.startswith("/"):
            raise CrossmintConfigError(
                f"cookie path must start with '/', not {self.path!r}", setting="path"
            )
        if self.max_age is not None and self.max_age < 0:
            raise CrossmintConfigError(
                f"max_age must be 0 or more seconds, not {self.max_age}", setting="max_age"
            )
        if self.names not in _NAMES:
            raise CrossmintConfigError(
                f"names must be 'unscoped', 'scoped' or 'both', not {self.names!r}",
                setting="names",
            )
        if not self.http_only:
            # Said once per options object, at start-up: the trade is the deployer's to make.
            logger.warning(
                "the refresh cookie is readable by scripts (http_only=False): Crossmint's"
                " browser SDK deletes it before it calls the logout route, so its logouts"
                " are not revoked at Crossmint (the refresh secret stays valid until it expires)"
            )
