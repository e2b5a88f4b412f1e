"""The examples' shared demo code: the sign-in page's ``next`` stays on this origin."""

from __future__ import annotations

import json
import subprocess

import pytest
from support import require_program

from crossmint_wsgi.testing.demo import local_path, login_page

#: (what ``next`` carried, what the page may go to). "/" means refused.
NEXT_VALUES = [
    pytest.param("/protected", "/protected", id="path"),
    pytest.param("/protected/a?b=1&c=2#top", "/protected/a?b=1&c=2#top", id="query-fragment"),
    pytest.param("/%09/evil.com", "/%09/evil.com", id="encoded-tab-is-a-path"),
    pytest.param("/search?q=a\\b", "/search?q=a\\b", id="backslash-in-query-kept"),
    pytest.param("/ok#x\\y", "/ok#x\\y", id="backslash-in-fragment-kept"),
    pytest.param("/\u3000/evil.com", "/\u3000/evil.com", id="ideographic-space-is-a-path"),
    pytest.param("/a\\b", "/a/b", id="backslash-in-path-read-as-slash"),
    pytest.param(" /protected\t", "/protected", id="edges-stripped"),
    pytest.param("", "/", id="empty"),
    pytest.param("protected", "/", id="relative"),
    pytest.param("?next=x", "/", id="query-only"),
    pytest.param("//evil.com", "/", id="scheme-relative"),
    pytest.param("/\t/evil.com", "/", id="tab"),
    pytest.param("/\n/evil.com", "/", id="lf"),
    pytest.param("/\r/evil.com", "/", id="cr"),
    pytest.param("/\r\n/evil.com", "/", id="crlf"),
    pytest.param("\t//evil.com", "/", id="leading-tab"),
    pytest.param(" //evil.com", "/", id="leading-space"),
    pytest.param("\x00//evil.com", "/", id="leading-nul"),
    pytest.param("\x1f//evil.com", "/", id="leading-c0"),
    pytest.param("\x1f/\x0b/evil.com", "/\x0b/evil.com", id="inner-vertical-tab-is-a-path"),
    pytest.param("/\\evil.com", "/", id="slash-backslash"),
    pytest.param("\\/evil.com", "/", id="backslash-slash"),
    pytest.param("\\\\evil.com", "/", id="two-backslashes"),
    pytest.param("/\t\\evil.com", "/", id="tab-backslash"),
    pytest.param("/\\\t\\evil.com", "/", id="backslash-tab-backslash"),
    pytest.param("https://evil.com/", "/", id="absolute"),
    pytest.param("http:evil.com", "/", id="scheme-no-slashes"),
    pytest.param("javascript:alert(1)", "/", id="javascript"),
    pytest.param("java\tscript:alert(1)", "/", id="javascript-tab"),
    pytest.param("\njavascript:alert(1)", "/", id="javascript-leading-lf"),
]

BASE = "http://app.test/login"


@pytest.mark.parametrize(("value", "expected"), NEXT_VALUES)
def test_local_path(value: str, expected: str) -> None:
    assert local_path(value) == expected


@pytest.mark.parametrize(("value", "expected"), NEXT_VALUES)
def test_login_page_goes_only_where_local_path_allows(value: str, expected: str) -> None:
    page = login_page(value)
    target = json.dumps(expected).replace("<", "\\u003c").replace(">", "\\u003e")
    assert f"location.href = {target};" in page


def test_a_browser_url_parser_reads_every_value_as_local_path_does() -> None:
    """Node's WHATWG URL parser (the one browsers follow) resolves each value.

    What ``local_path`` lets through stays on the origin and resolves to the
    same URL as the raw value; what resolves to another origin is refused.
    """
    values = [param.values[0] for param in NEXT_VALUES]
    script = (
        "const [base, values] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(values.map((v) => {"
        "  try { return new URL(v, base).href; } catch { return null; } })));"
    )
    answer = subprocess.run(
        [require_program("node"), "-e", script],
        input=json.dumps([BASE, [*values, *(local_path(v) for v in values)]]),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    resolved = json.loads(answer.stdout)
    raw, read = resolved[: len(values)], resolved[len(values) :]
    off_site = 0
    for value, href, local_href in zip(values, raw, read, strict=True):
        assert local_href.startswith("http://app.test/"), (value, local_href)
        if href is None or not href.startswith("http://app.test/"):
            off_site += 1
            assert local_path(value) == "/", (value, href)
        elif local_path(value) != "/":
            assert local_href == href, value
    # The table holds values that really leave the site, as a browser reads them.
    assert off_site >= 15
