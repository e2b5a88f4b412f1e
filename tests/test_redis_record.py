"""The sealed refresh record and the key names it is bound to: no Redis needed."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crossmint_wsgi import CrossmintAuthError, ErrorCode
from crossmint_wsgi.coordination import secret_digest
from crossmint_wsgi.models import AuthMaterial, RefreshToken, User
from crossmint_wsgi.redis.protocol import Keys
from crossmint_wsgi.redis.record import HKDF_INFO, HKDF_SALT, RecordCipher

PREFIX = "crossmint-wsgi:refresh:"


def result_key(secret: str) -> str:
    return PREFIX + "{" + secret_digest(secret) + "}"


def lock_key(secret: str) -> str:
    return result_key(secret) + ":lock"


def material(tag: str, *, user: bool = True, expiry: bool = True) -> AuthMaterial:
    return AuthMaterial(
        f"jwt-{tag}",
        RefreshToken(
            f"new-secret-{tag}",
            datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc) if expiry else None,
        ),
        User.from_json({"id": "user-1", "email": "u@example.com", "extra": [1]}) if user else None,
    )


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def cipher_of(secret: str) -> RecordCipher:
    keys = Keys.of(secret, PREFIX)
    return RecordCipher.of(secret, keys.result, keys.short)


# -- the sealed record --------------------------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param(material("a"), id="material"),
        pytest.param(material("b", user=False, expiry=False), id="material-no-user-no-expiry"),
        pytest.param(
            CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "refused (HTTP 401)"), id="rejected"
        ),
        pytest.param(
            CrossmintAuthError(ErrorCode.UPSTREAM_UNAVAILABLE, "HTTP 503"), id="unavailable"
        ),
    ],
)
def test_record_round_trip(outcome: AuthMaterial | CrossmintAuthError) -> None:
    cipher = cipher_of(new_secret())
    opened = cipher.unseal(cipher.seal(outcome))
    if isinstance(outcome, AuthMaterial):
        assert opened == outcome
        assert isinstance(opened, AuthMaterial)
        assert opened.jwt == outcome.jwt
        assert opened.refresh_token.secret == outcome.refresh_token.secret
        assert opened.refresh_token.expires_at == outcome.refresh_token.expires_at
        assert (opened.user.raw if opened.user else None) == (
            outcome.user.raw if outcome.user else None
        )
    else:
        assert isinstance(opened, CrossmintAuthError)
        assert (opened.code, opened.message) == (outcome.code, outcome.message)


def test_each_record_has_its_own_nonce() -> None:
    cipher = cipher_of(new_secret())
    first, second = cipher.seal(material("a")), cipher.seal(material("a"))
    assert first[1:13] != second[1:13]
    assert first != second


def test_record_does_not_open_without_its_secret(caplog: pytest.LogCaptureFixture) -> None:
    secret = new_secret()
    cipher = cipher_of(secret)
    sealed = cipher.seal(material("a"))
    # Someone holding another secret, reading the same key.
    other = dataclasses.replace(cipher_of(new_secret()), key=cipher.key)
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    moved = dataclasses.replace(cipher, key=cipher.key + "x")
    with caplog.at_level(logging.WARNING, "crossmint_wsgi"):
        assert other.unseal(sealed) is None
        assert cipher.unseal(bytes(flipped)) is None  # tampered
        assert moved.unseal(sealed) is None  # copied under another key name
        assert cipher.unseal(sealed[:20]) is None  # truncated
        assert cipher.unseal(b"\x02" + sealed[1:]) is None  # unknown format
    assert len(caplog.records) == 5
    shorts = (cipher.short, other.short)
    assert all(any(short in r.getMessage() for short in shorts) for r in caplog.records)
    assert secret not in caplog.text


def test_key_names_and_cipher_key_are_different_functions_of_the_secret() -> None:
    secret = new_secret()
    names = Keys.of(secret, PREFIX)
    cipher_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        secret.encode()
    )
    assert names.result == result_key(secret)
    assert names.lock == lock_key(secret)
    assert cipher_key.hex() not in names.result
    assert cipher_key.hex() != secret_digest(secret)
    # The record cipher is that key: a record sealed with it opens with a fresh one.
    sealed = cipher_of(secret).seal(material("a"))
    assert AESGCM(cipher_key).decrypt(sealed[1:13], sealed[13:], names.result.encode())
