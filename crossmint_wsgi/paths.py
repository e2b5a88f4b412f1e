"""Protected-path patterns in the Next.js matcher syntax Crossmint's docs use."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["PathMatcher", "compile_pattern", "normalize_path"]

_PARAM = re.compile(r"^:(\w+)(\(.*\))?([*+?]?)$")
_GROUP = re.compile(r"^(\(.*\))([*+?]?)$")


def _segments(pattern: str) -> list[str]:
    """Split on ``/`` outside parentheses: a group's regex may hold slashes.

    Next.js's usual matcher ``/((?!api|_next/static).*)`` is one segment.

    :raises ValueError: unbalanced parentheses.
    """
    segments: list[str] = []
    current: list[str] = []
    depth, escaped = 0, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
        elif char == "/" and depth == 0:
            segments.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth != 0:
        raise ValueError(f"path pattern {pattern!r} has unbalanced parentheses")
    segments.append("".join(current))
    return [segment for segment in segments if segment]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile one matcher pattern.

    ``/dashboard/:path*`` matches ``/dashboard`` and everything below it;
    ``:name`` is one segment, ``:name+`` one or more, ``:name?`` zero or one;
    ``:name(regex)`` and a bare ``(regex)`` segment constrain with a regex.

    :raises ValueError: the pattern does not start with ``/``, or its
        parentheses or regex are malformed.
    """
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    parts = []
    for segment in _segments(pattern):
        param = _PARAM.match(segment)
        group = None if param else _GROUP.match(segment)
        if param:
            _, constraint, modifier = param.groups()
            body = constraint or "[^/]+"
        elif group:
            body, modifier = group.groups()
        else:
            # A literal; a backslash escapes the next character (``\(`` is ``(``).
            parts.append("/" + re.escape(re.sub(r"\\(.)", r"\1", segment)))
            continue
        if modifier == "*":
            parts.append(f"(?:/{body})*")
        elif modifier == "+":
            parts.append(f"(?:/{body})+")
        elif modifier == "?":
            parts.append(f"(?:/{body})?")
        else:
            parts.append(f"/{body}")
    try:
        return re.compile("^" + "".join(parts) + "/?$")
    except re.error as error:
        raise ValueError(f"path pattern {pattern!r} has an invalid regex: {error}") from None


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


def _literal_prefix(pattern: re.Pattern[str]) -> str:
    """The text every match of a compiled pattern starts with (at least ``/``)."""
    source = pattern.pattern[1:]  # after "^"
    prefix = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source):
            prefix.append(source[index + 1])
            index += 2
            continue
        if char in "*+?{":
            # A quantifier makes the character before it optional.
            prefix = prefix[:-1]
            break
        if char in "([.|$^":
            break
        prefix.append(char)
        index += 1
    return "".join(prefix) or "/"


class PathMatcher:
    """Whether a path is protected: patterns, or a callable taking the path.

    :param protect: a pattern, an iterable of patterns, or ``callable(path) -> bool``.
    """

    def __init__(self, protect: str | Iterable[str] | Callable[[str], bool] = ()) -> None:
        self._predicate: Callable[[str], bool] | None = None
        if callable(protect):
            self._predicate = protect
            self._patterns: tuple[re.Pattern[str], ...] = ()
        else:
            patterns = (protect,) if isinstance(protect, str) else tuple(protect)
            self._patterns = tuple(compile_pattern(pattern) for pattern in patterns)
        # Most paths share no literal prefix with any pattern: a startswith
        # settles them before the regex.
        self._prefixes = tuple(_literal_prefix(pattern) for pattern in self._patterns)
        # One alternation: a single regex call per request, whatever the pattern count.
        self._combined = (
            re.compile("|".join(f"(?:{p.pattern})" for p in self._patterns))
            if self._patterns
            else None
        )

    def __bool__(self) -> bool:
        return self._predicate is not None or bool(self._patterns)

    def __call__(self, path: str) -> bool:
        if not path.startswith("/") or "//" in path or "/." in path:
            path = normalize_path(path)
        if self._predicate is not None:
            return bool(self._predicate(path))
        if self._combined is None or not path.startswith(self._prefixes):
            return False
        return self._combined.match(path) is not None
