"""crossmint_wsgi.gunicorn_settings: the factory's settings, read from environment variables."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crossmint_wsgi import CookieOptions, CrossmintConfigError
from crossmint_wsgi.gunicorn_settings import VARIABLES, WrapSettings, _blame, settings_from_env

# -- settings_from_env ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, WrapSettings(), id="defaults"),
        pytest.param(
            {"SERVER_CROSSMINT_API_KEY": " sk_development_abc "},
            WrapSettings(api_key="sk_development_abc"),
            id="api-key-stripped",
        ),
        pytest.param(
            {
                "CROSSMINT_BASE_URL": "https://staging.crossmint.com/",
                "CROSSMINT_APP_ID": "my-app",
                "CROSSMINT_EMULATOR_URL": "http://127.0.0.1:9",
            },
            WrapSettings(
                base_url="https://staging.crossmint.com/",
                app_id="my-app",
                emulator_url="http://127.0.0.1:9",
            ),
            id="urls-and-app-id",
        ),
        pytest.param(
            {
                "CROSSMINT_PROTECT": "/dashboard/:path*, /api/:path* ,,",
                "CROSSMINT_LOGIN_URL": "/in",
            },
            WrapSettings(protect=("/dashboard/:path*", "/api/:path*"), login_url="/in"),
            id="protect-list",
        ),
        pytest.param(
            {"CROSSMINT_REFRESH_PATH": "/api/refresh", "CROSSMINT_LOGOUT_PATH": "/api/logout"},
            WrapSettings(refresh_path="/api/refresh", logout_path="/api/logout"),
            id="paths-moved",
        ),
        pytest.param(
            {"CROSSMINT_REFRESH_PATH": "off", "CROSSMINT_LOGOUT_PATH": ""},
            WrapSettings(refresh_path=None, logout_path=None),
            id="paths-off",
        ),
        pytest.param(
            {"CROSSMINT_ALLOWED_ORIGINS": "https://a.example,https://b.example"},
            WrapSettings(allowed_origins=("https://a.example", "https://b.example")),
            id="allowed-origins",
        ),
        pytest.param(
            {
                "CROSSMINT_COOKIE_SECURE": "true",
                "CROSSMINT_COOKIE_SAMESITE": "none",
                "CROSSMINT_COOKIE_DOMAIN": "example.com",
                "CROSSMINT_COOKIE_HTTPONLY": "0",
            },
            WrapSettings(
                cookie_options=CookieOptions(
                    secure=True, same_site="None", domain="example.com", http_only=False
                )
            ),
            id="cookie-options",
        ),
        pytest.param(
            {"CROSSMINT_COOKIE_SECURE": "auto", "CROSSMINT_COOKIE_HTTPONLY": "yes"},
            WrapSettings(),
            id="cookie-auto",
        ),
        pytest.param(
            {"CROSSMINT_COOKIE_SECURE": "off"},
            WrapSettings(cookie_options=CookieOptions(secure=False)),
            id="cookie-secure-off",
        ),
        pytest.param(
            {"CROSSMINT_REDIS_URL": "redis://127.0.0.1:6379/0"},
            WrapSettings(redis_url="redis://127.0.0.1:6379/0"),
            id="redis",
        ),
    ],
)
def test_settings_from_env(environ: dict[str, str], expected: WrapSettings) -> None:
    assert settings_from_env(environ) == expected


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        pytest.param({"CROSSMINT_PROTECT": "dashboard"}, "CROSSMINT_PROTECT", id="bad-pattern"),
        pytest.param({"CROSSMINT_REFRESH_PATH": "refresh"}, "CROSSMINT_REFRESH_PATH", id="path"),
        pytest.param({"CROSSMINT_LOGOUT_PATH": "x/y"}, "CROSSMINT_LOGOUT_PATH", id="logout-path"),
        pytest.param({"CROSSMINT_COOKIE_SECURE": "maybe"}, "CROSSMINT_COOKIE_SECURE", id="flag"),
        pytest.param({"CROSSMINT_COOKIE_HTTPONLY": "2"}, "CROSSMINT_COOKIE_HTTPONLY", id="flag-2"),
        pytest.param(
            {"CROSSMINT_COOKIE_SAMESITE": "sideways"}, "CROSSMINT_COOKIE_SAMESITE", id="samesite"
        ),
        pytest.param(
            {"CROSSMINT_COOKIE_SAMESITE": "None", "CROSSMINT_COOKIE_SECURE": "false"},
            "CROSSMINT_COOKIE_SAMESITE",
            id="samesite-none-insecure",
        ),
    ],
)
def test_settings_from_env_refuses(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(CrossmintConfigError) as caught:
        settings_from_env(environ)
    assert str(caught.value).startswith(variable)
    assert caught.value.setting is not None
    assert VARIABLES[caught.value.setting] == variable


def test_one_table_names_the_variable_of_every_setting() -> None:
    cookie_fields = {field.name for field in dataclasses.fields(CookieOptions)} - {"path"}
    wrap_fields = {field.name for field in dataclasses.fields(WrapSettings)} - {"cookie_options"}
    assert set(VARIABLES) == wrap_fields | cookie_fields
    assert len(set(VARIABLES.values())) == len(VARIABLES)
    # Every variable the table knows is one the README lists.
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert [name for name in VARIABLES.values() if f"`{name}`" not in readme] == []


@pytest.mark.parametrize(
    ("error", "fallback", "expected"),
    [
        pytest.param(
            CrossmintConfigError("Crossmint base URL 'ftp:/x' is not", setting="base_url"),
            "api_key",
            "CROSSMINT_BASE_URL: Crossmint base URL 'ftp:/x' is not",
            id="named-setting-wins",
        ),
        pytest.param(
            CrossmintConfigError("Crossmint API key has a bad signature", setting="api_key"),
            "api_key",
            "SERVER_CROSSMINT_API_KEY: Crossmint API key has a bad signature",
            id="api-key",
        ),
        pytest.param(
            CrossmintConfigError("the Redis URL is not usable", setting="url"),
            "redis_url",
            "CROSSMINT_REDIS_URL: the Redis URL is not usable",
            id="a-setting-of-another-object",
        ),
        pytest.param(
            CrossmintConfigError("cookie path must start with '/'", setting="path"),
            "same_site",
            "CROSSMINT_COOKIE_SAMESITE: cookie path must start with '/'",
            id="no-variable-of-its-own",
        ),
    ],
)
def test_errors_are_blamed_by_setting_never_by_wording(
    error: CrossmintConfigError, fallback: str, expected: str
) -> None:
    blamed = _blame(error, fallback)
    assert str(blamed) == expected
    assert VARIABLES[blamed.setting or ""] == expected.partition(":")[0]
