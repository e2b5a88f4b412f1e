"""JWT verification and the verified-token cache.

Tokens go through :meth:`AuthCore.verify` with a static key set, so every
check (header, key choice, signature, claims) runs as in production, with
no I/O: the flow must finish without yielding an effect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from crossmint_wsgi import tokens as tokens_module
from crossmint_wsgi.config import Crossmint, build_crossmint
from crossmint_wsgi.flows import AuthCore
from crossmint_wsgi.testing._keys import mint_api_key
from crossmint_wsgi.tokens import (
    MAX_TOKEN_LENGTH,
    TokenExpired,
    TokenInvalid,
    VerifiedTokenCache,
    check_claims,
    read_header,
    trusted_claims,
)

NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


class Keys:
    """Signing keys of every accepted family, and the public JWK Set."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, {"kid": "rsa"})
        self.ec = ECKey.generate_key("P-256", {"kid": "ec"})
        self.okp = OKPKey.generate_key("Ed25519", {"kid": "okp"})
        self.other_rsa = RSAKey.generate_key(2048, {"kid": "rsa"})
        self.ec384 = ECKey.generate_key("P-384", {"kid": "ec384"})
        self.pinned = RSAKey.generate_key(2048, {"kid": "pinned", "alg": "RS256"})

    def jwks(self) -> dict[str, Any]:
        keys = (self.rsa, self.ec, self.okp, self.ec384, self.pinned)
        return {"keys": [dict(key.as_dict(private=False)) for key in keys]}

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str = "RS256",
        key: RSAKey | ECKey | OKPKey | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        if key is None:
            key = {"RS": self.rsa, "PS": self.rsa, "ES": self.ec, "Ed": self.okp}[alg[:2]]
        full = {"typ": "JWT", "alg": alg, "kid": key.kid, **(header or {})}
        full = {name: value for name, value in full.items() if value is not None}
        # Signed by hand with joserfc's algorithm: its serializer refuses the
        # odd headers (crit, a numeric kid) these tests need.
        signing_input = f"{b64json(full)}.{b64json(dict(claims))}"
        signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
        return f"{signing_input}.{b64(signature)}"


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def crossmint() -> Crossmint:
    minted = mint_api_key("project-7")
    return build_crossmint(minted.api_key, signing_key=minted.signing_key)


def make_core(crossmint: Crossmint, keys: Keys, *, now: float = NOW, **settings: Any) -> AuthCore:
    settings.setdefault("leeway", 5)
    return AuthCore(crossmint, jwks=keys.jwks(), clock=lambda: now, **settings)


def verify(core: AuthCore, token: str) -> dict[str, Any]:
    """Run AuthCore.verify, which with a static key set must need no I/O."""
    flow = core.verify(token)
    try:
        effect = next(flow)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError(f"verify yielded {effect!r} with a static key set")


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "user-1", "aud": "project-7", "iat": NOW - 60, "exp": NOW + 600}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


