"""Protected-path patterns (the Next.js matcher syntax), path readings and normalization."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmint_wsgi.errors import CrossmintConfigError
from crossmint_wsgi.gunicorn_settings import settings_from_env
from crossmint_wsgi.paths import PathMatcher, normalize_path, path_readings
from crossmint_wsgi.patterns import compile_pattern

MATCHES = [
    # pattern, path, matches
    ("/dashboard/:path*", "/dashboard", True),
    ("/dashboard/:path*", "/dashboard/", True),
    ("/dashboard/:path*", "/dashboard/a", True),
    ("/dashboard/:path*", "/dashboard/a/b", True),
    ("/dashboard/:path*", "/dashboards", False),
    ("/dashboard/:path*", "/dashboard-x", False),
    ("/dashboard/:path*", "/other/dashboard", False),
    ("/dashboard/:path*", "/", False),
    ("/users/:id", "/users/7", True),
    ("/users/:id", "/users/7/", True),
    ("/users/:id", "/users", False),
    ("/users/:id", "/users/7/edit", False),
    ("/files/:rest+", "/files", False),
    ("/files/:rest+", "/files/a", True),
    ("/files/:rest+", "/files/a/b/c", True),
    ("/posts/:slug?", "/posts", True),
    ("/posts/:slug?", "/posts/hello", True),
    ("/posts/:slug?", "/posts/hello/more", False),
    ("/orders/:id(\\d+)", "/orders/42", True),
    ("/orders/:id(\\d+)", "/orders/abc", False),
    ("/orders/:id(\\d+)*", "/orders/1/2", True),
    ("/(admin|staff)/:page", "/admin/home", True),
    ("/(admin|staff)/:page", "/staff/x", True),
    ("/(admin|staff)/:page", "/guest/x", False),
    ("/app/(beta)?", "/app", True),
    ("/app/(beta)?", "/app/beta", True),
    ("/app/(beta)?", "/app/gamma", False),
    ("/((?!api|_next/static|_next/image|favicon.ico).*)", "/", True),
    ("/((?!api|_next/static|_next/image|favicon.ico).*)", "/account/settings", True),
    ("/((?!api|_next/static|_next/image|favicon.ico).*)", "/api/me", False),
    ("/((?!api|_next/static|_next/image|favicon.ico).*)", "/_next/static/x.js", False),
    ("/((?!api|_next/static|_next/image|favicon.ico).*)", "/favicon.ico", False),
    ("/protected", "/protected", True),
    ("/protected", "/protected/", True),
    ("/protected", "/protected/x", False),
    ("/a.b/:x", "/a.b/1", True),
    ("/a.b/:x", "/aXb/1", False),
    ("/lit/\\(x\\)", "/lit/(x)", True),
    ("/", "/", True),
    ("/", "/x", False),
    # Every character a router accepts, up to the true end of the path.
    ("/((?!login|static).*)", "/users/a\nlice", True),
    ("/((?!login|static).*)", "/users/a\r\nlice", True),
    ("/users/:id", "/users/a\nlice", True),
    ("/users/:id", "/users/nul\x00", True),
    ("/users/:id", "/users/caf\u00e9\U0001f600", True),
    ("/users/:id", "/users/7\n", True),
    ("/protected", "/protected\n", True),  # a router compiled with "$" matches before it
    ("/protected", "/protected\nx", False),
    ("/account/:path*", "/account/a\n/b", True),
    # Next.js's other forms: "." is a prefix too, braces group text with a parameter.
    ("/file.:ext", "/file.txt", True),
    ("/file.:ext", "/file", False),
    ("/a{/:b}*", "/a", True),
    ("/a{/:b}*", "/a/x/y", True),
    ("/a{-:b}?", "/a-x", True),
    ("/v-:n", "/v-2", True),
    ("/v-:n", "/v-", False),
    ("/account/", "/account", True),
    ("/account//x", "/account/x", True),
    ("/a/:x/", "/a/1", True),
    ("/a/:x/", "/a/1/", True),
    ("//", "/", True),
]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [pytest.param(p, path, m, id=f"{p} {path} {'yes' if m else 'no'}") for p, path, m in MATCHES],
)
def test_matcher(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern).match(path)) is matches
    assert PathMatcher(pattern)(path) is matches


BAD_PATTERNS = [
    pytest.param("dashboard", "must start with '/'", id="relative"),
    pytest.param("/account/*", "stray '\\*' at 9", id="star"),
    pytest.param("/account/:path**", "stray '\\*' at 15", id="double-star"),
    pytest.param("/account/?", "stray '\\?'", id="stray-question-mark"),
    pytest.param("/account/+", "stray '\\+'", id="stray-plus"),
    pytest.param("/account/:", "':' without a parameter name", id="stray-colon"),
    pytest.param("/account/:/x", "':' without a parameter name", id="colon-no-name"),
    pytest.param("/a/(b", "unbalanced", id="open-paren"),
    pytest.param("/a/b)", "unbalanced", id="close-paren"),
    pytest.param("/a/([)", "invalid regex", id="bad-regex"),
    pytest.param("/a/(*)", "invalid regex", id="nothing-to-repeat"),
    pytest.param("/a/()", "empty group", id="empty-group"),
    pytest.param("/a/((b))", "capturing group", id="capturing-group"),
    pytest.param("/a/(?!b).*", "starting with '\\?'", id="bare-lookahead"),
    pytest.param("/a/{b", "'}' was expected", id="open-brace"),
    pytest.param("/a/}", "'}' at 3", id="close-brace"),
    pytest.param("/a/\\", "lone backslash", id="trailing-backslash"),
    pytest.param("/blog/[slug]", "page-file syntax", id="page-file-syntax"),
    pytest.param("/blog/[...slug]", "page-file syntax", id="page-file-catch-all"),
    pytest.param("/a/(^b)", "cannot match", id="anchored-group"),
    pytest.param("/a/(\\Ab)", "cannot match", id="anchored-group-A"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS)
def test_bad_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(CrossmintConfigError, match=message) as caught:
        compile_pattern(pattern)
    text = str(caught.value)
    assert repr(pattern) in text
    assert "/account/:path*" in text  # the accepted forms
    # Through every entry point: the matcher and the gunicorn factory's variable.
    with pytest.raises(CrossmintConfigError, match=message):
        PathMatcher(["/fine/:path*", pattern])
    with pytest.raises(CrossmintConfigError, match=r"CROSSMINT_PROTECT.*accepted forms"):
        settings_from_env({"CROSSMINT_PROTECT": pattern})
    # A ValueError still, for callers that caught that.
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("/a/([^^])", id="caret-in-class"),
        pytest.param("/a/(x\\^)", id="escaped-caret"),
        pytest.param("/a/\\[x\\]", id="escaped-brackets"),
        pytest.param("/a/(\\d+){-:rev}?", id="brace-after-group"),
    ],
)
def test_near_misses_are_accepted(pattern: str) -> None:
    assert PathMatcher(pattern)


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        pytest.param("/dashboard", "/dashboard", id="plain"),
        pytest.param("/dashboard/", "/dashboard/", id="trailing-slash-kept"),
        pytest.param("//dashboard", "/dashboard", id="double-slash"),
        pytest.param("/./dashboard", "/dashboard", id="dot"),
        pytest.param("/a/../dashboard", "/dashboard", id="dot-dot"),
        pytest.param("/../../dashboard", "/dashboard", id="dot-dot-above-root"),
        pytest.param("/dashboard/.", "/dashboard", id="trailing-dot"),
        pytest.param("/dashboard//x", "/dashboard/x", id="inner-double-slash"),
        pytest.param("/x/.hidden", "/x/.hidden", id="dotfile-kept"),
        pytest.param("/x/..y", "/x/..y", id="dot-dot-prefix-kept"),
    ],
)
def test_normalize_path(path: str, normalized: str) -> None:
    assert normalize_path(path) == normalized


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("//dashboard", id="double-slash"),
        pytest.param("/./dashboard/x", id="dot"),
        pytest.param("/public/../dashboard", id="dot-dot"),
        pytest.param("/dashboard//", id="trailing-double-slash"),
        pytest.param("dashboard", id="no-leading-slash"),
        pytest.param("dashboard/x", id="no-leading-slash-below"),
    ],
)
def test_dodges_are_protected(path: str) -> None:
    assert PathMatcher("/dashboard/:path*")(path)


def test_several_patterns() -> None:
    matcher = PathMatcher(["/dashboard/:path*", "/api/private/:path*"])
    assert matcher("/dashboard/x")
    assert matcher("/api/private")
    assert not matcher("/api/public")
    assert matcher


def test_no_patterns_protect_nothing() -> None:
    matcher = PathMatcher()
    assert not matcher
    assert not matcher("/anything")


def test_callable_is_asked_about_each_reading() -> None:
    seen: list[str] = []

    def predicate(path: str) -> bool:
        seen.append(path)
        return path.startswith("/admin")

    matcher = PathMatcher(predicate)
    assert matcher
    assert matcher("//admin/x")
    assert seen == ["//admin/x", "/admin/x"]  # until one answers true
    seen.clear()
    assert not matcher("/public")
    assert seen == ["/public"]  # a plain path has one reading


def test_callable_result_is_a_bool() -> None:
    assert PathMatcher(lambda path: 1)("/x") is True  # type: ignore[arg-type,return-value]


ACCOUNT = "/account/:path*"


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        # Routers route the raw path: p = ".." runs /account/<path:p>.
        pytest.param("/account/..", True, id="dot-dot"),
        pytest.param("/account/.", True, id="dot"),
        pytest.param("/account/%2e%2e", True, id="encoded-dot-dot"),
        pytest.param("/account/%2E%2E", True, id="encoded-dot-dot-upper"),
        pytest.param("/account/x/../..", True, id="dot-dot-twice"),
        pytest.param("/account/..%2f", True, id="dot-dot-encoded-slash"),
        pytest.param("/account//..", True, id="double-slash-dot-dot"),
        pytest.param("/account%2fx", True, id="encoded-slash"),
        pytest.param("/account%252fx", True, id="double-encoded-slash"),
        pytest.param("/%61ccount/x", True, id="encoded-letter"),
        pytest.param("/x/../account/y", True, id="resolves-into"),
        pytest.param("/x/%2e%2e/account", True, id="encoded-resolves-into"),
        pytest.param("/x/..%2faccount", True, id="encoded-slash-resolves-into"),
        pytest.param("//account", True, id="leading-double-slash"),
        pytest.param("account/x", True, id="no-leading-slash"),
        pytest.param("http://example.test/account/x", True, id="absolute-form"),
        pytest.param("/account\n", True, id="trailing-newline"),
        pytest.param("/account/a%0Alice", True, id="encoded-newline"),
        pytest.param("/accountant", False, id="longer-name"),
        pytest.param("/accountant/..", False, id="longer-name-dot-dot"),
        pytest.param("/public/%2e%2e%2faccountant", False, id="encoded-into-longer-name"),
        pytest.param("/public/x%20y", False, id="encoded-space"),
        pytest.param("/", False, id="root"),
    ],
)
def test_every_reading_counts(path: str, protected: bool) -> None:
    assert PathMatcher(ACCOUNT)(path) is protected


def test_wsgi_latin1_path_info_is_read_as_utf8() -> None:
    """PEP 3333 hands UTF-8 bytes as latin-1 text: "/café" arrives as "/cafÃ©"."""
    wsgi = "/caf\u00e9/x".encode().decode("latin-1")
    assert PathMatcher("/caf\u00e9/:path*")(wsgi)
    assert not PathMatcher("/caf\u00e9/:path*")("/cafe/x")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/account", ["/account"], id="plain"),
        pytest.param("/a/%2e%2e/b", ["/a/%2e%2e/b", "/a/../b", "/b"], id="decoded-then-resolved"),
        pytest.param("/a//../b", ["/a//../b", "/a/../b", "/a/b", "/b"], id="collapse-or-resolve"),
        pytest.param("a", ["a", "/a"], id="relative"),
    ],
)
def test_path_readings(path: str, expected: list[str]) -> None:
    assert path_readings(path) == expected


SEGMENTS = st.sampled_from(["account", "accountant", "x", ".", "..", "", "%2e%2e", "%2f", "a\nb"])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(SEGMENTS, max_size=6))
def test_a_resolved_reading_under_the_prefix_is_protected(segments: list[str]) -> None:
    """Whatever the raw path, if its fully decoded and normalized form is below
    /account, it is protected; and a path with no "account" segment in any form never is."""
    path = "/" + "/".join(segments)
    resolved = normalize_path(path.replace("%2e", ".").replace("%2f", "/"))
    matcher = PathMatcher(ACCOUNT)
    if resolved == "/account" or resolved.startswith("/account/"):
        assert matcher(path)
    if "account" not in segments:
        assert not matcher(path)
