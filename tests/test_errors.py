"""The error types and codes."""

from __future__ import annotations

import pytest

from crossmint_wsgi import CrossmintAuthError, CrossmintConfigError, CrossmintError, ErrorCode


@pytest.mark.parametrize(
    ("code", "value", "clears"),
    [
        pytest.param(ErrorCode.MISSING_SESSION, "MISSING_SESSION", False, id="missing"),
        pytest.param(ErrorCode.SESSION_EXPIRED, "SESSION_EXPIRED", True, id="expired"),
        pytest.param(ErrorCode.INVALID_TOKEN, "INVALID_TOKEN", True, id="invalid"),
        pytest.param(ErrorCode.UPSTREAM_UNAVAILABLE, "UPSTREAM_UNAVAILABLE", False, id="upstream"),
        pytest.param(ErrorCode.INVALID_REQUEST, "INVALID_REQUEST", False, id="bad-request"),
        pytest.param(ErrorCode.FORBIDDEN_ORIGIN, "FORBIDDEN_ORIGIN", False, id="origin"),
    ],
)
def test_codes(code: ErrorCode, value: str, clears: bool) -> None:
    assert code.value == value
    assert str(code) == value
    assert code == value  # a str enum: safe to compare with the JSON "error" field
    assert ErrorCode(value) is code
    error = CrossmintAuthError(code, "what happened")
    assert error.code is code
    assert error.message == "what happened"
    assert str(error) == f"{value}: what happened"
    assert repr(error) == f"CrossmintAuthError({value!r}, 'what happened')"
    assert error.clears_cookies is clears


def test_the_six_codes_of_the_spec() -> None:
    assert {code.value for code in ErrorCode} == {
        "MISSING_SESSION",
        "SESSION_EXPIRED",
        "INVALID_TOKEN",
        "UPSTREAM_UNAVAILABLE",
        "INVALID_REQUEST",
        "FORBIDDEN_ORIGIN",
    }


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        pytest.param(
            CrossmintAuthError(ErrorCode.INVALID_TOKEN, "m"), (CrossmintError, Exception), id="auth"
        ),
        pytest.param(
            CrossmintConfigError("m"), (CrossmintError, ValueError, Exception), id="config"
        ),
    ],
)
def test_one_root(error: Exception, bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert isinstance(error, base)


def test_auth_error_is_raisable_and_catchable_by_root() -> None:
    with pytest.raises(CrossmintError) as caught:
        raise CrossmintAuthError(ErrorCode.SESSION_EXPIRED, "gone")
    assert isinstance(caught.value, CrossmintAuthError)
    assert caught.value.code is ErrorCode.SESSION_EXPIRED


@pytest.mark.parametrize(
    ("error", "setting", "text"),
    [
        pytest.param(CrossmintConfigError("bad key"), None, "bad key", id="no-setting"),
        pytest.param(
            CrossmintConfigError("leeway must be 0 or more", setting="leeway"),
            "leeway",
            "leeway must be 0 or more",
            id="named-setting",
        ),
    ],
)
def test_config_error_names_its_setting(
    error: CrossmintConfigError, setting: str | None, text: str
) -> None:
    assert error.setting == setting
    assert error.message == text
    assert str(error) == text
    assert repr(error) == f"CrossmintConfigError({text!r}, setting={setting!r})"