# -- accepted -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key_name"),
    [
        pytest.param("RS256", "rsa", id="RS256"),
        pytest.param("RS512", "rsa", id="RS512"),
        pytest.param("PS256", "rsa", id="PS256"),
        pytest.param("ES256", "ec", id="ES256"),
        pytest.param("ES384", "ec384", id="ES384"),
        pytest.param("EdDSA", "okp", id="EdDSA"),
        pytest.param("Ed25519", "okp", id="Ed25519"),
    ],
)
def test_asymmetric_algorithms_are_accepted(
    crossmint: Crossmint, keys: Keys, alg: str, key_name: str
) -> None:
    token = keys.sign(claims(), alg=alg, key=getattr(keys, key_name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no SecurityWarning for EdDSA either
        verified = verify(make_core(crossmint, keys), token)
    assert verified == claims()


@pytest.mark.parametrize(
    ("overrides", "header"),
    [
        pytest.param({"aud": ["other", "project-7"]}, None, id="aud-list-with-project"),
        pytest.param({"aud": None}, None, id="no-aud"),
        pytest.param({"iat": None, "nbf": None}, None, id="no-iat"),
        pytest.param({"exp": NOW - 4}, None, id="expired-within-leeway"),
        pytest.param({"nbf": NOW + 5}, None, id="nbf-within-leeway"),
        pytest.param({"iat": NOW + 5}, None, id="iat-within-leeway"),
        pytest.param({"exp": NOW + 600.5}, None, id="float-exp"),
        pytest.param({"email": "a@example.com", "x": {"y": 1}}, None, id="extra-claims"),
        pytest.param({}, {"typ": None}, id="no-typ"),
        pytest.param({}, {"x-custom": "value"}, id="unknown-header-parameter"),
    ],
)
def test_valid_variants(
    crossmint: Crossmint,
    keys: Keys,
    overrides: dict[str, Any],
    header: dict[str, Any] | None,
) -> None:
    token = keys.sign(claims(**overrides), header=header)
    assert verify(make_core(crossmint, keys), token)["sub"] == "user-1"


def test_token_without_kid_uses_the_only_key(crossmint: Crossmint, keys: Keys) -> None:
    core = AuthCore(crossmint, jwks={"keys": [keys.rsa.as_dict(private=False)]}, clock=lambda: NOW)
    token = keys.sign(claims(), header={"kid": None})
    assert verify(core, token)["sub"] == "user-1"


def test_issuer_configured_and_matching(crossmint: Crossmint, keys: Keys) -> None:
    core = make_core(crossmint, keys, issuer="https://www.crossmint.com")
    token = keys.sign(claims(iss="https://www.crossmint.com"))
    assert verify(core, token)["iss"] == "https://www.crossmint.com"


# -- refused ------------------------------------------------------------------------------


def _none_token() -> str:
    return f"{b64json({'alg': 'none', 'kid': 'rsa'})}.{b64json(claims())}."


def _hs256_with_public_key(keys: Keys) -> str:
    secret = keys.rsa.get_op_key("verify").public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'HS256', 'kid': 'rsa'})}.{b64json(claims())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered(keys: Keys) -> str:
    header, _, signature = keys.sign(claims()).split(".")
    return f"{header}.{b64json(claims(sub='admin'))}.{signature}"


def _swap_signature(keys: Keys) -> str:
    first = keys.sign(claims()).split(".")
    second = keys.sign(claims(sub="other")).split(".")
    return f"{first[0]}.{first[1]}.{second[2]}"


def _raw(header: Any, payload: Any, signature: str = "c2ln") -> str:
    return f"{b64json(header)}.{b64json(payload)}.{signature}"


INVALID: list[Any] = [
    pytest.param(lambda k: _none_token(), "not an accepted asymmetric", id="alg-none"),
    pytest.param(_hs256_with_public_key, "not an accepted asymmetric", id="hs256-public-key"),
    pytest.param(
        lambda k: _raw({"alg": "HS512", "kid": "rsa"}, claims()), "not an accepted", id="hs512"
    ),
    pytest.param(lambda k: _raw({"kid": "rsa"}, claims()), "not an accepted", id="no-alg"),
    pytest.param(
        lambda k: _raw({"alg": ["RS256"], "kid": "rsa"}, claims()), "not an accepted", id="alg-list"
    ),
    pytest.param(
        lambda k: k.sign(claims(), header={"kid": "unknown"}),
        "not in Crossmint's key set",
        id="unknown-kid",
    ),
    pytest.param(
        lambda k: k.sign(claims(), header={"kid": None}),
        "not in Crossmint's key set",
        id="no-kid-many-keys",
    ),
    pytest.param(
        lambda k: k.sign(claims(), key=k.other_rsa),
        "signature check failed",
        id="right-kid-other-key",
    ),
    pytest.param(_tampered, "signature check failed", id="tampered-payload"),
    pytest.param(_swap_signature, "signature check failed", id="signature-of-another-token"),
    pytest.param(
        lambda k: k.sign(claims()).rsplit(".", 1)[0] + ".@@@",
        "signature check failed",
        id="signature-not-base64url",
    ),
    pytest.param(
        lambda k: k.sign(claims()).rsplit(".", 1)[0] + ".",
        "signature check failed",
        id="empty-signature",
    ),
    pytest.param(
        lambda k: k.sign(claims(), alg="ES256", key=k.ec, header={"kid": "rsa"}),
        "signature check failed: InvalidKeyTypeError",
        id="ec-token-rsa-key",
    ),
    pytest.param(
        lambda k: k.sign(claims(), alg="ES256", key=k.ec, header={"kid": "ec384"}),
        "signature check failed: InvalidKeyCurveError",
        id="es256-on-p384-key",
    ),
    pytest.param(
        lambda k: k.sign(claims(), alg="PS256", key=k.pinned),
        "does not match its key",
        id="key-pinned-to-other-alg",
    ),
    pytest.param(lambda k: k.sign(claims(exp=None)), "no exp claim", id="missing-exp"),
    pytest.param(lambda k: k.sign(claims(exp="soon")), "claims are not accepted", id="exp-string"),
    pytest.param(lambda k: k.sign(claims(exp=True)), "claims are not accepted", id="exp-bool"),
    pytest.param(lambda k: k.sign(claims(sub=None)), "claims are not accepted", id="missing-sub"),
    pytest.param(lambda k: k.sign(claims(sub="")), "claims are not accepted", id="empty-sub"),
    pytest.param(lambda k: k.sign(claims(sub=42)), "claims are not accepted", id="sub-number"),
    pytest.param(
        lambda k: k.sign(claims(aud="other")),
        "claims are not accepted: invalid_claim",
        id="wrong-aud",
    ),
    pytest.param(
        lambda k: k.sign(claims(aud=["a", "b"])),
        "claims are not accepted",
        id="aud-list-without-project",
    ),
    pytest.param(lambda k: k.sign(claims(aud="")), "claims are not accepted", id="empty-aud"),
    pytest.param(
        lambda k: k.sign(claims(aud=[7])), "claims are not accepted", id="aud-not-strings"
    ),
    pytest.param(lambda k: k.sign(claims(nbf=NOW + 6)), "claims are not accepted", id="nbf-future"),
    pytest.param(lambda k: k.sign(claims(iat=NOW + 6)), "claims are not accepted", id="iat-future"),
    pytest.param(
        lambda k: k.sign(claims(exp=NOW - 100, aud="other")),
        "claims are not accepted",
        id="expired-and-wrong-aud",
    ),
    pytest.param(
        lambda k: _tampered(k).replace(
            b64json(claims(sub="admin")), b64json(claims(sub="admin", exp=NOW - 100))
        ),
        "signature check failed",
        id="expired-and-forged",
    ),
    pytest.param(
        lambda k: k.sign(claims(), header={"crit": ["exp"], "exp": 1}),
        "critical extensions",
        id="crit-header",
    ),
    pytest.param(
        lambda k: k.sign(claims(), header={"kid": 5}), "kid is not a string", id="kid-number"
    ),
    pytest.param(
        lambda k: k.sign(claims(), header={"kid": ["rsa"]}), "kid is not a string", id="kid-list"
    ),
    pytest.param(
        lambda k: k.sign(claims()) + "." + "A" * 20 + ".BBBB",
        "not a compact JWS",
        id="jwe-five-parts",
    ),
    pytest.param(
        lambda k: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
        "not a compact JWS",
        id="jwe-header",
    ),
    pytest.param(lambda k: "a" * 100 * 1024, "too long", id="100-kb"),
    pytest.param(lambda k: k.sign(claims(pad="x" * 100 * 1024)), "too long", id="100-kb-signed"),
    pytest.param(lambda k: "", "not a compact JWS", id="empty"),
    pytest.param(lambda k: "garbage", "not a compact JWS", id="garbage"),
    pytest.param(lambda k: "a.b.c", "not base64url JSON", id="not-json"),
    pytest.param(
        lambda k: f"{b64(b'[' * 5000)}.e30.c2ln", "not base64url JSON", id="deeply-nested-header"
    ),
    pytest.param(
        lambda k: _raw(["RS256"], claims()), "header is not a JSON object", id="header-list"
    ),
    pytest.param(
        lambda k: k.sign(claims()).replace(".", ".\u00e9", 1),
        "signature check failed|base64url",
        id="non-ascii",
    ),
]


@pytest.mark.parametrize(("make_token", "message"), INVALID)
def test_invalid_tokens(crossmint: Crossmint, keys: Keys, make_token: Any, message: str) -> None:
    token = make_token(keys)
    with pytest.raises(TokenInvalid, match=message):
        verify(make_core(crossmint, keys), token)


def test_payload_that_is_not_an_object(crossmint: Crossmint, keys: Keys) -> None:
    from joserfc import jws

    token = jws.serialize_compact({"alg": "RS256", "kid": "rsa"}, b"[1, 2]", keys.rsa)
    with pytest.raises(TokenInvalid, match="payload is not a JSON object"):
        verify(make_core(crossmint, keys), token)


@pytest.mark.parametrize(
    ("exp", "leeway"),
    [
        pytest.param(NOW - 100, 5, id="long-expired"),
        pytest.param(NOW - 5, 5, id="at-leeway"),
        pytest.param(NOW, 0, id="exp-now-no-leeway"),
    ],
)
def test_expired(crossmint: Crossmint, keys: Keys, exp: int, leeway: int) -> None:
    token = keys.sign(claims(exp=exp))
    with pytest.raises(TokenExpired):
        verify(make_core(crossmint, keys, leeway=leeway), token)


@pytest.mark.parametrize(
    ("token_issuer", "message"),
    [
        pytest.param("https://evil.example", "invalid_claim", id="mismatch"),
        pytest.param(None, "missing_claim", id="missing"),
        pytest.param(7, "invalid_claim", id="not-a-string"),
    ],
)
def test_issuer_refused(crossmint: Crossmint, keys: Keys, token_issuer: Any, message: str) -> None:
    core = make_core(crossmint, keys, issuer="https://www.crossmint.com")
    with pytest.raises(TokenInvalid, match=message):
        verify(core, keys.sign(claims(iss=token_issuer)))


def test_issuer_unchecked_when_not_configured(crossmint: Crossmint, keys: Keys) -> None:
    token = keys.sign(claims(iss="https://anyone.example"))
    assert verify(make_core(crossmint, keys), token)["iss"] == "https://anyone.example"


def test_read_header() -> None:
    token = _raw({"alg": "ES256", "kid": "k", "typ": "JWT"}, {})
    assert read_header(token) == {"alg": "ES256", "kid": "k", "typ": "JWT"}
    assert MAX_TOKEN_LENGTH >= 4096


# -- trusted claims (a token Crossmint's refresh call returned) ------------------------


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        pytest.param({"sub": "u", "exp": NOW}, True, id="sub-and-exp"),
        pytest.param({"sub": "u", "exp": 1.5}, True, id="float-exp"),
        pytest.param({"exp": NOW}, False, id="no-sub"),
        pytest.param({"sub": "", "exp": NOW}, False, id="empty-sub"),
        pytest.param({"sub": 5, "exp": NOW}, False, id="numeric-sub"),
        pytest.param({"sub": "u"}, False, id="no-exp"),
        pytest.param({"sub": "u", "exp": "soon"}, False, id="string-exp"),
        pytest.param({"sub": "u", "exp": True}, False, id="bool-exp"),
        pytest.param(["sub"], False, id="not-an-object"),
    ],
)
def test_trusted_claims(payload: Any, ok: bool) -> None:
    token = _raw({"alg": "RS256"}, payload)
    if ok:
        assert trusted_claims(token) == payload
    else:
        with pytest.raises(TokenInvalid, match="Crossmint returned a JWT without sub or exp"):
            trusted_claims(token)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c.d.e", id="five-parts"),
        pytest.param("x" * (MAX_TOKEN_LENGTH + 1), id="too-long"),
    ],
)
def test_trusted_claims_malformed(token: str) -> None:
    with pytest.raises(TokenInvalid, match="malformed JWT"):
        trusted_claims(token)


