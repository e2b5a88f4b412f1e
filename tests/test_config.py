"""API key validation (SPEC section 1), environments and base URLs."""

from __future__ import annotations

import dataclasses
import uuid
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crossmint_wsgi import Crossmint, CrossmintConfigError, Environment, UsageOrigin
from crossmint_wsgi import create_crossmint as public_create_crossmint
from crossmint_wsgi._base58 import b58decode, b58encode
from crossmint_wsgi.config import (
    BASE_URLS,
    CROSSMINT_SIGNING_KEYS,
    build_crossmint,
    create_crossmint,
    normalize_base_url,
    parse_api_key,
)

PROJECT = "5c8a3f2e-0b7d-4c1e-9a6f-2d3b4c5d6e7f"
KEY_DATA = f"{PROJECT}.0123456789abcdef"


@dataclasses.dataclass(frozen=True)
class Signer:
    """An Ed25519 key standing in for Crossmint's, to mint keys in tests."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> str:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return b58encode(raw)

    def mint(
        self,
        origin: str = "sk",
        environment: str = "development",
        key_data: str = KEY_DATA,
        *,
        signed_as: str | None = None,
    ) -> str:
        """A key ``{origin}_{environment}_{payload}``, its signature over ``signed_as``."""
        message = signed_as or f"{origin}_{environment}.{key_data}"
        signature = b58encode(self.private.sign(message.encode()))
        return f"{origin}_{environment}_{b58encode(f'{key_data}:{signature}'.encode())}"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


def payload(text: str | bytes) -> str:
    return b58encode(text.encode() if isinstance(text, str) else text)


# -- valid keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "base_url"),
    [
        pytest.param(Environment.DEVELOPMENT, "http://localhost:3000", id="development"),
        pytest.param(Environment.STAGING, "https://staging.crossmint.com", id="staging"),
        pytest.param(Environment.PRODUCTION, "https://www.crossmint.com", id="production"),
    ],
)
def test_valid_server_key(signer: Signer, environment: Environment, base_url: str) -> None:
    api_key = signer.mint("sk", environment.value)
    crossmint = build_crossmint(api_key, signing_key=signer.public)
    assert crossmint == Crossmint(
        api_key=api_key,
        project_id=PROJECT,
        environment=environment,
        usage_origin=UsageOrigin.SERVER,
        base_url=base_url,
    )
    assert BASE_URLS[environment] == base_url


@pytest.mark.parametrize(
    ("key_data", "project_id"),
    [
        pytest.param(KEY_DATA, PROJECT, id="uuid-dot-secret"),
        pytest.param("project-only", "project-only", id="no-dot"),
        pytest.param("p.a.b", "p", id="first-dot-wins"),
        pytest.param("p:q.x", "p:q", id="colon-in-key-data"),
    ],
)
def test_project_id_is_key_data_up_to_its_first_dot(
    signer: Signer, key_data: str, project_id: str
) -> None:
    parsed = parse_api_key(signer.mint(key_data=key_data), signing_key=signer.public)
    assert parsed.project_id == project_id
    assert parsed.key_data == key_data


def test_surrounding_whitespace_is_ignored(signer: Signer) -> None:
    api_key = signer.mint()
    crossmint = build_crossmint(f"  {api_key}\n", signing_key=signer.public)
    assert crossmint.api_key == api_key


def test_client_key_warns_that_a_server_key_is_expected(signer: Signer) -> None:
    with pytest.warns(UserWarning, match=r"client key \(ck_\).*server key \(sk_\)") as record:
        crossmint = build_crossmint(signer.mint("ck"), signing_key=signer.public)
    assert crossmint.usage_origin is UsageOrigin.CLIENT
    assert all(signer.mint("ck") not in str(warning.message) for warning in record)


def test_server_key_does_not_warn(signer: Signer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_crossmint(signer.mint("sk"), signing_key=signer.public)


def test_app_id_is_kept(signer: Signer) -> None:
    crossmint = build_crossmint(signer.mint(), signing_key=signer.public, app_id="my-app")
    assert crossmint.app_id == "my-app"


def test_repr_hides_the_api_key(signer: Signer) -> None:
    api_key = signer.mint()
    crossmint = build_crossmint(api_key, signing_key=signer.public)
    text = repr(crossmint)
    assert "api_key" not in text
    assert api_key not in text
    assert api_key.rsplit("_", 1)[1] not in text
    assert PROJECT in text


def test_config_is_frozen(signer: Signer) -> None:
    crossmint = build_crossmint(signer.mint(), signing_key=signer.public)
    with pytest.raises(dataclasses.FrozenInstanceError):
        crossmint.base_url = "http://elsewhere"  # type: ignore[misc]


def test_crossmint_signing_keys_are_ed25519_public_keys() -> None:
    for environment in Environment:
        raw = b58decode(CROSSMINT_SIGNING_KEYS[environment])
        assert len(raw) == 32
        Ed25519PublicKey.from_public_bytes(raw)
    assert CROSSMINT_SIGNING_KEYS[Environment.DEVELOPMENT] == (
        "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5"
    )
    assert CROSSMINT_SIGNING_KEYS[Environment.STAGING] == (
        "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5"
    )
    assert CROSSMINT_SIGNING_KEYS[Environment.PRODUCTION] == (
        "8erZh8YApGck3iUSUHqATBxqMTM1Ukp9mHmvGgUWHtkK"
    )


# -- every failing step, and its message ------------------------------------------------


def _bad_keys(signer: Signer) -> list[tuple[str, str, str]]:
    """(id, key, message pattern) for every step that can fail."""
    other = Signer(Ed25519PrivateKey.generate())
    good_signature = b58encode(signer.private.sign(f"sk_development.{KEY_DATA}".encode()))
    return [
        ("empty", "", "missing or empty"),
        ("blank", "   ", "missing or empty"),
        ("no-underscore", "skdevelopment" + payload("x:y"), "malformed: expected"),
        ("one-underscore", "sk_" + payload(f"{KEY_DATA}:{good_signature}"), "malformed: expected"),
        (
            "uppercase-origin",
            "SK_development_" + payload(f"{KEY_DATA}:{good_signature}"),
            "malformed: expected",
        ),
        ("unknown-origin", signer.mint("pk"), "malformed prefix 'pk'"),
        ("unknown-environment", signer.mint(environment="prod"), "unknown environment 'prod'"),
        ("old-live", "sk_live_" + payload(f"{KEY_DATA}:{good_signature}"), "old sk_live/sk_test"),
        ("old-test", "sk_test_" + payload(f"{KEY_DATA}:{good_signature}"), "old sk_live/sk_test"),
        ("old-live-bare", "sk_live_0123456789abcdef", "create a new server key"),
        ("payload-zero", "sk_development_0OIl" + good_signature, "not valid base58"),
        ("payload-symbols", "sk_development_abc+/=", "not valid base58"),
        ("payload-not-utf8", "sk_development_" + payload(b"\xff\xfe\xfd:abc"), "not valid base58"),
        ("no-colon", "sk_development_" + payload(f"{KEY_DATA}{good_signature}"), "'{keyData}:"),
        ("empty-signature", "sk_development_" + payload(f"{KEY_DATA}:"), "'{keyData}:"),
        ("empty-key-data", "sk_development_" + payload(f":{good_signature}"), "'{keyData}:"),
        ("signature-by-another-key", other.mint(), "bad signature.*development"),
        (
            "signature-not-base58",
            "sk_development_" + payload(f"{KEY_DATA}:0OIl"),
            "bad signature",
        ),
        (
            "signature-truncated",
            "sk_development_" + payload(f"{KEY_DATA}:{good_signature[:-10]}"),
            "bad signature",
        ),
        (
            "key-data-altered",
            "sk_development_" + payload(f"{KEY_DATA}x:{good_signature}"),
            "bad signature",
        ),
        (
            "other-environment-relabelled",
            signer.mint(environment="production", signed_as=f"sk_development.{KEY_DATA}"),
            "bad signature.*for the production environment",
        ),
        (
            "client-key-relabelled-server",
            signer.mint("sk", signed_as=f"ck_development.{KEY_DATA}"),
            "bad signature",
        ),
        ("signature-without-dot", signer.mint(signed_as=f"sk_development{KEY_DATA}"), "bad sig"),
        ("no-project-id", signer.mint(key_data=".secret"), "carries no project id"),
    ]


def bad_key_params() -> list[object]:
    signer = Signer(Ed25519PrivateKey.generate())
    return [pytest.param(signer, key, message, id=case) for case, key, message in _bad_keys(signer)]


@pytest.mark.parametrize(("key_signer", "api_key", "message"), bad_key_params())
def test_bad_key_names_the_failing_step(key_signer: Signer, api_key: str, message: str) -> None:
    with pytest.raises(CrossmintConfigError, match=message) as caught:
        build_crossmint(api_key, signing_key=key_signer.public)
    text = str(caught.value)
    assert text.startswith("Crossmint API key")
    assert caught.value.setting == "api_key"
    if api_key.strip():
        assert api_key not in text
        assert api_key.rsplit("_", 1)[-1] not in text


@pytest.mark.parametrize("api_key", [None, 42, b"sk_development_abc"])
def test_a_key_that_is_not_text_is_missing(api_key: object) -> None:
    with pytest.raises(CrossmintConfigError, match="missing or empty"):
        parse_api_key(api_key)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="missing or empty"):
        create_crossmint("")


def test_key_for_another_environment_fails_against_crossmints_own_keys(signer: Signer) -> None:
    # A development key signed with the production key's private half would
    # still be checked against the development key; here: neither is ours.
    for environment in Environment:
        with pytest.raises(CrossmintConfigError, match=f"bad signature.*{environment.value}"):
            create_crossmint(signer.mint(environment=environment.value))


def test_real_looking_unsigned_key_fails_at_the_signature_step() -> None:
    fake_signature = b58encode(bytes(range(64)))
    api_key = "sk_production_" + payload(f"{uuid.uuid4()}.{'ab' * 16}:{fake_signature}")
    with pytest.raises(CrossmintConfigError, match="bad signature") as caught:
        public_create_crossmint(api_key)
    assert api_key not in str(caught.value)


def test_signing_key_that_is_not_a_key_is_a_bad_signature(signer: Signer) -> None:
    with pytest.raises(CrossmintConfigError, match="bad signature"):
        build_crossmint(signer.mint(), signing_key=b58encode(b"short"))


# -- base URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("http://127.0.0.1:9000", "http://127.0.0.1:9000", id="plain"),
        pytest.param("http://127.0.0.1:9000/", "http://127.0.0.1:9000", id="one-slash"),
        pytest.param("https://example.com///", "https://example.com", id="many-slashes"),
        pytest.param("https://example.com/prefix/", "https://example.com/prefix", id="path"),
        pytest.param("HTTPS://Example.com", "HTTPS://Example.com", id="upper-scheme"),
    ],
)
def test_base_url_override(signer: Signer, given: str, expected: str) -> None:
    crossmint = build_crossmint(
        signer.mint("sk", "production"), signing_key=signer.public, base_url=given
    )
    assert crossmint.base_url == expected
    assert crossmint.environment is Environment.PRODUCTION


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("localhost:3000", id="no-scheme"),
        pytest.param("ftp://example.com", id="ftp"),
        pytest.param("/api", id="relative"),
        pytest.param("http://", id="no-host"),
        pytest.param("https:///path", id="empty-host"),
    ],
)
def test_bad_base_url(signer: Signer, base_url: str) -> None:
    with pytest.raises(CrossmintConfigError, match="not an absolute http") as caught:
        build_crossmint(signer.mint(), signing_key=signer.public, base_url=base_url)
    assert caught.value.setting == "base_url"


def test_normalize_base_url_strips_trailing_slashes() -> None:
    assert normalize_base_url("http://a.test//") == "http://a.test"
