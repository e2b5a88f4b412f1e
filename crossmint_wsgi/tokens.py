"""JWT verification with joserfc, and the cache of tokens already verified."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry
from joserfc.util import urlsafe_b64decode

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "MAX_TOKEN_LENGTH",
    "TokenExpired",
    "TokenInvalid",
    "VerifiedTokenCache",
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


class _ClaimsRegistry(JWTClaimsRegistry):
    """joserfc's claims checks, with ``exp`` left out of :meth:`validate`.

    ``exp`` is checked last, on its own: a forged or misdirected token that is
    also expired must read as invalid, not as merely expired.
    """

    def validate_exp(self, value: object) -> None:
        pass

    def validate_expiry(self, value: object) -> None:
        JWTClaimsRegistry.validate_exp(self, value)


_CLAIM_OPTIONS: dict[tuple[str, str | None], dict[str, Any]] = {}


def _claim_options(audience: str, issuer: str | None) -> dict[str, Any]:
    options = _CLAIM_OPTIONS.get((audience, issuer))
    if options is None:
        options = {
            "sub": {"essential": True},
            "aud": {"essential": False, "value": audience},
        }
        if issuer is not None:
            options["iss"] = {"essential": True, "value": issuer}
        # A handful of configurations per process: no bound needed.
        _CLAIM_OPTIONS[(audience, issuer)] = options
    return options


class TokenInvalid(Exception):
    """The token failed verification for a reason other than expiry."""


class TokenExpired(Exception):
    """The token is genuine but its ``exp`` has passed."""


def _b64_json(segment: str) -> Any:
    try:
        return json.loads(urlsafe_b64decode(segment.encode("ascii")))
    except (ValueError, UnicodeError, TypeError, RecursionError):
        # RecursionError: deeply nested JSON, which the size limit still lets through.
        raise TokenInvalid("token segment is not base64url JSON") from None


def read_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header of a compact JWS.

    :raises TokenInvalid: not a three-part compact JWS with a JSON header,
        or an algorithm that is not asymmetric.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("token is too long")
    if token.count(".") != 2:
        # Five parts is a JWE: encrypted, not signed, so no proof of origin.
        raise TokenInvalid("token is not a compact JWS")
    header = _b64_json(token.partition(".")[0])
    if not isinstance(header, dict):
        raise TokenInvalid("token header is not a JSON object")
    algorithm = header.get("alg")
    # A list or object here is unhashable: check the type before the set lookup.
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise TokenInvalid("token algorithm is not an accepted asymmetric algorithm")
    if "crit" in header:
        raise TokenInvalid("token header has critical extensions this verifier does not know")
    return header


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
    allowed = key.get("alg")
    if allowed is not None and allowed != algorithm.name:
        raise TokenInvalid("token algorithm does not match its key")
    header_segment, payload_segment, signature_segment = token.split(".")
    try:
        # Key type, curve and "use" must fit the algorithm: an RSA key never
        # checks an ES256 signature.
        algorithm.check_key(key)
        signature = urlsafe_b64decode(signature_segment.encode("ascii"))
        genuine = algorithm.verify(
            f"{header_segment}.{payload_segment}".encode("ascii"), signature, key
        )
    except (JoseError, ValueError, TypeError) as error:
        raise TokenInvalid(f"token signature check failed: {type(error).__name__}") from None
    if not genuine:
        raise TokenInvalid("token signature check failed: BadSignatureError")
    claims = _b64_json(payload_segment)
    if not isinstance(claims, dict):
        raise TokenInvalid("token payload is not a JSON object")
    if "exp" not in claims:
        raise TokenInvalid("token has no exp claim")
    registry = _ClaimsRegistry(now=int(now), leeway=leeway, **_claim_options(audience, issuer))
    try:
        registry.validate(claims)
        registry.validate_expiry(claims["exp"])
    except ExpiredTokenError:
        raise TokenExpired("token has expired") from None
    except JoseError as error:
        raise TokenInvalid(f"token claims are not accepted: {error.error}") from None
    if not claims["sub"]:
        raise TokenInvalid("token has an empty subject")
    return claims


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
    """A bounded LRU of tokens already verified, each kept until it expires.

    A token seen before costs a dictionary lookup instead of a signature check.

    :param max_size: how many tokens to keep; 0 turns the cache off.
    """

    def __init__(self, max_size: int = 4096) -> None:
        self.max_size = max_size
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float, leeway: int) -> dict[str, Any] | None:
        """The claims of a cached token.

        :raises TokenExpired: the token was genuine but has expired since.
        """
        claims = self._entries.get(token)
        if claims is None:
            return None
        if claims["exp"] <= now - leeway:
            with self._lock:
                self._entries.pop(token, None)
            raise TokenExpired("token has expired")
        # Evicted by another thread meanwhile: the claims we hold are still right.
        # The hot path of every request: try/except costs less than contextlib.suppress.
        try:  # noqa: SIM105
            self._entries.move_to_end(token)
        except KeyError:
            pass
        return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        """Remember a verified token."""
        if self.max_size <= 0:
            return
        with self._lock:
            self._entries[token] = claims
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