# -- the verified-token cache ---------------------------------------------------------------


def test_verified_token_is_cached(crossmint: Crossmint, keys: Keys) -> None:
    core = make_core(crossmint, keys)
    token = keys.sign(claims())
    first = verify(core, token)
    assert len(core.tokens) == 1
    # Served from the cache: the same claims object, no signature check.
    core.keys._keys.clear()
    assert verify(core, token) is first


def test_refused_tokens_are_not_cached(crossmint: Crossmint, keys: Keys) -> None:
    core = make_core(crossmint, keys)
    for token in (keys.sign(claims(aud="other")), keys.sign(claims(exp=NOW - 100))):
        with pytest.raises((TokenInvalid, TokenExpired)):
            verify(core, token)
    assert len(core.tokens) == 0


def test_cached_token_expires_with_the_token(crossmint: Crossmint, keys: Keys) -> None:
    clock = {"now": float(NOW)}
    core = AuthCore(crossmint, jwks=keys.jwks(), clock=lambda: clock["now"], leeway=5)
    token = keys.sign(claims(exp=NOW + 60))
    verify(core, token)
    clock["now"] = NOW + 64.9
    assert verify(core, token)["sub"] == "user-1"
    clock["now"] = NOW + 65
    with pytest.raises(TokenExpired):
        verify(core, token)
    assert len(core.tokens) == 0


