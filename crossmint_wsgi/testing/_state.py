"""What the emulator knows and decides, without any I/O: tokens, users, keys, faults."""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..models import format_timestamp
from ._keys import KeyRing, generate_key

#: The Crossmint endpoints the emulator serves, as named in its counters and faults.
ENDPOINTS = ("jwks", "refresh", "logout", "user")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Lifetimes, in seconds.

    :param jwt_ttl: how long a new JWT is valid.
    :param refresh_ttl: how long a new refresh token is valid.
    :param reuse_window: how long a used refresh token keeps working after
        its first use; ``0`` makes refresh tokens single use.
    """

    jwt_ttl: int
    refresh_ttl: float
    reuse_window: float

    def __post_init__(self) -> None:
        if self.refresh_ttl < 0 or self.reuse_window < 0:
            raise ValueError("refresh_ttl and reuse_window must not be negative")

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a login says about its user; ``None`` keeps what was known.

    :param email: the user's ``email``.
    :param phone_number: the user's ``phoneNumber``.
    :param fields: more user JSON fields, for example ``twitter``.
    """

    email: str | None = None
    phone_number: str | None = None
    fields: Mapping[str, Any] | None = None


#: Claims or header entries to add; a ``None`` value removes the entry.
Overrides = Mapping[str, Any] | None


