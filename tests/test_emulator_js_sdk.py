"""The emulator against Crossmint's own JS server SDK, so that it speaks Crossmint's API.

What runs: ``@crossmint/server-sdk`` (the version pinned in ``tests/js/package.json``
and ``tests/js/package-lock.json``) is installed with ``npm ci`` into
``.cache/js-sdk/`` (gitignored), once, and reused while the lockfile is unchanged.
``tests/js/sdk_session.mjs`` then calls the SDK as an app would:
``createCrossmint({apiKey, overrideBaseUrl: emulator.url})``, the auth client
(``createCrossmintAuth(crossmint)`` where the SDK has it, ``CrossmintAuth.from(crossmint)``
in 1.2.x), and ``getSession({jwt, refreshToken})`` or ``getUser(userId)``. Every
HTTP call goes from the SDK to the emulator over loopback: the JWK Set (through
``jose``'s remote key set), the refresh and the get-user calls.

What is patched, and why: the SDK refuses any API key whose Ed25519 signature
does not verify against Crossmint's signer public keys, which it bundles as the
constants ``CROSSMINT_API_KEY_SIGNER_PUBLICKEY_STAGING``
(``3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5``, also used for development keys)
and ``..._PROD`` in one chunk of ``@crossmint/common-sdk-base/dist/``
(``chunk-4RWQEYZX.js`` in 0.9.5). The emulator mints its own development key,
signed by its own Ed25519 key, which no patch-free SDK accepts
(:func:`test_the_sdk_refuses_the_emulator_key_unpatched` checks that). So the
node process is started with ``--import tests/js/trust_emulator_key.mjs``,
which registers loader hooks (``tests/js/trust_emulator_key_hooks.mjs``) that
replace the staging/development constant with :attr:`CrossmintEmulator.signing_key`
in the source of ``@crossmint/common-sdk-base/dist/*.js`` as Node loads it.
Nothing else changes, and nothing on disk: the installed copy stays as npm
installed it, and the production constant is untouched. The script reports the
constant the SDK ended up with, and the tests check it is the emulator's key,
so an SDK that moves the constant fails here loudly instead of passing by accident.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from npm import npm_installed
from support import require_program

from crossmint_wsgi import AuthMaterial
from crossmint_wsgi.testing import CrossmintEmulator

pytestmark = pytest.mark.slow

JS_DIR = Path(__file__).parent / "js"
SDK_DIR = Path(__file__).parents[1] / ".cache" / "js-sdk"
SDK_VERSION = json.loads((JS_DIR / "package.json").read_text())["dependencies"][
    "@crossmint/server-sdk"
]
REFRESH = "/api/2024-09-26/session/sdk/auth/refresh"


@pytest.fixture(scope="module")
def node() -> str:
    node = require_program("node")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < (20, 6):
        pytest.fail(f"node {version} is too old: loader hooks need 20.6 or newer", pytrace=False)
    return node


@pytest.fixture(scope="module")
def sdk_dir(node: str) -> Path:
    """``.cache/js-sdk`` with the locked SDK installed, by ``npm ci`` when the lock changed."""
    installed = SDK_DIR / "node_modules" / "@crossmint" / "server-sdk" / "package.json"
    npm_installed(
        JS_DIR,
        SDK_DIR,
        copied=("package.json", "package-lock.json"),
        stamped=("package-lock.json",),
        stamp="installed-package-lock.json",
        product=installed,
    )
    assert json.loads(installed.read_text())["version"] == SDK_VERSION
    return SDK_DIR


@pytest.fixture(
    scope="module", params=[pytest.param("RS256", id="RS256"), pytest.param("ES256", id="ES256")]
)
def _emulator(request: pytest.FixtureRequest) -> Iterator[CrossmintEmulator]:
    with CrossmintEmulator(algorithm=request.param) as emulator:
        yield emulator


@pytest.fixture
def emulator(_emulator: CrossmintEmulator) -> Iterator[CrossmintEmulator]:
    _emulator.reset()
    yield _emulator
    _emulator.reset()


def run_sdk(
    node: str,
    sdk_dir: Path,
    emulator: CrossmintEmulator,
    request: dict[str, Any],
    *,
    trust_emulator: bool = True,
) -> dict[str, Any]:
    """Run ``tests/js/sdk_session.mjs`` with ``request`` and return its JSON answer."""
    command = [node]
    if trust_emulator:
        command += ["--import", (JS_DIR / "trust_emulator_key.mjs").as_uri()]
    command.append(str(JS_DIR / "sdk_session.mjs"))
    payload = {"sdkDir": str(sdk_dir), "url": emulator.url, "apiKey": emulator.api_key, **request}
    result = subprocess.run(
        command,
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CROSSMINT_EMULATOR_SIGNING_KEY": emulator.signing_key or ""},
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    assert answer["sdkVersion"] == SDK_VERSION
    if trust_emulator:
        # The patch took: the SDK now trusts the emulator's signer, and only that changed.
        assert answer["trustedSigner"] == emulator.signing_key, result.stderr
    return answer


#: ``sdk(request, trust_emulator=True)``: the answer of Crossmint's SDK to ``request``.
Sdk = Callable[..., dict[str, Any]]


@pytest.fixture
def sdk(node: str, sdk_dir: Path, emulator: CrossmintEmulator) -> Sdk:
    """``sdk(request, trust_emulator=True)``: :func:`run_sdk` against this test's emulator."""
    return functools.partial(run_sdk, node, sdk_dir, emulator)