def test_cache_size_is_configurable(crossmint: Crossmint, keys: Keys) -> None:
    core = make_core(crossmint, keys, token_cache_size=2)
    tokens = [keys.sign(claims(jti=str(index))) for index in range(5)]
    for token in tokens:
        verify(core, token)
    assert len(core.tokens) == 2


def test_entry_bound() -> None:
    # Which entries stay when full is crossmint_wsgi.caches' policy, tested there.
    cache = VerifiedTokenCache(max_size=2)
    for name in "abcdefgh":
        cache.put(name, {"exp": NOW + 10, "n": name}, NOW)
    assert len(cache) == 2


def test_expired_entry_raises_and_is_dropped() -> None:
    cache = VerifiedTokenCache()
    cache.put("a", {"exp": NOW}, NOW)
    assert cache.get("a", NOW + 4, 5) is not None
    with pytest.raises(TokenExpired):
        cache.get("a", NOW + 5, 5)
    assert len(cache) == 0
    assert cache.get("a", NOW, 5) is None


def test_zero_size_turns_the_cache_off() -> None:
    cache = VerifiedTokenCache(max_size=0)
    cache.put("a", {"exp": NOW + 10}, NOW)
    assert len(cache) == 0
    assert cache.get("a", NOW, 0) is None


def test_clear() -> None:
    cache = VerifiedTokenCache()
    cache.put("a", {"exp": NOW + 10}, NOW)
    cache.clear()
    assert len(cache) == 0


