"""Checks for construction settings: a wrong value fails at once, naming its setting.

Each check returns the value it accepted, so a constructor checks a setting
where it passes it on (``ttl=seconds("jwks_ttl", jwks_ttl, positive=True)``):
the list of settings stays the constructor's signature, written once.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import CrossmintConfigError

__all__ = ["coordinator_for", "count", "instance", "key_set", "seconds", "text"]

T = TypeVar("T")


def _kind(value: object) -> str:
    return type(value).__name__


def seconds(setting: str, value: object, *, positive: bool = False) -> float:
    """A number of seconds: above 0 when ``positive``, else 0 or more.

    :raises CrossmintConfigError: naming ``setting``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CrossmintConfigError(
            f"{setting} must be a number of seconds, not {_kind(value)}", setting=setting
        )
    if value != value or value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "0 or more"
        raise CrossmintConfigError(f"{setting} must be {bound}, not {value!r}", setting=setting)
    return value


def count(setting: str, value: object, *, minimum: int = 0) -> int:
    """A whole number of at least ``minimum``.

    :raises CrossmintConfigError: naming ``setting``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CrossmintConfigError(
            f"{setting} must be a whole number of at least {minimum}, not {value!r}",
            setting=setting,
        )
    return value


def text(setting: str, value: object) -> str | None:
    """``None``, or a string that is not empty.

    :raises CrossmintConfigError: naming ``setting``.
    """
    if value is None or (isinstance(value, str) and value):
        return value
    raise CrossmintConfigError(
        f"{setting} must be a non-empty string or None, not {value!r}", setting=setting
    )


def instance(setting: str, value: object, cls: type[T], use: str) -> T:
    """``value`` when it is a ``cls``.

    :param use: how to build the right value, for the message.
    :raises CrossmintConfigError: naming ``setting`` and ``use``.
    """
    if isinstance(value, cls):
        return value
    raise CrossmintConfigError(
        f"{setting} must be a {cls.__name__}, not {_kind(value)}: use {use}", setting=setting
    )


def key_set(setting: str, value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``None``, or a JWK Set with at least one usable asymmetric signing key.

    :raises CrossmintConfigError: naming ``setting`` and what is wrong with the set.
    """
    if value is None:
        return None
    from .keys import import_public_keys

    try:
        import_public_keys(value)
    except ValueError as error:
        raise CrossmintConfigError(f"{setting}: {error}", setting=setting) from None
    return value


def coordinator_for(value: T, *, asynchronous: bool, auth: str) -> T:
    """A refresh coordinator whose methods suit the auth class it is given to.

    :param asynchronous: whether the methods must be coroutine functions.
    :param auth: the auth class's name, for the message.
    :raises CrossmintConfigError: ``setting == "coordinator"``; the message
        names the class to use.
    """
    name = _kind(value)
    methods = [getattr(value, method, None) for method in ("refresh", "revoke", "revoke_token")]
    if not all(callable(method) for method in methods):
        wanted = "AsyncRefreshCoordinator" if asynchronous else "RefreshCoordinator"
        raise CrossmintConfigError(
            f"coordinator: {name} lacks refresh(), revoke() or revoke_token():"
            f" {auth} needs a {wanted}",
            setting="coordinator",
        )
    if all(inspect.iscoroutinefunction(method) == asynchronous for method in methods):
        return value
    if asynchronous:
        counterpart = f"Async{name}"
        why = f"{name} blocks; {auth} needs one whose methods are async"
    else:
        counterpart = name[len("Async") :] if name.startswith("Async") else f"a sync {name}"
        why = (
            f"{name} is async; {auth} needs one whose refresh(), revoke() and revoke_token() block"
        )
    other = "CrossmintAuth" if asynchronous else "AsyncCrossmintAuth"
    raise CrossmintConfigError(
        f"coordinator: {why}: use {counterpart} (or give {name} to {other})",
        setting="coordinator",
    )
