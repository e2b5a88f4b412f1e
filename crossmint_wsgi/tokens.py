"""JWT verification with joserfc, and the cache of tokens already verified.

The claim checks and the errors are :mod:`~crossmint_wsgi.claims`'s, re-exported.
"""

from __future__ import annotations

import binascii
import json
import re
import sys
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, Key
from joserfc.jws import JWSRegistry

from .caches import DEFAULT_BUDGET, EXPIRED, BoundedCache, CacheStats
from .claims import TokenExpired, TokenInvalid, TokenRevoked, check_claims, shared_strings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "TokenExpired",
    "TokenInvalid",
    "TokenRevoked",
    "VerifiedTokenCache",
    "check_claims",
    "read_header",
    "trusted_claims",
    "verify_signed_token",
]

#: What a Crossmint JWT may be signed with: asymmetric algorithms only, never
#: ``none`` or ``HS*`` (a public key must not double as an HMAC secret).
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)

#: Cookies hold 4 KiB; anything far larger is an attack, refused before parsing.
MAX_TOKEN_LENGTH = 16 * 1024

# joserfc's own algorithm implementations, looked up once. Going through them
# directly rather than through jws.deserialize_compact spares a second parse of
# a header already read, and the SecurityWarning joserfc's registry raises on
# every use of "EdDSA" (deprecated in name only by RFC 9864, and still what
# an issuer may sign with).
_ALGORITHMS: dict[str, JWSAlgModel] = {
    name: JWSRegistry.algorithms[name]
    for name in ASYMMETRIC_ALGORITHMS
    if name in JWSRegistry.algorithms
}


#: Headers already read, by their encoded segment: every token signed with one
#: key carries the same header, so most tokens skip decoding it.
_HEADERS: dict[str, Mapping[str, Any]] = {}
_HEADERS_MAX = 64


# base64url to base64 in one pass; "+", "/" and "=" become "*", which the
# strict decoder refuses: they have no place in unpadded base64url.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/***")
# The last character of a canonical encoding leaves no stray bits, by padding length.
_CANONICAL_ENDINGS = ("", "AEIMQUYcgkosw048", "AQgw")

if sys.version_info >= (3, 11):

    def _a2b_strict(data: bytes) -> bytes:
        return binascii.a2b_base64(data, strict_mode=True)

else:  # pragma: no cover - Python 3.10 has no strict mode: check the alphabet first
    _BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")

    def _a2b_strict(data: bytes) -> bytes:
        if _BASE64.fullmatch(data) is None:
            raise ValueError("not base64url")
        return binascii.a2b_base64(data)


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url, as joserfc's ``urlsafe_b64decode``, in fewer steps.

    Only the alphabet, no padding, canonical trailing bits: one token has
    one spelling.

    :raises ValueError: anything else.
    """
    pad = -len(segment) % 4
    if pad == 3:
        raise ValueError("not base64url")
    if pad and segment[-1] not in _CANONICAL_ENDINGS[pad]:
        raise ValueError("not canonical base64url")
    return _a2b_strict(segment.encode("ascii").translate(_TO_STANDARD) + b"=" * pad)


def _b64_json(segment: str) -> Any:
    try:
        return json.loads(_b64decode(segment).decode("utf-8"))
    except (ValueError, UnicodeError, TypeError, RecursionError):
        # RecursionError: deeply nested JSON, which the size limit still lets through.
        raise TokenInvalid("token segment is not base64url JSON") from None


def read_header(token: str) -> Mapping[str, Any]:
    """The unverified JOSE header of a compact JWS (shared: do not modify it).

    :raises TokenInvalid: not a three-part compact JWS with a JSON header,
        or an algorithm that is not asymmetric.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("token is too long")
    first = token.find(".")
    second = token.find(".", first + 1) if first >= 0 else -1
    # Exactly two dots: memchr-fast finds, where str.count walks every character.
    if second < 0 or token.find(".", second + 1) >= 0:
        # Five parts is a JWE: encrypted, not signed, so no proof of origin.
        raise TokenInvalid("token is not a compact JWS")
    segment = token[:first]
    cached = _HEADERS.get(segment)
    if cached is not None:
        return cached
    header = _b64_json(segment)
    if not isinstance(header, dict):
        raise TokenInvalid("token header is not a JSON object")
    algorithm = header.get("alg")
    # A list or object here is unhashable: check the type before the set lookup.
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise TokenInvalid("token algorithm is not an accepted asymmetric algorithm")
    if "crit" in header:
        raise TokenInvalid("token header has critical extensions this verifier does not know")
    shared = MappingProxyType(header)
    if len(_HEADERS) >= _HEADERS_MAX:
        # Many distinct headers: not Crossmint's tokens. Start over rather than grow.
        _HEADERS.clear()
    _HEADERS[segment] = shared
    return shared