# -- parsing details ----------------------------------------------------------------------------


def test_headers_are_parsed_once_and_shared_read_only(keys: Keys) -> None:
    first = read_header(keys.sign(claims()))
    second = read_header(keys.sign(claims(sub="other")))
    assert first is second
    with pytest.raises(TypeError):
        first["alg"] = "none"  # type: ignore[index]


def test_header_cache_is_bounded_and_stays_correct() -> None:
    tokens = [_raw({"alg": "RS256", "kid": f"k{index}"}, {}) for index in range(200)]
    for token in tokens:
        read_header(token)
    assert len(tokens_module._HEADERS) <= tokens_module._HEADERS_MAX
    assert read_header(tokens[0])["kid"] == "k0"
    assert read_header(tokens[-1])["kid"] == "k199"


def test_refused_headers_are_refused_every_time() -> None:
    token = _raw({"alg": "HS256", "kid": "k"}, {})
    for _ in range(3):
        with pytest.raises(TokenInvalid, match="not an accepted"):
            read_header(token)


def test_a_key_that_does_not_fit_is_refused_every_time(crossmint: Crossmint, keys: Keys) -> None:
    core = make_core(crossmint, keys)
    token = keys.sign(claims(), alg="ES256", key=keys.ec, header={"kid": "rsa"})
    for _ in range(3):
        with pytest.raises(TokenInvalid, match="InvalidKeyTypeError"):
            verify(core, token)
    assert verify(core, keys.sign(claims()))["sub"] == "user-1"


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("=", id="padding"),
        pytest.param("+", id="plus"),
        pytest.param("/", id="slash"),
        pytest.param("*", id="star"),
        pytest.param(" ", id="space"),
    ],
)
def test_signature_outside_base64url_is_refused(
    crossmint: Crossmint, keys: Keys, signature: str
) -> None:
    head, payload, good = keys.sign(claims()).split(".")
    token = f"{head}.{payload}.{good[:-2]}{signature}{good[-1]}"
    with pytest.raises(TokenInvalid, match="signature check failed"):
        verify(make_core(crossmint, keys), token)