def get_session(material: AuthMaterial, refresh_token: str | None = None) -> dict[str, Any]:
    """The ``getSession`` request for ``material`` (or its JWT and ``refresh_token``)."""
    secret = material.refresh_token.secret if refresh_token is None else refresh_token
    return {"call": "getSession", "jwt": material.jwt, "refreshToken": secret}


def verified_claims(emulator: CrossmintEmulator, token: str) -> dict[str, Any]:
    key_set = KeySet.import_key_set(httpx.get(f"{emulator.url}/.well-known/jwks.json").json())
    decoded = jwt.decode(token, key_set, algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(
        leeway=0, exp={"essential": True}, aud={"essential": True, "value": emulator.project_id}
    ).validate(decoded.claims)
    return dict(decoded.claims)


def test_the_sdk_refuses_the_emulator_key_unpatched(sdk: Sdk, emulator: CrossmintEmulator) -> None:
    material = emulator.create_session("user-1")
    answer = sdk(get_session(material), trust_emulator=False)
    assert answer["trustedSigner"] == "3hSfN4dWSwgCg1uf2yytBtK6KxK3ySFKasd2h9J2vSK5"
    assert answer == {
        **answer,
        "ok": False,
        "error": "Invalid API key. Failed to validate signature",
    }
    assert emulator.requests == {"jwks": 0, "refresh": 0, "logout": 0, "user": 0}


def test_valid_session(sdk: Sdk, emulator: CrossmintEmulator) -> None:
    material = emulator.create_session("user-1", email="one@example.com")
    answer = sdk(get_session(material))
    assert answer["ok"], answer
    session = answer["value"]
    assert session["userId"] == "user-1"
    assert session["jwt"] == material.jwt
    assert session["refreshToken"]["secret"] == material.refresh_token.secret
    # The SDK verified the JWT against the emulator's JWK Set, and needed no refresh.
    assert emulator.requests == {"jwks": 1, "refresh": 0, "logout": 0, "user": 0}


def test_expired_jwt_is_refreshed_through_the_emulator(
    sdk: Sdk, emulator: CrossmintEmulator
) -> None:
    material = emulator.create_session("user-1", email="one@example.com", jwt_ttl=-10)
    answer = sdk(get_session(material))
    assert answer["ok"], answer
    session = answer["value"]
    assert session["userId"] == "user-1"
    assert session["jwt"] != material.jwt
    assert emulator.requests == {"jwks": 1, "refresh": 1, "logout": 0, "user": 0}
    claims = verified_claims(emulator, session["jwt"])
    assert (claims["sub"], claims["aud"]) == ("user-1", emulator.project_id)
    new_secret = session["refreshToken"]["secret"]
    assert new_secret != material.refresh_token.secret
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", session["refreshToken"]["expiresAt"]
    )
    # The SDK spent the old refresh token; the one it got back works.
    with httpx.Client(base_url=emulator.url, headers={"x-api-key": emulator.api_key}) as client:
        assert (
            client.post(REFRESH, json={"refresh": material.refresh_token.secret}).status_code == 401
        )
        assert client.post(REFRESH, json={"refresh": new_secret}).status_code == 200


def test_jwt_signed_by_a_dropped_key_is_refreshed(sdk: Sdk, emulator: CrossmintEmulator) -> None:
    material = emulator.create_session("user-1")
    emulator.rotate_keys(keep_old=False)
    answer = sdk(get_session(material))
    assert answer["ok"], answer
    token = answer["value"]["jwt"]
    assert jwt.decode(token, KeySet.import_key_set(emulator.key_set)).header["kid"] == emulator.kid
    assert emulator.requests["refresh"] == 1


def _unknown_secret(emulator: CrossmintEmulator, secret: str) -> str:
    return "never-issued"


def _refresh_answers_401(emulator: CrossmintEmulator, secret: str) -> str:
    emulator.fail_next(1, status=401, endpoint="refresh")
    return secret


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_unknown_secret, id="unknown-secret"),
        pytest.param(_refresh_answers_401, id="refresh-answers-401"),
    ],
)
def test_a_refused_refresh_fails_the_session(
    sdk: Sdk, emulator: CrossmintEmulator, spoil: Any
) -> None:
    material = emulator.create_session("user-1", jwt_ttl=-10)
    secret = spoil(emulator, material.refresh_token.secret)
    answer = sdk(get_session(material, secret))
    assert answer == {**answer, "ok": False, "error": "Failed to get session"}
    assert emulator.requests["refresh"] == 1


def test_get_user(sdk: Sdk, emulator: CrossmintEmulator) -> None:
    emulator.create_session(
        "user-1",
        email="one@example.com",
        phone_number="+15550100",
        user_fields={"twitter": {"username": "one", "id": "1"}},
    )
    answer = sdk({"call": "getUser", "userId": "user-1"})
    assert answer["ok"], answer
    assert answer["value"] == {
        "id": "user-1",
        "email": "one@example.com",
        "phoneNumber": "+15550100",
        "twitter": {"username": "one", "id": "1"},
    }
    assert emulator.requests["user"] == 1
