"""The emulator's key material: the API key it accepts and the keys that sign its JWTs."""

from __future__ import annotations

import dataclasses
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, RSAKey

from .._base58 import b58decode, b58encode
from ..config import Environment
from ..errors import CrossmintConfigError

ALGORITHMS = ("RS256", "ES256")

_KEY = re.compile(r"^(sk|ck)_(development|staging|production)_([1-9A-HJ-NP-Za-km-z]+)$")


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """The API key the emulator accepts, and the Ed25519 key that signed it when known."""

    api_key: str = dataclasses.field(repr=False)
    project_id: str
    signing_key: str | None


def parse_unverified(api_key: str) -> ApiKey:
    """Take a well-formed key apart without checking its signature.

    A real key's signature can only be checked with Crossmint's key, which
    :func:`~crossmint_wsgi.config.parse_api_key` does; the emulator only needs
    the project id, so it accepts any well-formed key.
    """
    match = _KEY.match(api_key.strip())
    if match is None:
        raise CrossmintConfigError(
            "the emulator's API key is malformed: expected"
            " '{sk|ck}_{development|staging|production}_{base58 payload}'"
        )
    try:
        decoded = b58decode(match.group(3)).decode("utf-8")
    except ValueError:
        raise CrossmintConfigError(
            "the emulator's API key payload is not base58-encoded UTF-8"
        ) from None
    key_data, colon, signature = decoded.rpartition(":")
    project_id = key_data.split(".", 1)[0]
    if not colon or not signature or not project_id:
        raise CrossmintConfigError(
            "the emulator's API key payload is malformed: expected '{keyData}:{signature}'"
        )
    return ApiKey(api_key.strip(), project_id, None)


def mint_api_key(project_id: str | None) -> ApiKey:
    """Sign a development server key with a fresh Ed25519 key, as Crossmint signs its keys."""
    if project_id is None:
        project_id = str(uuid.uuid4())
    if (
        not project_id
        or any(char in project_id for char in ".:")
        or project_id != project_id.strip()
    ):
        raise ValueError(f"project_id {project_id!r} must be non-empty, without '.', ':' or spaces")
    key_data = f"{project_id}.{secrets.token_hex(16)}"
    private = Ed25519PrivateKey.generate()
    prefix = f"sk_{Environment.DEVELOPMENT.value}"
    signature = private.sign(f"{prefix}.{key_data}".encode())
    payload = b58encode(f"{key_data}:{b58encode(signature)}".encode())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return ApiKey(f"{prefix}_{payload}", project_id, b58encode(public))


def generate_key(algorithm: str) -> RSAKey | ECKey:
    """A new private signing key with ``kid``, ``alg`` and ``use``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    params: KeyParameters = {"alg": algorithm, "use": "sig"}
    key: RSAKey | ECKey
    if algorithm == "RS256":
        key = RSAKey.generate_key(2048, params)
    else:
        key = ECKey.generate_key("P-256", params)
    key.ensure_kid()
    return key


class KeyRing:
    """The JWT signing keys: the newest signs, all of them are published.

    Not locked: the emulator's state guards it with its own lock.
    """

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._keys = [generate_key(algorithm)]

    def install(self, key: RSAKey | ECKey, *, keep_old: bool) -> None:
        """Make ``key`` the signing key, keeping the others published or not."""
        self._keys = [*self._keys, key] if keep_old else [key]

    @property
    def kid(self) -> str:
        """The ``kid`` of the key that signs new tokens."""
        return self._keys[-1].kid or ""

    def key_set(self) -> dict[str, Any]:
        """The public JWK Set, newest key last."""
        return {"keys": [dict(key.as_dict(private=False)) for key in self._keys]}

    def sign(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> str:
        """Sign ``claims`` with the newest key.

        ``header`` entries override the defaults; a ``None`` value removes one.
        ``alg`` cannot change: each key is bound to the emulator's algorithm.
        """
        key = self._keys[-1]
        merged = {"typ": "JWT", "alg": self.algorithm, "kid": key.kid, **(header or {})}
        full_header = {name: value for name, value in merged.items() if value is not None}
        return jwt.encode(
            full_header, dict(claims), key, algorithms=[self.algorithm], default_type=None
        )