class Rejected(Exception):
    """A request Crossmint would refuse, with the status and message it answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class _Grant:
    user_id: str
    expires_at: float
    one_time: bool
    first_used_at: float | None = None
    revoked: bool = False


@dataclasses.dataclass
class Fault:
    """An injected answer for the next ``remaining`` matching requests."""

    remaining: int
    status: int
    body: bytes
    endpoint: str | None


def fault_body(status: int, body: object) -> bytes:
    """Bytes stay as they are; ``None`` becomes a message; anything else is sent as JSON."""
    if isinstance(body, bytes):
        return body
    if body is None:
        body = {"message": f"injected failure ({status})"}
    return json.dumps(body).encode()


class EmulatorState:
    """Everything the emulator remembers, behind one lock.

    :param keys: the JWT signing keys.
    :param audience: the project id, sent as ``aud``.
    :param settings: the lifetimes :meth:`reset` goes back to.
    :param clock: seconds since the epoch.
    """

    def __init__(
        self,
        keys: KeyRing,
        audience: str,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self._keys = keys
        self._initial = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._settings = settings
        self._grants: dict[str, _Grant] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._counters = dict.fromkeys(ENDPOINTS, 0)
        self._latency = 0.0
        self._down = False

    # -- settings and test controls

    @property
    def settings(self) -> Settings:
        with self._lock:
            return self._settings

    def configure(
        self, jwt_ttl: int | None, refresh_ttl: float | None, reuse_window: float | None
    ) -> Settings:
        """The settings with the values given; ``None`` keeps the current one."""
        with self._lock:
            current = self._settings
            self._settings = Settings(
                jwt_ttl=current.jwt_ttl if jwt_ttl is None else int(jwt_ttl),
                refresh_ttl=current.refresh_ttl if refresh_ttl is None else refresh_ttl,
                reuse_window=current.reuse_window if reuse_window is None else reuse_window,
            )
            return self._settings

    def reset(self) -> None:
        with self._lock:
            self._settings = self._initial
            self._grants.clear()
            self._users.clear()
            self._faults.clear()
            self._counters = dict.fromkeys(ENDPOINTS, 0)
            self._latency = 0.0
            self._down = False

    @property
    def latency(self) -> float:
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = float(seconds)

    @property
    def down(self) -> bool:
        with self._lock:
            return self._down

    @down.setter
    def down(self, down: bool) -> None:
        with self._lock:
            self._down = bool(down)

    def add_fault(self, count: int, status: int, body: object, endpoint: str | None) -> None:
        if count < 0:
            raise ValueError("the number of failures must not be negative")
        if not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
        fault = Fault(count, status, fault_body(status, body), endpoint)
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, endpoint: str) -> Fault | None:
        """The first pending fault for ``endpoint``, used up by one."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.endpoint in (None, endpoint):
                    fault.remaining -= 1
                    return dataclasses.replace(fault)
        return None

    def count(self, endpoint: str) -> None:
        with self._lock:
            self._counters[endpoint] += 1

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    # -- keys and tokens

    def key_set(self) -> dict[str, Any]:
        with self._lock:
            return self._keys.key_set()

    @property
    def kid(self) -> str:
        with self._lock:
            return self._keys.kid

    def rotate_keys(self, *, keep_old: bool) -> str:
        # Key generation is slow: do it before taking the lock.
        key = generate_key(self._keys.algorithm)
        with self._lock:
            self._keys.install(key, keep_old=keep_old)
            return self._keys.kid

    def issue_jwt(self, user_id: str, ttl: int | None, claims: Overrides, header: Overrides) -> str:
        with self._lock:
            return self._sign(user_id, ttl, claims, header)

    def _sign(
        self, user_id: str, ttl: int | None, claims: Overrides = None, header: Overrides = None
    ) -> str:
        now = int(self._clock())
        lifetime = self._settings.jwt_ttl if ttl is None else int(ttl)
        # A unique jti: two sessions of one user in one second never share a JWT
        # (RS256 is deterministic), so a logout can never end the other one.
        merged = {
            "sub": user_id,
            "aud": self.audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        merged.update(claims or {})
        return self._keys.sign(
            {name: value for name, value in merged.items() if value is not None}, header
        )

    def _remember_user(self, user_id: str, profile: Profile) -> None:
        user = {**self._users.get(user_id, {}), **(profile.fields or {}), "id": user_id}
        if profile.email is not None:
            user["email"] = profile.email
        if profile.phone_number is not None:
            user["phoneNumber"] = profile.phone_number
        self._users[user_id] = user

    def _grant(self, user_id: str, *, one_time: bool, now: float) -> tuple[str, float]:
        secret = secrets.token_urlsafe(32)
        expires_at = now + self._settings.refresh_ttl
        self._grants[secret] = _Grant(user_id, expires_at, one_time)
        return secret, expires_at

    def _answer(self, user_id: str, jwt_ttl: int | None, now: float) -> dict[str, Any]:
        secret, expires_at = self._grant(user_id, one_time=False, now=now)
        return {
            "jwt": self._sign(user_id, jwt_ttl),
            "refresh": {
                "secret": secret,
                "expiresAt": format_timestamp(datetime.fromtimestamp(expires_at, timezone.utc)),
            },
            "user": dict(self._users[user_id]),
        }

    def create_session(self, user_id: str, profile: Profile, jwt_ttl: int | None) -> dict[str, Any]:
        """A logged-in session, in the shape of Crossmint's refresh answer."""
        with self._lock:
            self._remember_user(user_id, profile)
            return self._answer(user_id, jwt_ttl, self._clock())

    def one_time_secret(self, user_id: str, profile: Profile) -> str:
        """A login's one-time secret, good for one refresh."""
        with self._lock:
            self._remember_user(user_id, profile)
            return self._grant(user_id, one_time=True, now=self._clock())[0]

    # -- the Crossmint API

    def refresh(self, secret: str) -> dict[str, Any]:
        """Trade a refresh or one-time secret for new auth material.

        :raises Rejected: 401 for an unknown, expired, revoked or reused secret.
        """
        with self._lock:
            now = self._clock()
            grant = self._grants.get(secret)
            if grant is None:
                raise Rejected(401, "Invalid refresh token")
            if grant.revoked:
                raise Rejected(401, "Refresh token has been revoked")
            if now >= grant.expires_at:
                raise Rejected(401, "Refresh token has expired")
            if grant.first_used_at is None:
                grant.first_used_at = now
            elif grant.one_time or now - grant.first_used_at >= self._settings.reuse_window:
                raise Rejected(401, "Refresh token has already been used")
            return self._answer(grant.user_id, None, now)

    def logout(self, secret: str) -> None:
        with self._lock:
            grant = self._grants.get(secret)
            if grant is not None:
                grant.revoked = True

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            user = self._users.get(user_id)
            return None if user is None else dict(user)
