"""Base58 (Bitcoin alphabet), as Crossmint API keys use it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossmint_wsgi._base58 import b58decode, b58encode


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param(b"", "", id="empty"),
        pytest.param(b"\0", "1", id="one-zero-byte"),
        pytest.param(b"\0\0\x01", "112", id="leading-zeros-kept"),
        pytest.param(b"\x39", "z", id="last-digit"),
        pytest.param(b"\x3a", "21", id="carry"),
        pytest.param(b"hello world", "StV1DL6CwTryKyV", id="text"),
        pytest.param(bytes.fromhex("ff" * 4), "7YXq9G", id="high-bytes"),
    ],
)
def test_known_values(data: bytes, text: str) -> None:
    assert b58encode(data) == text
    assert b58decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0", id="zero"),
        pytest.param("O", id="capital-o"),
        pytest.param("I", id="capital-i"),
        pytest.param("l", id="lower-l"),
        pytest.param("abc+", id="plus"),
        pytest.param("ab c", id="space"),
        pytest.param("é", id="non-ascii"),
    ],
)
def test_decode_rejects_characters_outside_the_alphabet(text: str) -> None:
    with pytest.raises(ValueError, match="not base58"):
        b58decode(text)


@given(st.binary(max_size=80))
def test_round_trip(data: bytes) -> None:
    text = b58encode(data)
    assert set(text) <= set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
    assert b58decode(text) == data
