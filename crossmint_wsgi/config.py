"""Crossmint configuration: API key parsing, its Ed25519 check, environments and base URLs."""

from __future__ import annotations

import dataclasses
import enum
import re
import warnings
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._base58 import b58decode
from .errors import CrossmintConfigError

__all__ = ["Crossmint", "Environment", "UsageOrigin", "create_crossmint"]


class Environment(str, enum.Enum):
    """The Crossmint environment an API key belongs to."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class UsageOrigin(str, enum.Enum):
    """Who an API key is for: ``sk`` keys are server keys, ``ck`` keys client keys."""

    SERVER = "server"
    CLIENT = "client"


_ORIGINS = {"sk": UsageOrigin.SERVER, "ck": UsageOrigin.CLIENT}

#: Crossmint's Ed25519 keys that sign API keys, base58, per environment.
CROSSMINT_SIGNING_KEYS = {
    Environment.DEVELOPMENT: "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5",
    Environment.STAGING: "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5",
    Environment.PRODUCTION: "8erZh8YApGck3iUSUHqATBxqMTM1Ukp9mHmvGgUWHtkK",
}

BASE_URLS = {
    Environment.DEVELOPMENT: "http://localhost:3000",
    Environment.STAGING: "https://staging.crossmint.com",
    Environment.PRODUCTION: "https://www.crossmint.com",
}

_PREFIX = re.compile(r"^([a-z]+)_([a-z]+)_(.+)$", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Crossmint:
    """A validated Crossmint configuration. Build it with :func:`create_crossmint`.

    :param api_key: the API key; never shown in ``repr``.
    :param project_id: the project the key belongs to, expected as the JWT audience.
    :param environment: the key's :class:`Environment`.
    :param usage_origin: :attr:`UsageOrigin.SERVER` for ``sk_`` keys.
    :param base_url: where Crossmint's API is served, without a trailing slash.
    :param app_id: sent as ``x-app-identifier`` when set.
    """

    api_key: str = dataclasses.field(repr=False)
    project_id: str
    environment: Environment
    usage_origin: UsageOrigin
    base_url: str
    app_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ParsedKey:
    """The parts of an API key, after its signature has been checked."""

    origin: str
    environment: Environment
    key_data: str
    project_id: str


def parse_api_key(api_key: object, *, signing_key: str | None = None) -> ParsedKey:
    """Split and verify an API key as Crossmint's SDK does.

    :param signing_key: the base58 Ed25519 key to verify with instead of
        Crossmint's own; only the emulator passes one, for keys it minted.
    :raises CrossmintConfigError: naming the step that failed, never the key.
    """
    if not isinstance(api_key, str) or not api_key.strip():
        raise CrossmintConfigError("Crossmint API key is missing or empty", setting="api_key")
    api_key = api_key.strip()
    if api_key.startswith(("sk_live", "sk_test")):
        raise CrossmintConfigError(
            "Crossmint API key has the old sk_live/sk_test format, which is no longer"
            " supported: create a new server key in the Crossmint console",
            setting="api_key",
        )
    match = _PREFIX.match(api_key)
    if match is None:
        raise CrossmintConfigError(
            "Crossmint API key is malformed: expected '{sk|ck}_{environment}_{payload}'",
            setting="api_key",
        )
    origin, environment_name, payload = match.groups()
    if origin not in _ORIGINS:
        raise CrossmintConfigError(
            f"Crossmint API key has a malformed prefix {origin!r}: expected 'sk' or 'ck'",
            setting="api_key",
        )
    try:
        environment = Environment(environment_name)
    except ValueError:
        raise CrossmintConfigError(
            f"Crossmint API key names an unknown environment {environment_name!r}:"
            " expected development, staging or production",
            setting="api_key",
        ) from None
    try:
        decoded = b58decode(payload).decode("utf-8")
    except ValueError:
        raise CrossmintConfigError(
            "Crossmint API key payload is not valid base58-encoded UTF-8", setting="api_key"
        ) from None
    key_data, colon, signature_text = decoded.rpartition(":")
    if not colon or not key_data or not signature_text:
        raise CrossmintConfigError(
            "Crossmint API key payload is malformed: expected '{keyData}:{signature}'",
            setting="api_key",
        )
    _verify_signature(
        f"{origin}_{environment.value}.{key_data}".encode(),
        signature_text,
        signing_key or CROSSMINT_SIGNING_KEYS[environment],
        environment,
    )
    project_id = key_data.split(".", 1)[0]
    if not project_id:
        raise CrossmintConfigError("Crossmint API key carries no project id", setting="api_key")
    return ParsedKey(origin, environment, key_data, project_id)


def _verify_signature(
    message: bytes, signature_text: str, signing_key: str, environment: Environment
) -> None:
    try:
        signature = b58decode(signature_text)
        public_key = Ed25519PublicKey.from_public_bytes(b58decode(signing_key))
        public_key.verify(signature, message)
    except (ValueError, InvalidSignature):
        raise CrossmintConfigError(
            "Crossmint API key has a bad signature: it was not issued by Crossmint"
            f" for the {environment.value} environment",
            setting="api_key",
        ) from None


def normalize_base_url(base_url: str) -> str:
    """Strip trailing slashes and check the URL is absolute http(s)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CrossmintConfigError(
            f"Crossmint base URL {base_url!r} is not an absolute http(s) URL", setting="base_url"
        )
    return base_url.rstrip("/")


def create_crossmint(
    api_key: str, *, base_url: str | None = None, app_id: str | None = None
) -> Crossmint:
    """Validate an API key and build the :class:`Crossmint` configuration.

    The key is checked exactly as Crossmint's SDK checks it: its prefix, its
    environment, its base58 payload and its Ed25519 signature against
    Crossmint's public key for that environment.

    :param api_key: a server key (``sk_{environment}_...``).
    :param base_url: overrides the environment's Crossmint URL (the JS SDK's
        ``overrideBaseUrl``), for example to point at the emulator.
    :param app_id: sent to Crossmint as ``x-app-identifier``.
    :raises CrossmintConfigError: the key or URL is unusable; the message
        names the step that failed and never contains the key.
    """
    return build_crossmint(api_key, base_url=base_url, app_id=app_id)


def build_crossmint(
    api_key: str,
    *,
    base_url: str | None = None,
    app_id: str | None = None,
    signing_key: str | None = None,
) -> Crossmint:
    """:func:`create_crossmint` with the signing key as a parameter, for the emulator."""
    parsed = parse_api_key(api_key, signing_key=signing_key)
    origin = _ORIGINS[parsed.origin]
    if origin is UsageOrigin.CLIENT:
        warnings.warn(
            "a Crossmint client key (ck_) was given to a server SDK: create a server key"
            " (sk_) in the Crossmint console",
            UserWarning,
            stacklevel=3,
        )
    return Crossmint(
        api_key=api_key.strip(),
        project_id=parsed.project_id,
        environment=parsed.environment,
        usage_origin=origin,
        base_url=normalize_base_url(base_url or BASE_URLS[parsed.environment]),
        app_id=app_id,
    )
