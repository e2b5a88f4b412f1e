"""Whether a path is protected: every reading of it, matched against the patterns.

The patterns (Next.js's matcher syntax) are parsed in
:mod:`~crossmint_wsgi.patterns`. A path is protected when *any* reading of
it matches: routers differ on what they route (werkzeug, Starlette, Django
and Bottle route the raw path, dot segments and all; servers decode ``%2e``
and ``%2f`` or not), so the matcher fails closed rather than guess which one
the app will see.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from .patterns import pattern_source

__all__ = ["PathMatcher", "normalize_path", "path_readings"]

#: Percent-decoding rounds: a server decodes once, a framework or proxy may again.
_MAX_DECODES = 3
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/]*")


# -- readings of a path -----------------------------------------------------------------------


def _collapse(path: str) -> str:
    return re.sub("/{2,}", "/", path) if "//" in path else path


def _remove_dot_segments(path: str) -> str:
    """RFC 3986's dot-segment removal: empty segments are kept (``/a//..`` is ``/a/``)."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    resolved = "/".join(output)
    return resolved if resolved.startswith("/") else "/" + resolved


def normalize_path(path: str) -> str:
    """Collapse ``//``, ``.`` and ``..`` so ``//dashboard`` cannot dodge ``/dashboard``."""
    if path.startswith("/") and "//" not in path and "/." not in path:
        return path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def path_readings(path: str) -> list[str]:
    """Every path a server and router might make of ``path``, ``path`` first.

    The raw path, percent-decoded (up to three times), the UTF-8 text of a
    WSGI ``PATH_INFO`` read as latin-1, with a scheme and host stripped
    (an absolute-form request target), and each of those with slashes
    collapsed, dot segments resolved, or both.
    """
    bases = [path]
    text = path
    for _ in range(_MAX_DECODES):
        if "%" not in text:
            break
        decoded = unquote(text)
        if decoded == text:
            break
        bases.append(decoded)
        text = decoded
    for base in list(bases):
        if not base.isascii():
            with contextlib.suppress(UnicodeError):
                bases.append(base.encode("latin-1").decode("utf-8"))
        absolute = _SCHEME.match(base)
        if absolute:
            bases.append(base[absolute.end() :] or "/")
    readings: dict[str, None] = {}
    for base in bases:
        readings[base] = None
        if not base.startswith("/"):
            base = "/" + base
            readings[base] = None
        collapsed = _collapse(base)
        readings[collapsed] = None
        readings[_remove_dot_segments(base)] = None
        readings[_collapse(_remove_dot_segments(base))] = None
        readings[normalize_path(base)] = None
    return list(readings)


# -- the matcher --------------------------------------------------------------------------------


class PathMatcher:
    """Whether a path is protected: patterns, or a callable taking the path.

    True when any reading of the path (see :func:`path_readings`) matches;
    a plain path (ASCII, no ``%``, no ``//`` and no ``/.``) has one reading.

    :param protect: a pattern, an iterable of patterns, or ``callable(path) -> bool``
        (called on each reading until it answers true).
    :raises CrossmintConfigError: a pattern is malformed (see
        :func:`~crossmint_wsgi.patterns.compile_pattern`).
    """

    def __init__(self, protect: str | Iterable[str] | Callable[[str], bool] = ()) -> None:
        self._predicate: Callable[[str], bool] | None = None
        sources: list[tuple[str, str]] = []
        if callable(protect):
            self._predicate = protect
        else:
            patterns = (protect,) if isinstance(protect, str) else tuple(protect)
            sources = [pattern_source(pattern) for pattern in patterns]
        self._patterns = tuple(re.compile(source, re.DOTALL) for source, _ in sources)
        self._prefixes = tuple(prefix for _, prefix in sources)
        # One alternation: a single regex call per reading, whatever the pattern count.
        self._combined = (
            re.compile("|".join(f"(?:{source})" for source, _ in sources), re.DOTALL)
            if sources
            else None
        )

    def __bool__(self) -> bool:
        return self._predicate is not None or self._combined is not None

    def __call__(self, path: str) -> bool:
        if (
            path[:1] == "/"
            and path.isascii()
            and "%" not in path
            and "//" not in path
            and "/." not in path
        ):
            # The common path: it has no other reading.
            if self._predicate is not None:
                return bool(self._predicate(path))
            if self._combined is None or not path.startswith(self._prefixes):
                return False
            return self._combined.match(path) is not None
        return any(self._one(reading) for reading in path_readings(path))

    def _one(self, path: str) -> bool:
        if self._predicate is not None:
            return bool(self._predicate(path))
        if self._combined is None or not path.startswith(self._prefixes):
            return False
        return self._combined.match(path) is not None