#: ``verify(signing_input, signature) -> bool`` for one key and algorithm.
Verifier = Callable[[bytes, bytes], bool]

#: (id(key), algorithm) -> (key, its verifier), for pairs already found to
#: fit. The key is held so that its id cannot be reused by another while the
#: entry exists.
_FITTING: dict[tuple[int, str], tuple[Key, Verifier]] = {}
_FITTING_MAX = 64


def _verifier(algorithm: JWSAlgModel, key: Key) -> Verifier:
    """joserfc's ``algorithm.verify`` bound to ``key``, with what it works out
    on every call (the public key, padding, hash, signature length) worked
    out once: RS* and ES* call ``cryptography`` directly, as joserfc does."""
    name = algorithm.name
    if name[:2] in ("RS", "ES"):
        public: Any = key.get_op_key("verify")
        hashing = algorithm.hash_alg()  # type: ignore[attr-defined]
        if name[:2] == "RS":
            padding = algorithm.padding  # type: ignore[attr-defined]

            def verify_rsa(message: bytes, signature: bytes) -> bool:
                try:
                    public.verify(signature, message, padding, hashing)
                except InvalidSignature:
                    return False
                return True

            return verify_rsa
        # check_key has made sure of it: an ES* algorithm only takes an EC key.
        assert isinstance(key, ECKey)
        length = (key.curve_key_size + 7) // 8
        ecdsa = ECDSA(hashing)

        def verify_ec(message: bytes, signature: bytes) -> bool:
            if len(signature) != 2 * length:
                return False
            r = int.from_bytes(signature[:length], "big")
            s = int.from_bytes(signature[length:], "big")
            try:
                public.verify(encode_dss_signature(r, s), message, ecdsa)
            except InvalidSignature:
                return False
            return True

        return verify_ec

    def verify_other(message: bytes, signature: bytes) -> bool:
        return bool(algorithm.verify(message, signature, key))

    return verify_other


def _check_fit(algorithm: JWSAlgModel, key: Key) -> Verifier:
    """Key type, curve, ``use`` and ``alg`` must fit the algorithm.

    An RSA key never checks an ES256 signature, nor an RS256 key a PS256 one.

    :returns: the verifier of ``algorithm`` with ``key``.
    """
    allowed = key.get("alg")
    if allowed is not None and allowed != algorithm.name:
        raise TokenInvalid("token algorithm does not match its key")
    try:
        algorithm.check_key(key)
    except (JoseError, ValueError, TypeError) as error:
        raise TokenInvalid(f"token signature check failed: {type(error).__name__}") from None
    try:
        verifier = _verifier(algorithm, key)
    except (JoseError, ValueError, TypeError) as error:
        raise TokenInvalid(f"token signature check failed: {type(error).__name__}") from None
    if len(_FITTING) >= _FITTING_MAX:
        _FITTING.clear()
    _FITTING[(id(key), algorithm.name)] = (key, verifier)
    return verifier


