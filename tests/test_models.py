"""The values crossing the public API."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from crossmint_wsgi import (
    AuthMaterial,
    CookieOptions,
    CrossmintConfigError,
    RefreshToken,
    Session,
    User,
)
from crossmint_wsgi.models import format_timestamp, parse_timestamp

UTC = timezone.utc
MOMENT = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)


# -- User ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"id": "u1"}, User("u1"), id="id-only"),
        pytest.param(
            {"id": "u1", "email": "a@example.com", "phoneNumber": "+1555"},
            User("u1", email="a@example.com", phone_number="+1555"),
            id="email-and-phone",
        ),
        pytest.param(
            {"id": "u1", "twitter": {"username": "ann", "id": "42"}},
            User("u1", twitter={"username": "ann", "id": "42"}),
            id="twitter",
        ),
        pytest.param(
            {"id": "u1", "email": 5, "phoneNumber": None, "twitter": "ann"},
            User("u1"),
            id="wrong-types-dropped",
        ),
    ],
)
def test_user_from_json(data: dict[str, Any], expected: User) -> None:
    user = User.from_json(data)
    assert user == expected
    assert user.raw == data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="no-id"),
        pytest.param({"id": ""}, id="empty-id"),
        pytest.param({"id": 7}, id="numeric-id"),
        pytest.param({"id": None}, id="null-id"),
    ],
)
def test_user_without_string_id(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no string 'id'"):
        User.from_json(data)


def test_user_keeps_unknown_fields_through_a_round_trip() -> None:
    data = {
        "id": "u1",
        "email": "a@example.com",
        "twitter": {"username": "ann", "id": "42"},
        "farcaster": {"fid": 3},
        "createdAt": "2024-01-01",
    }
    assert User.from_json(data).to_json() == data


def test_user_to_json_from_fields() -> None:
    user = User("u1", email="a@example.com", phone_number="+1", twitter={"username": "x"})
    assert user.to_json() == {
        "id": "u1",
        "email": "a@example.com",
        "phoneNumber": "+1",
        "twitter": {"username": "x"},
    }


def test_user_equality_ignores_raw() -> None:
    assert User.from_json({"id": "u1", "extra": 1}) == User("u1")


# -- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-03-04T05:06:07.891Z", MOMENT, id="z-millis"),
        pytest.param("2026-03-04T05:06:07Z", MOMENT.replace(microsecond=0), id="z-seconds"),
        pytest.param("2026-03-04T05:06:07.891+00:00", MOMENT, id="offset-zero"),
        pytest.param("2026-03-04T07:06:07.891+02:00", MOMENT, id="offset-two"),
        pytest.param("2026-03-04T05:06:07.891", MOMENT, id="naive-is-utc"),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("tomorrow", id="words"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(MOMENT, "2026-03-04T05:06:07.891Z", id="utc"),
        pytest.param(
            MOMENT.astimezone(timezone(timedelta(hours=-5))),
            "2026-03-04T05:06:07.891Z",
            id="other-zone",
        ),
        pytest.param(MOMENT.replace(microsecond=999), "2026-03-04T05:06:07.000Z", id="sub-milli"),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


# -- tokens and sessions ------------------------------------------------------------------


def test_refresh_token_json_and_repr() -> None:
    token = RefreshToken("s3cr3t-value", MOMENT)
    assert token.to_json() == {"secret": "s3cr3t-value", "expiresAt": "2026-03-04T05:06:07.891Z"}
    assert "s3cr3t-value" not in repr(token)
    assert RefreshToken("s3cr3t-value").to_json() == {"secret": "s3cr3t-value", "expiresAt": None}


def test_auth_material_json_is_the_browser_sdks_shape() -> None:
    material = AuthMaterial(
        "jwt.value.sig", RefreshToken("secret-x", MOMENT), User("u1", email="e@x")
    )
    assert material.to_json() == {
        "jwt": "jwt.value.sig",
        "refreshToken": {"secret": "secret-x", "expiresAt": "2026-03-04T05:06:07.891Z"},
        "user": {"id": "u1", "email": "e@x"},
    }
    assert AuthMaterial("j", RefreshToken("s")).to_json()["user"] is None
    text = repr(material)
    assert "jwt.value.sig" not in text
    assert "secret-x" not in text


def test_session_properties_and_repr() -> None:
    exp = int(MOMENT.timestamp())
    refresh = RefreshToken("secret-y", MOMENT)
    session = Session("the.jwt.sig", refresh, "u1", {"sub": "u1", "exp": exp}, refreshed=True)
    assert session.expires_at == MOMENT.replace(microsecond=0)
    assert session.material == AuthMaterial("the.jwt.sig", refresh, None)
    text = repr(session)
    assert "the.jwt.sig" not in text
    assert "secret-y" not in text
    assert "'exp'" not in text
    assert "u1" in text
    assert Session("j", None, "u1", {"exp": exp}).material is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.user_id = "u2"  # type: ignore[misc]


# -- cookie options -----------------------------------------------------------------------


def test_cookie_options_defaults() -> None:
    options = CookieOptions()
    assert (options.secure, options.http_only, options.same_site, options.domain, options.path) == (
        None,
        True,
        "Lax",
        None,
        "/",
    )


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        pytest.param("lax", "Lax", id="lax"),
        pytest.param("STRICT", "Strict", id="strict"),
        pytest.param("None", "None", id="none"),
    ],
)
def test_cookie_options_same_site_is_normalized(given: str, normalized: str) -> None:
    assert CookieOptions(same_site=given).same_site == normalized


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"same_site": "sometimes"}, "same_site must be", id="unknown-same-site"),
        pytest.param({"same_site": "None", "secure": False}, "needs secure", id="none-not-secure"),
        pytest.param({"path": "api"}, "must start with '/'", id="relative-path"),
        pytest.param({"max_age": -1}, "max_age must be 0 or more", id="negative-max-age"),
        pytest.param({"max_age": 1.5}, "max_age must be int or None", id="float-max-age"),
        pytest.param({"max_age": True}, "max_age must be int or None", id="bool-max-age"),
        pytest.param({"names": "project"}, "names must be 'unscoped'", id="unknown-names"),
        pytest.param(
            {"expose_refresh_secret": "yes"}, "expose_refresh_secret must be bool", id="expose-text"
        ),
    ],
)
def test_cookie_options_rejects(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CrossmintConfigError, match=message):
        CookieOptions(**kwargs)


def test_cookie_options_new_defaults() -> None:
    options = CookieOptions()
    assert (options.max_age, options.names, options.expose_refresh_secret) == (
        None,
        "unscoped",
        False,
    )


@pytest.mark.parametrize(
    ("http_only", "warned"),
    [
        pytest.param(True, False, id="http-only-quiet"),
        pytest.param(False, True, id="readable-warns"),
    ],
)
def test_a_readable_refresh_cookie_warns_at_construction(
    caplog: pytest.LogCaptureFixture, http_only: bool, warned: bool
) -> None:
    """The browser SDK deletes a readable refresh cookie before it calls the
    logout route: such logouts are not revoked, and the deployer is told."""
    with caplog.at_level("WARNING", logger="crossmint_wsgi"):
        CookieOptions(http_only=http_only)
    messages = [r.getMessage() for r in caplog.records if r.name == "crossmint_wsgi"]
    assert [m for m in messages if "not revoked at Crossmint" in m] == (
        [messages[0]] if warned else []
    )
    assert len(messages) == int(warned)
