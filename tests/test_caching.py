"""Answers that carry auth cookies are kept out of shared caches."""

from __future__ import annotations

import pytest

from crossmint_wsgi.caching import uncacheable


def merged(headers: list[tuple[str, str]]) -> tuple[str, str]:
    out = dict(uncacheable(headers))
    return out["Cache-Control"], out["Vary"]


@pytest.mark.parametrize(
    ("headers", "cache_control", "vary"),
    [
        pytest.param([], "private, no-store", "Cookie", id="nothing-set"),
        pytest.param(
            [("Cache-Control", "public, max-age=60")],
            "private, no-store, max-age=60",
            "Cookie",
            id="public-gives-way",
        ),
        pytest.param(
            [("cache-control", "no-cache, must-revalidate")],
            "private, no-store, no-cache, must-revalidate",
            "Cookie",
            id="stronger-kept",
        ),
        pytest.param(
            [("Cache-Control", 'private="Set-Cookie", s-maxage=600')],
            "private, no-store, s-maxage=600",
            "Cookie",
            id="field-private-becomes-plain",
        ),
        pytest.param(
            [("Cache-Control", "no-store"), ("Cache-Control", "private")],
            "private, no-store",
            "Cookie",
            id="two-lines-once-each",
        ),
        pytest.param(
            [("Vary", "Accept-Encoding")], "private, no-store", "Accept-Encoding, Cookie", id="vary"
        ),
        pytest.param([("Vary", "cookie")], "private, no-store", "cookie", id="vary-has-it"),
        pytest.param([("Vary", "*")], "private, no-store", "*", id="vary-star-stays"),
    ],
)
def test_uncacheable(headers: list[tuple[str, str]], cache_control: str, vary: str) -> None:
    assert merged(headers) == (cache_control, vary)


def test_other_headers_keep_their_order() -> None:
    headers = [("Set-Cookie", "a=1"), ("Cache-Control", "public"), ("Set-Cookie", "b=2")]
    assert uncacheable(headers)[:2] == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