def verify_signed_token(
    token: str,
    header: Mapping[str, Any],
    key: Key,
    *,
    audience: str,
    issuer: str | None,
    leeway: int,
    now: float,
) -> dict[str, Any]:
    """Check a token's signature with ``key`` and its claims.

    ``exp`` and ``sub`` are required; ``aud``, when present, must be
    ``audience`` (tokens from before Crossmint set audiences have none);
    ``iss`` is checked only when ``issuer`` is given.

    :returns: the verified claims.
    :raises TokenExpired: genuine, but expired.
    :raises TokenInvalid: anything else.
    """
    algorithm = _ALGORITHMS.get(header["alg"])
    if algorithm is None:
        raise TokenInvalid("token algorithm is not an accepted asymmetric algorithm")
    fitting = _FITTING.get((id(key), algorithm.name))
    verify = fitting[1] if fitting is not None and fitting[0] is key else _check_fit(algorithm, key)
    signing_input, _, signature_segment = token.rpartition(".")
    try:
        genuine = verify(signing_input.encode("ascii"), _b64decode(signature_segment))
    except (JoseError, ValueError, TypeError) as error:
        raise TokenInvalid(f"token signature check failed: {type(error).__name__}") from None
    if not genuine:
        raise TokenInvalid("token signature check failed: BadSignatureError")
    claims = _b64_json(signing_input.partition(".")[2])
    if not isinstance(claims, dict):
        raise TokenInvalid("token payload is not a JSON object")
    if "exp" not in claims:
        raise TokenInvalid("token has no exp claim")
    check_claims(claims, audience=audience, issuer=issuer, leeway=leeway, now=now)
    return shared_strings(claims, audience, issuer)


def trusted_claims(token: str) -> dict[str, Any]:
    """The claims of a token Crossmint's refresh call has just returned.

    The token arrived over Crossmint's authenticated API in answer to our
    own call, so its signature is not checked again here (the next request
    carrying it is verified in full); this keeps a fresh session usable
    while the key set is unreachable.

    :raises TokenInvalid: the token has no ``sub`` or numeric ``exp``.
    """
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenInvalid("Crossmint returned a malformed JWT")
    claims = _b64_json(token.split(".")[1])
    if (
        not isinstance(claims, dict)
        or not isinstance(claims.get("sub"), str)
        or not claims["sub"]
        or not isinstance(claims.get("exp"), int | float)
        or isinstance(claims.get("exp"), bool)
    ):
        raise TokenInvalid("Crossmint returned a JWT without sub or exp")
    return claims


class VerifiedTokenCache:
    """Tokens already verified, each kept until it expires, within a byte budget.

    A token seen before costs a dictionary lookup instead of a signature check.

    :param max_size: how many tokens to keep at most; ``None`` for as many as
        the budget holds; 0 turns the cache off.
    :param budget: the most bytes the cache holds (see :mod:`~crossmint_wsgi.caches`).
    """

    def __init__(self, max_size: int | None = None, budget: int = DEFAULT_BUDGET // 8) -> None:
        self.max_size = max_size
        self._cache: BoundedCache[str, dict[str, Any]] = BoundedCache(
            "tokens", budget if max_size != 0 else 0, max_entries=max_size
        )

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, token: str, now: float, leeway: int) -> dict[str, Any] | None:
        """The claims of a cached token.

        :raises TokenExpired: the token was genuine but has expired since.
        """
        claims = self._cache.get(token, now - leeway)
        if claims is EXPIRED:
            raise TokenExpired("token has expired")
        return claims

    def put(self, token: str, claims: dict[str, Any], now: float) -> None:
        """Remember a verified token until its ``exp``."""
        # The claims dict holds about what the token's payload encodes.
        self._cache.put(token, claims, float(claims["exp"]), 2 * len(token), now)

    def discard(self, token: str) -> None:
        """Forget a token."""
        self._cache.discard(token)

    def stats(self) -> CacheStats:
        """Entries, bytes, hits, misses and evictions."""
        return self._cache.stats()

    def clear(self) -> None:
        self._cache.clear()