def test_non_canonical_signature_spelling_is_refused(crossmint: Crossmint, keys: Keys) -> None:
    head, payload, good = keys.sign(claims(), alg="ES256").split(".")
    # 64 bytes: the last base64url character carries 2 stray bits that must be zero.
    assert len(good) % 4 == 2
    stray = good[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[good[-1]]
    with pytest.raises(TokenInvalid, match="signature check failed"):
        verify(make_core(crossmint, keys), f"{head}.{payload}.{stray}")


@given(st.binary(max_size=64) | st.text(alphabet="AQgwz-_+/=.* \u00e9", max_size=12))
def test_base64url_decoding_matches_joserfc(data: bytes | str) -> None:
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode() if isinstance(data, bytes) else data
    try:
        expected: bytes | None = urlsafe_b64decode(text.encode("ascii"))
    except (ValueError, UnicodeError):
        expected = None
    try:
        actual: bytes | None = tokens_module._b64decode(text)
    except (ValueError, UnicodeError):
        actual = None
    assert actual == expected


# -- the claim checks agree with joserfc's JWTClaimsRegistry ------------------------------------

AUDIENCE = "project-7"
ISSUER = "https://www.crossmint.com"

_claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", AUDIENCE, "other", ISSUER, "user-1"]),
    st.integers(min_value=NOW - 20, max_value=NOW + 20),
    st.floats(min_value=NOW - 20, max_value=NOW + 20),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**30]),
    st.lists(st.sampled_from([AUDIENCE, "other", ""]), max_size=3),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.dictionaries(st.just("a"), st.integers(), max_size=1),
)


def _reference(claims: dict[str, Any], issuer: str | None, leeway: int, now: int) -> str:
    """What a JWTClaimsRegistry (exp essential, checked last) says."""
    from joserfc.errors import ExpiredTokenError, JoseError
    from joserfc.jwt import JWTClaimsRegistry

    options: dict[str, Any] = {
        "sub": {"essential": True},
        "aud": {"essential": False, "value": AUDIENCE},
    }
    if issuer is not None:
        options["iss"] = {"essential": True, "value": issuer}
    registry = JWTClaimsRegistry(now=now, leeway=leeway, **options)
    if claims.get("exp") is None:
        return "invalid"
    try:
        registry.validate({name: value for name, value in claims.items() if name != "exp"})
        registry.validate_exp(claims["exp"])
    except ExpiredTokenError:
        return "expired"
    except JoseError:
        return "invalid"
    return "ok"


@given(
    claims=st.dictionaries(
        st.sampled_from(["sub", "aud", "iss", "nbf", "iat", "exp", "jti", "email"]),
        _claim_values,
    ),
    issuer=st.sampled_from([None, ISSUER]),
    leeway=st.sampled_from([0, 5]),
)
def test_check_claims_agrees_with_joserfc(
    claims: dict[str, Any], issuer: str | None, leeway: int
) -> None:
    try:
        check_claims(claims, audience=AUDIENCE, issuer=issuer, leeway=leeway, now=NOW + 0.5)
        outcome = "ok"
    except TokenExpired:
        outcome = "expired"
    except TokenInvalid:
        outcome = "invalid"
    assert outcome == _reference(claims, issuer, leeway, NOW)
