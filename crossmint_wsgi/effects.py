"""The effects a flow yields: the I/O it needs, named as values.

A flow (:mod:`~crossmint_wsgi.flows`, :class:`~crossmint_wsgi.routes.Gate`)
yields one of these and receives its result, or the
:class:`~crossmint_wsgi.errors.CrossmintAuthError` standing for its failure.
The drivers (:mod:`~crossmint_wsgi.auth_base` and the two auth classes) perform
them; unit tests answer them by hand. Secrets are kept out of every ``repr``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Mapping
from typing import Any, NoReturn, Union

from .errors import CrossmintAuthError, ErrorCode

__all__ = [
    "FETCH_KEYS",
    "HOST_KEYS",
    "Effect",
    "FetchKeys",
    "Flow",
    "Logout",
    "ReadBody",
    "Refresh",
    "Revoke",
    "RevokeToken",
    "SharedKeySet",
    "ano_body",
    "no_body",
    "no_host_keys",
]


@dataclasses.dataclass(frozen=True)
class FetchKeys:
    """Fetch Crossmint's JWK Set. Result: the JSON object; when Crossmint
    failed, the host's copy (:class:`SharedKeySet`) or the error.

    With ``host_only``, Crossmint is not called (it failed moments ago): the
    result is the host's copy, or an error when there is none.
    """

    host_only: bool = False


@dataclasses.dataclass(frozen=True)
class SharedKeySet:
    """A :class:`FetchKeys` result when Crossmint failed: the key set another
    worker of this host fetched at ``fetched_at``, and why this fetch failed."""

    jwks: Mapping[str, Any] = dataclasses.field(repr=False)
    fetched_at: float
    why: str


@dataclasses.dataclass(frozen=True)
class Refresh:
    """Trade a refresh secret through the coordinator. Result: AuthMaterial, or an error.

    When ``refused`` is set, the secret may still be answered from what the
    coordinator knows, but Crossmint is not called: the call fails with it.
    ``user``: the user an authentic JWT of the request names, ``None`` for a
    stranger; a user's call may take the slots kept for users
    (:class:`~crossmint_wsgi.limits.UpstreamSlots`).
    """

    secret: str = dataclasses.field(repr=False)
    refused: CrossmintAuthError | None = None
    user: str | None = None


@dataclasses.dataclass(frozen=True)
class Logout:
    """Tell Crossmint to revoke a secret, best effort. Result: ``None``."""

    secret: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Revoke:
    """End a session's refresh chain in the coordinator. Result: the successor
    secrets it knew of (``list[str]``), or an error."""

    secret: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class RevokeToken:
    """Tell every process that a JWT was logged out (by digest, until ``exp``).
    Result: ``None``, or an error; coordinators that reach no other process ignore it."""

    digest: str
    exp: float


@dataclasses.dataclass(frozen=True)
class ReadBody:
    """Read the request body. Result: the bytes, or ``None`` when over ``limit``."""

    limit: int


def no_host_keys() -> NoReturn:
    """What a :data:`HOST_KEYS` lookup comes to without a host store."""
    raise CrossmintAuthError(
        ErrorCode.UPSTREAM_UNAVAILABLE, "no worker of this host has Crossmint's key set"
    )


def no_body(limit: int) -> bytes:
    """The body reader of a flow run outside a request: there is no body."""
    return b""


async def ano_body(limit: int) -> bytes:
    """As :func:`no_body`, for the async driver."""
    return b""


Effect = Union[FetchKeys, Refresh, Logout, Revoke, RevokeToken, ReadBody]  # noqa: UP007 - a runtime alias on 3.10
Flow = Generator[Effect, Any, Any]

FETCH_KEYS = FetchKeys()
HOST_KEYS = FetchKeys(host_only=True)
