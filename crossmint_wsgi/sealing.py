"""A refresh record: what one refresh of a secret came to, sealed so only that secret opens it.

The stores that share refreshes between processes (Redis, the host store)
hold records sealed here. Values are sealed with AES-256-GCM under a key
derived from the secret by HKDF-SHA256 (a different function of the secret
from the name the record is stored under), with a fresh random 96-bit nonce
per value and that name as associated data. A record that does not open is
treated as absent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import CrossmintAuthError, ErrorCode
from .models import AuthMaterial, RefreshToken, User, parse_timestamp

__all__ = ["HKDF_INFO", "HKDF_SALT", "Outcome", "RecordCipher", "unwrap"]

logger = logging.getLogger("crossmint_wsgi")

_FORMAT = b"\x01"
_NONCE_SIZE = 12
#: The salt of the Redis coordinator's records (the host store's has its own).
HKDF_SALT = b"crossmint-wsgi redis coordinator"
HKDF_INFO = b"refresh record v1"

#: What a refresh came to: new material, or Crossmint's refusal or absence.
Outcome = AuthMaterial | CrossmintAuthError


def _dump(outcome: Outcome) -> bytes:
    if isinstance(outcome, CrossmintAuthError):
        data: dict[str, Any] = {"error": outcome.code.value, "message": outcome.message}
    else:
        expires_at = outcome.refresh_token.expires_at
        data = {
            "jwt": outcome.jwt,
            "secret": outcome.refresh_token.secret,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "user": outcome.user.to_json() if outcome.user else None,
        }
    return json.dumps(data, separators=(",", ":")).encode()


def _load(data: Any) -> Outcome:
    if "error" in data:
        return CrossmintAuthError(ErrorCode(data["error"]), str(data["message"]))
    expires_at = data["expires_at"]
    return AuthMaterial(
        jwt=data["jwt"],
        refresh_token=RefreshToken(
            data["secret"], parse_timestamp(expires_at) if expires_at else None
        ),
        user=User.from_json(data["user"]) if data["user"] else None,
    )


@dataclasses.dataclass(frozen=True)
class RecordCipher:
    """Seals and opens the records of one secret stored under one Redis key.

    :param key: the name the record lives under (the associated data).
    :param short: a short digest of the secret, for log lines.
    :param aead: the AES-GCM cipher keyed from the secret.
    :param where: the store, as log lines name it.
    """

    key: str
    short: str
    aead: AESGCM = dataclasses.field(repr=False)
    where: str = "Redis"

    @classmethod
    def of(
        cls, secret: str, key: str, short: str, *, salt: bytes = HKDF_SALT, where: str = "Redis"
    ) -> RecordCipher:
        """The cipher of ``secret``'s records stored under ``key``; ``salt`` tells stores apart."""
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO)
        # surrogatepass: whatever a client managed to send, deriving never raises.
        return cls(
            key, short, AESGCM(derived.derive(secret.encode("utf-8", "surrogatepass"))), where
        )

    def seal(self, outcome: Outcome) -> bytes:
        # A fresh random nonce per value: the key is per secret, but a secret's
        # record may be written more than once (a waiter that gave up, a retry).
        nonce = os.urandom(_NONCE_SIZE)
        return _FORMAT + nonce + self.aead.encrypt(nonce, _dump(outcome), self.key.encode())

    def unseal(self, value: bytes | str | None) -> Outcome | None:
        """The outcome in a record, or ``None`` when there is none that opens."""
        if value is None:
            return None
        raw = value.encode("latin-1") if isinstance(value, str) else value
        if raw[:1] != _FORMAT or len(raw) < 1 + _NONCE_SIZE + 16:
            logger.warning(
                "ignoring a malformed refresh record in %s (secret %s)", self.where, self.short
            )
            return None
        nonce, sealed = raw[1 : 1 + _NONCE_SIZE], raw[1 + _NONCE_SIZE :]
        try:
            return _load(json.loads(self.aead.decrypt(nonce, sealed, self.key.encode())))
        except InvalidTag:
            logger.warning(
                "ignoring a refresh record in %s that does not open with its secret (secret %s)",
                self.where,
                self.short,
            )
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "ignoring an unreadable refresh record in %s (secret %s)", self.where, self.short
            )
        return None


def unwrap(outcome: Outcome) -> AuthMaterial:
    """The material of an outcome; raises the error of one that failed."""
    if isinstance(outcome, CrossmintAuthError):
        raise outcome
    return outcome
