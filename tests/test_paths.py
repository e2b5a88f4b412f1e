"""Protected-path patterns (the Next.js matcher syntax) and path normalization."""

from __future__ import annotations

import pytest

from crossmint_wsgi.paths import PathMatcher, compile_pattern, normalize_path

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
]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [pytest.param(p, path, m, id=f"{p} {path} {'yes' if m else 'no'}") for p, path, m in MATCHES],
)
def test_matcher(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern).match(path)) is matches
    assert PathMatcher(pattern)(path) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        pytest.param("dashboard", "must start with '/'", id="relative"),
        pytest.param("/a/(b", "unbalanced", id="open-paren"),
        pytest.param("/a/b)", "unbalanced", id="close-paren"),
        pytest.param("/a/([)", "invalid regex", id="bad-regex"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_pattern(pattern)


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


def test_callable_gets_the_normalized_path() -> None:
    seen: list[str] = []

    def predicate(path: str) -> bool:
        seen.append(path)
        return path.startswith("/admin")

    matcher = PathMatcher(predicate)
    assert matcher
    assert matcher("//admin/x")
    assert not matcher("/public")
    assert seen == ["/admin/x", "/public"]


def test_callable_result_is_a_bool() -> None:
    assert PathMatcher(lambda path: 1)("/x") is True  # type: ignore[arg-type,return-value]
